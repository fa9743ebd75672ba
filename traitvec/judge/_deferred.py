"""A judge's model that loads when the judge first scores, its identity (what keys the scores) known before.

A fully current rerun then loads no judge model: the stages key on the judge without scoring, and
the score cache is keyed by the identity, so nothing but a score that must be computed loads it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import JudgeError
from ..models import LoadedModel

__all__ = ["DeferredModel", "model_identity"]


def model_identity(loaded: LoadedModel) -> dict[str, Any]:
    """What of a loaded model keys a local judge's scores (named as :meth:`ModelPool.model_key` names them)."""
    return {
        "fingerprint": loaded.fingerprint,
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "chat_template": loaded.use_chat_template,
    }


class DeferredModel:
    """A model named ``name`` that ``load()`` loads on first :meth:`get`.

    Args:
        name: the model's name (names the judge).
        model_key: the model's :meth:`~traitvec.models.ModelPool.model_key` (at least its
            ``fingerprint``, ``dtype`` and ``chat_template``); the loaded model must match it.
        load: loads the model.
    """

    def __init__(self, name: str, model_key: Mapping[str, Any], load: Callable[[], LoadedModel]) -> None:
        self.name = name
        self.identity = {key: model_key[key] for key in ("fingerprint", "dtype", "chat_template")}
        self._load = load
        self._loaded: LoadedModel | None = None

    @classmethod
    def of(cls, loaded: LoadedModel) -> DeferredModel:
        """An already loaded model."""
        deferred = cls(loaded.name, model_identity(loaded), lambda: loaded)
        deferred._loaded = loaded
        return deferred

    @property
    def is_loaded(self) -> bool:
        """Whether the model has been loaded."""
        return self._loaded is not None

    def get(self) -> LoadedModel:
        """The model, loaded now on the first call.

        Raises:
            JudgeError: the loaded model is not the one its identity described (its files changed).
        """
        if self._loaded is None:
            loaded = self._load()
            if model_identity(loaded) != self.identity:
                raise JudgeError(
                    f"the local judge model {self.name!r} loaded as {model_identity(loaded)}, not as the "
                    f"{self.identity} its scores were keyed by; its files changed while traitvec ran: rerun"
                )
            self._loaded = loaded
        return self._loaded
