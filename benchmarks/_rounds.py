"""Interleaved rounds for benchmarks on a noisy shared machine (standard library only).

Every benchmark runs its compared variants in rounds, A B C D, A B C D, …, so that a change of
load during the run hits every variant of a round alike. Each ratio is computed per round, from
that round's own timings, and reported as the median over rounds with its min–max; the spread
says how much the machine moved under the measurement. The machine's load is printed at start
and end.

gpu.py imports this module on a bare GPU machine, so it must import nothing outside the standard
library.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


def machine_load(when: str) -> str:
    """One line with the load averages and the CPU count, e.g. ``load at start: 1.52 1.10 0.80 ...``."""
    one, five, fifteen = os.getloadavg()
    return f"load at {when}: {one:.2f} {five:.2f} {fifteen:.2f} (1/5/15-min averages) on {os.cpu_count()} CPUs"


def interleave(
    variants: Mapping[str, Callable[[], object]],
    rounds: int,
    *,
    before: Callable[[str], object] | None = None,
    after: Callable[[str], object] | None = None,
) -> dict[str, list[float]]:
    """Run every variant once per round, in the order given, and return each one's seconds per round.

    ``before(name)`` runs untimed before a variant (e.g. resetting memory statistics), ``after(name)``
    runs inside the timing, last (e.g. a device synchronisation).
    """
    if rounds < 1:
        raise SystemExit(f"--rounds {rounds}: use 1 or more")
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            if before is not None:
                before(name)
            start = time.perf_counter()
            run()
            if after is not None:
                after(name)
            times[name].append(time.perf_counter() - start)
    return times


@dataclass(frozen=True)
class Spread:
    """The median of per-round values with their minimum and maximum."""

    median: float
    low: float
    high: float

    def show(self, digits: int = 3) -> str:
        """``0.952 (0.931–0.970)``: the median, then the min–max over rounds."""
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}–{self.high:.{digits}f})"


def spread(values: Sequence[float]) -> Spread:
    """Median, min and max of ``values`` (one per round)."""
    return Spread(statistics.median(values), min(values), max(values))


def per_round(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """``numerator[r] / denominator[r]`` for every round ``r``."""
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def ratios_line(values: Mapping[str, float], digits: Mapping[str, int] | None = None) -> str:
    """The closing ``ratios: name=value …`` line (medians), which notes quote."""
    digits = digits or {}
    return "ratios: " + " ".join(f"{name}={value:.{digits.get(name, 3)}f}" for name, value in values.items())
