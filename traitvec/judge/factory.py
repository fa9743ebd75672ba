"""Choosing a judge: :func:`make_judge` from arguments and the environment, and :class:`JudgeSettings`.

:func:`make_judge` picks an :class:`~traitvec.judge.openai.OpenAIJudge` when an API is configured
(a key or a base URL, by argument or environment) and otherwise a loud
:class:`~traitvec.judge.local.LocalJudge` smoke test. :class:`JudgeSettings` holds the same choices
as one frozen, validated value, so the pipeline can carry a judge's configuration and build the
judge only when a stage needs it (``settings.make()``).

Both implementations import heavy libraries (``openai``, ``torch``); they are imported here only
when a judge is made.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NoReturn
from urllib.parse import urlsplit

from ..errors import JudgeError
from ._secrets import strip_userinfo
from .base import Judge

if TYPE_CHECKING:
    from ..models import LoadedModel

__all__ = ["DEFAULT_JUDGE_MODEL", "DEFAULT_LOCAL_JUDGE", "CachePath", "JudgeSettings", "make_judge"]

logger = logging.getLogger(__name__)

DEFAULT_JUDGE_MODEL = "gpt-4.1-mini"
DEFAULT_LOCAL_JUDGE = "smollm2-135m-instruct"

CachePath = str | os.PathLike[str] | Literal[False] | None
"""A score-cache setting: a file, ``None`` for the default file, ``False`` (or ``"off"``, ``"none"``) for none."""


def make_judge(
    model: str | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    local: str | LoadedModel | bool | None = None,
    cache_path: CachePath = None,
    concurrency: int = 16,
    text_mode: bool = False,
) -> Judge:
    """The judge the configuration asks for.

    An API judge (:class:`~traitvec.judge.openai.OpenAIJudge`) when a key or a base URL is
    configured — by argument, else ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``; its model is ``model``,
    else ``$TRAITVEC_JUDGE_MODEL``, else ``gpt-4.1-mini``. Otherwise, or when ``local`` names a model
    (or is a loaded one, or ``True`` for the embedded default), a
    :class:`~traitvec.judge.local.LocalJudge`, with a loud warning: a tiny local judge is a smoke
    test, not a measurement. Environment variables are read when this is called.

    Args:
        model: judge model name for the API judge.
        base_url: OpenAI-compatible base URL (``http://localhost:8000/v1`` for vLLM).
        api_key: API key (default ``$OPENAI_API_KEY``); never written or logged.
        local: a model name (embedded, hub id or folder), a :class:`~traitvec.models.LoadedModel`,
            or True for ``smollm2-135m-instruct``.
        cache_path: score cache file, for the API judge and the local judge alike; ``None`` for the
            default, ``False`` (or the strings ``"off"``, ``"none"``) for none.
        concurrency: API requests in flight.
        text_mode: ask the API judge for a written number instead of logprobs (for judge models whose
            tokenizer writes numbers digit by digit).

    Raises:
        JudgeError: a bad setting (e.g. a base URL without ``http://``).

    Example:
        >>> judge = make_judge()  # OPENAI_API_KEY set → gpt-4.1-mini; unset → local smoke-test judge
        >>> judge.describe()["smoke_test"]
    """
    cache_path = _cache_arg(cache_path)
    if local is None or local is False:
        key = api_key or os.environ.get("OPENAI_API_KEY") or None
        url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        if key or url:
            from .openai import OpenAIJudge

            name = model or os.environ.get("TRAITVEC_JUDGE_MODEL") or DEFAULT_JUDGE_MODEL
            return OpenAIJudge(
                name, base_url=url, api_key=key, concurrency=concurrency, cache_path=cache_path, logprobs=not text_mode
            )
        reason = "no judge API is configured (neither OPENAI_API_KEY nor OPENAI_BASE_URL is set)"
        local = DEFAULT_LOCAL_JUDGE
    else:
        reason = "a local judge was asked for"
    from ..models import LoadedModel
    from .local import LocalJudge

    name = local.name if isinstance(local, LoadedModel) else DEFAULT_LOCAL_JUDGE if local is True else local
    logger.warning(
        "traitvec: WARNING: %s, so answers are scored by the tiny in-process model %s. Its scores are a SMOKE "
        "TEST of the pipeline, NOT a measurement of the trait. For real scores set OPENAI_API_KEY, or point "
        "OPENAI_BASE_URL (make_judge(base_url=)) at an OpenAI-compatible server (vLLM, llama.cpp, Ollama).",
        reason,
        name,
    )
    if isinstance(local, LoadedModel):
        return LocalJudge(local, cache_path=cache_path)
    return _deferred_local_judge(name, cache_path)


def _deferred_local_judge(name: str, cache_path: CachePath) -> Judge:
    """A local judge that loads ``name`` when it first scores (the model key, which keys its scores, known before)."""
    from pathlib import Path

    from ..experiments import ExperimentConfig
    from ..models import ModelPool
    from ._deferred import DeferredModel
    from .local import LocalJudge

    pool = ModelPool()
    config = ExperimentConfig(name="local-judge", path=Path.cwd(), model=name)
    model_key = pool.model_key(config)  # loads the model only when nothing cheaper can tell (a hub id not cached)
    return LocalJudge(DeferredModel(name, model_key, lambda: pool.get(config)), cache_path=cache_path)


def _cache_arg(value: CachePath) -> CachePath:
    if isinstance(value, str) and value.strip().lower() in ("", "off", "none", "false", "no"):
        return False
    return value


@dataclass(frozen=True)
class JudgeSettings:
    """Which judge to build, as one validated value; :meth:`make` builds it (see :func:`make_judge`).

    Attributes:
        model: judge model name for an API judge (None or ``""``: ``$TRAITVEC_JUDGE_MODEL``, else
            gpt-4.1-mini).
        base_url: OpenAI-compatible base URL (None or ``""``: ``$OPENAI_BASE_URL``).
        local: a local judge model name, or True for the embedded ``smollm2-135m-instruct``; None or
            False for an API judge when one is configured.
        cache: score cache file; None for the default, False (or ``"off"``) for none.
        concurrency: API requests in flight.
        text_mode: ask the API judge for a written number instead of logprobs.

    Raises:
        JudgeError: a setting of the wrong type or out of range; the message names it
            (``JudgeSettings.concurrency = 0 ...``).

    Example:
        >>> settings = JudgeSettings(base_url="http://localhost:8000/v1", model="Qwen/Qwen2.5-7B-Instruct")
        >>> judge = settings.make()  # reads OPENAI_API_KEY now, not when the settings were made
    """

    model: str | None = None
    base_url: str | None = None
    local: str | bool | None = None
    cache: CachePath = None
    concurrency: int = 16
    text_mode: bool = False

    def __post_init__(self) -> None:
        if self.model is not None and (not isinstance(self.model, str) or (self.model and not self.model.strip())):
            _bad("model", self.model, "a judge model name such as gpt-4.1-mini, or None for the default")
        if self.base_url is not None and (
            not isinstance(self.base_url, str) or (self.base_url and not _is_http_url(self.base_url))
        ):
            shown = strip_userinfo(self.base_url) if isinstance(self.base_url, str) else self.base_url
            _bad("base_url", shown, "an http(s) URL such as http://localhost:8000/v1, or None")
        if self.local is not None and not isinstance(self.local, bool):
            if not isinstance(self.local, str) or not self.local.strip():
                _bad("local", self.local, "a model name, True for the embedded default, or None")
        if self.cache is not None and self.cache is not False and not isinstance(self.cache, str | os.PathLike):
            _bad("cache", self.cache, "a file path, None for the default file, or False for no cache")
        if not isinstance(self.concurrency, int) or isinstance(self.concurrency, bool) or self.concurrency < 1:
            _bad("concurrency", self.concurrency, "a positive number of requests in flight")
        if not isinstance(self.text_mode, bool):
            _bad("text_mode", self.text_mode, "True or False")

    def make(self) -> Judge:
        """The judge these settings describe (:func:`make_judge`; the environment is read now)."""
        return make_judge(
            self.model,
            base_url=self.base_url,
            local=self.local,
            cache_path=self.cache,
            concurrency=self.concurrency,
            text_mode=self.text_mode,
        )


def _bad(field: str, value: object, expected: str) -> NoReturn:
    raise JudgeError(f"JudgeSettings.{field} = {value!r} is invalid; expected {expected}",
                     setting=f"JudgeSettings.{field}")  # fmt: skip


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)
