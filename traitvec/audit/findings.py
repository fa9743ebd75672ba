"""What a check reports: a :class:`Finding` (with :class:`Example` lines) of a :data:`Severity`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

__all__ = ["Example", "Finding", "Severity", "jsonable"]

Severity = Literal["error", "warning", "ok", "info"]


@dataclass(frozen=True)
class Example:
    """A line that triggered a finding: the file's name, its 1-based line number and the text."""

    file: str
    line: int
    text: str


@dataclass(frozen=True)
class Finding:
    """The outcome of one check on one trait.

    Attributes:
        check: the check's name (``"lexical_leak"``, ``"length_confound"``, ...).
        severity: ``"error"`` and ``"warning"`` are problems; ``"ok"`` passed; ``"info"`` did not apply.
        message: what was found, with the numbers.
        threshold: the rule the value was held against, in words.
        value: the measured number the threshold applies to, when there is one.
        examples: lines that triggered it (file, 1-based line, text), most telling first.
        fix: what to do about it (from the dataset guide).
        details: the full measurements (JSON-friendly), e.g. every flagged token with its shares.
    """

    check: str
    severity: Severity
    message: str
    threshold: str = ""
    value: float | None = None
    examples: tuple[Example, ...] = ()
    fix: str = ""
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {
            "check": self.check,
            "severity": self.severity,
            "message": self.message,
            "threshold": self.threshold,
            "value": self.value,
            "fix": self.fix,
            "examples": [dataclasses.asdict(e) for e in self.examples],
            "details": jsonable(self.details),
        }


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data: mappings and sequences recursively, floats rounded to 4 places (NaN → None)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    return value
