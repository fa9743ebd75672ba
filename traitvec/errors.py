"""Errors a user can cause and fix.

Every user mistake (a bad file, flag or config) raises a subclass of :class:`TraitvecError` that
also inherits the natural builtin, so ``except ValueError`` keeps working. The command line prints
the message as one line and exits with status 2; anything else is a bug and keeps its traceback.

A message says what is wrong, the value, what was expected and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "TraitvecError",
    "TraitDataError",
    "TraitNotFoundError",
    "ConfigError",
    "ExperimentNotFoundError",
    "ModelError",
    "VectorError",
    "JudgeError",
]


class TraitvecError(Exception):
    """Base class of every error a user can cause and fix.

    Args:
        message: what is wrong, the value, what was expected and how to fix it.
        setting: the library setting the message is about, spelled as it appears in the message
            (``"ExtractionSettings.backend"``, ``"load_trait(root=)"``); the command line replaces
            that spelling with its flag (``--backend``) when it reports the error.
    """

    def __init__(self, message: str = "", *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class TraitDataError(TraitvecError, ValueError):
    """A trait folder holds data that cannot be used (message names file and line)."""


class TraitNotFoundError(TraitvecError, LookupError):
    """A named trait does not exist under the traits root."""


class ConfigError(TraitvecError, ValueError):
    """An experiment config, a flag or an argument has a bad value."""


class ExperimentNotFoundError(TraitvecError, LookupError):
    """A named experiment has no ``config.toml``."""


class ModelError(TraitvecError, ValueError):
    """A model cannot be found, loaded or understood (for example its layers cannot be located)."""


class VectorError(TraitvecError, ValueError):
    """A vector file is malformed or does not fit the model it is applied to."""


class JudgeError(TraitvecError, RuntimeError):
    """The judge is misconfigured (no key, bad URL) in a way the user must fix."""
