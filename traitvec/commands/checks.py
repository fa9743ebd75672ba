"""Checks of parsed flags that argparse cannot make: numbers in range, every bad value in one line.

Numeric flags are parsed leniently (:func:`number`): a value that is not a number is kept as a
:class:`BadNumber` instead of stopping the parse at the first one, so :func:`invalid_numbers` can
report every invalid flag of a command line at once, before anything is loaded::

    traitvec run: error: --questions 0: use a whole number of at least 1; --coherence-floor 150: use a
    number from 0 to 100 (see traitvec run --help)

The ranges are those of the library settings the flags feed (``SteeringSettings``, ``VetSettings``,
``ExtractionSettings``, ``JudgeSettings``), checked here too so that nothing is half-run.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BadNumber", "NumberType", "Rule", "RULES", "LAYER_LISTS", "number", "invalid_numbers", "layer_list_problem"]


@dataclass(frozen=True)
class BadNumber:
    """A flag value that did not parse as the number it should be (kept to be reported with the others)."""

    text: str


@dataclass(frozen=True)
class Rule:
    """What one numeric flag accepts: whole numbers or any finite number, within ``low``..``high``.

    Attributes:
        flag: the flag as typed (``--questions``).
        integer: whole numbers only.
        low: smallest value allowed (``None``: no lower bound).
        high: largest value allowed (``None``: no upper bound).
    """

    flag: str
    integer: bool
    low: float | None = None
    high: float | None = None

    def problem(self, value: object) -> str | None:
        """Why ``value`` is not acceptable (``None`` when it is)."""
        shown = value.text if isinstance(value, BadNumber) else _show(value)
        if isinstance(value, BadNumber) or (self.integer and not isinstance(value, int)):
            return f"{self.flag} {shown!s}: {self.expected()}"
        assert isinstance(value, int | float)
        if not math.isfinite(value):
            return f"{self.flag} {shown}: {self.expected()}"
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            return f"{self.flag} {shown}: {self.expected()}"
        return None

    def expected(self) -> str:
        """``use a whole number of at least 1``, ``use a number from 0 to 100``…"""
        kind = "a whole number" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            return f"use {kind} from {_show(self.low)} to {_show(self.high)}"
        if self.low is not None:
            return f"use {kind} of at least {_show(self.low)}"
        if self.high is not None:
            return f"use {kind} of at most {_show(self.high)}"
        return f"use a finite {kind.removeprefix('a ')}"


def _show(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


RULES: dict[str, Rule] = {
    rule.flag: rule
    for rule in (
        # steering evaluation (traitvec run)
        Rule("--questions", True, 1),
        Rule("--samples", True, 1),
        Rule("--search-steps", True, 1),
        Rule("--n-layers", True, 1),
        Rule("--max-new-tokens", True, 1),
        Rule("--coherence-floor", False, 0, 100),
        Rule("--fluency-margin", False, 0),
        Rule("--repetition-ceiling", False, 0, 1),
        # extraction
        Rule("--response-tokens", True, 1),
        Rule("--answer-tokens", True, 1),
        # scenario vetting
        Rule("--tokens", True, 16, 32),
        Rule("--threshold", False, 0, 100),
        Rule("--pass-score", False, 0, 100),
        # the judge
        Rule("--judge-concurrency", True, 1),
        # traitvec steer / export-gguf
        Rule("--layer", True, 0),
        Rule("--coefficient", False),
    )
}
"""Flag → what it accepts. A numeric flag (``type=INT`` / ``FLOAT``) missing here only has to be a finite number."""

LAYER_LISTS = ("--layers", "--steer-layers")
"""Flags holding comma-separated layer numbers (or ``all``)."""


@dataclass(frozen=True)
class NumberType:
    """An argparse ``type=`` that never stops the parse: the number, or a :class:`BadNumber` to report later.

    With ``off=True`` the word ``off`` (any case) parses to ``None`` (the setting disabled).

    Example:
        >>> NumberType(integer=True)("12"), NumberType(integer=True)("x")
        (12, BadNumber(text='x'))
    """

    integer: bool
    off: bool = False

    def __call__(self, text: str) -> int | float | BadNumber | None:
        if self.off and text.strip().lower() == "off":
            return None
        try:
            return int(text) if self.integer else float(text)
        except ValueError:
            return BadNumber(text)


def number(integer: bool, *, off: bool = False) -> NumberType:
    """The lenient ``type=`` of an integer (``integer=True``) or a float flag (``off=True``: or ``off``)."""
    return NumberType(integer, off)


def invalid_numbers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """One problem per invalid numeric flag of ``parser`` in ``args`` (all of them, in the parser's order).

    The numeric flags are those parsed with a :class:`NumberType`; a flag left at a ``None`` default is not
    checked, and a repeated flag (``--coefficient``) is checked value by value.
    """
    problems = []
    for action in parser._actions:  # argparse keeps its actions here; there is no public accessor
        if not action.option_strings:
            continue
        flag = action.option_strings[0]
        value = getattr(args, action.dest, None)
        if flag in LAYER_LISTS:
            problem = layer_list_problem(value, flag)
        elif isinstance(action.type, NumberType):
            rule = RULES.get(flag) or Rule(flag, action.type.integer)
            values: Sequence[object] = value if isinstance(value, list) else [value]
            problem = next((p for v in values if v is not None and (p := rule.problem(v)) is not None), None)
        else:
            continue
        if problem is not None:
            problems.append(problem)
    return problems


def layer_list_problem(value: object, flag: str) -> str | None:
    """Why a ``--layers``-style value (``4,6,8`` or ``all``) is invalid, or ``None``."""
    if not isinstance(value, str) or value.strip() == "all":
        return None
    items = [x.strip() for x in value.split(",") if x.strip()]
    expected = "use comma-separated layer numbers of at least 0 such as 4,6,8, or 'all'"
    if not items:
        return f"{flag} {value!r}: {expected}"
    for item in items:
        try:
            layer = int(item)
        except ValueError:
            return f"{flag} {value!r}: {expected}"
        if layer < 0:
            return f"{flag} {value!r}: {expected}"
    return None
