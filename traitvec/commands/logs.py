"""How the command line logs: one stderr handler for the ``traitvec`` logger, warnings prefixed.

:func:`command_logging` sets it up for one command and returns what undoes it, so ``main()``
called from a notebook or a test leaves that process's logging as it found it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

__all__ = ["command_logging"]


def command_logging(verbose: bool) -> Callable[[], None]:
    """Log to stderr for one command; returns what puts the caller's logging back as it was."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    loggers = [logging.getLogger(name) for name in ("traitvec", "httpx", "httpx2", "openai", "transformers", "urllib3")]
    saved = [(logger, logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    root = loggers[0]
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    for noisy in loggers[1:]:
        noisy.setLevel(logging.WARNING)

    def restore() -> None:
        for logger, handlers, level, propagate in saved:
            logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate

    return restore


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING and not message.startswith("traitvec:"):
            return f"traitvec: warning: {message}"
        return message
