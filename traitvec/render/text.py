"""Plain-text tables and summaries for a terminal: the pipeline's final tables and the vetting report.

Plain data in (evaluations, ``results.json`` and ``vetting.json`` documents), text out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..evaluation import Evaluation

__all__ = [
    "format_table",
    "fmt",
    "extraction_table",
    "held_out_cell",
    "steering_table",
    "rescore_table",
    "format_vetting",
]

EXTRACTION_HEADER = [
    "trait",
    "position",
    "method",
    "layer (chosen on validation)",
    "test AUROC",
    "test Cohen's d",
    "test accuracy",
]
STEERING_HEADER = [
    "trait",
    "held-out gain [95% CI]",
    "in-sample best: layer",
    "coef",
    "baseline trait",
    "steered trait",
    "coherence",
    "prompted trait",
    "prompted coherence",
    "projection gain",
    "smoke-test judge",
]


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A plain aligned text table: the header, a rule of dashes, then the rows.

    Example:
        >>> print(format_table([["a", "1"]], ["name", "n"]))
        name  n
        ----  -
        a     1
    """
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def fmt(value: Any, digits: int = 1) -> str:
    """``-`` for None, floats to ``digits`` decimals, anything else as ``str``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def extraction_table(traits: Sequence[tuple[str, Mapping[str, Evaluation]]]) -> str:
    """The recommended layer of every method at every position (chosen on the validation pairs), with its
    metrics on the test pairs (used for nothing else).

    Args:
        traits: ``(trait name, {position: evaluation})`` per trait.
    """
    rows = []
    for trait, evaluations in traits:
        for position, ev in evaluations.items():
            for method, layer in ev.recommended.items():
                metric = next(m for m in ev.for_method(method) if m.layer == layer)
                rows.append(
                    [
                        trait,
                        position,
                        method,
                        str(layer),
                        fmt(metric.auroc, 3),
                        fmt(metric.cohens_d, 2),
                        fmt(metric.accuracy, 3),
                    ]
                )
    return format_table(rows, EXTRACTION_HEADER)


def held_out_cell(results: Mapping[str, Any]) -> str:
    """The held-out headline of a ``results.json`` document: ``+4.2 [-1.0, +9.4]`` (``-`` when there is none)."""
    held = results.get("held_out") or {}
    gain, ci = held.get("trait_gain"), held.get("ci95")
    if gain is None:
        return "-"
    return f"{gain:+.1f}" + (f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else "")


def steering_table(traits: Sequence[tuple[str, Mapping[str, Any] | None]]) -> str:
    """The held-out gain of every trait first, then its in-sample best coherent run against its
    baseline, and its prompting baseline (the unsteered model asked to show the trait).

    Below the table, one line per trait where asking for the trait moved it further than steering
    did (the held-out gain when there is one, else the in-sample best's): researchers must see when
    prompting beats steering.

    Args:
        traits: ``(trait name, results.json document or None)`` per trait.
    """
    rows, notes = [], []
    for trait, results in traits:
        s = results or {}
        best = s.get("best") or {}
        base = s.get("baseline") or {}
        prompted = s.get("prompting_baseline") or {}
        rows.append(
            [
                trait,
                held_out_cell(s),
                fmt(best.get("layer")),
                fmt(best.get("coefficient"), 2),
                fmt(base.get("trait", {}).get("mean")),
                fmt(best.get("trait", {}).get("mean")),
                fmt(best.get("coherence", {}).get("mean")),
                fmt(prompted.get("trait", {}).get("mean")),
                fmt(prompted.get("coherence", {}).get("mean")),
                fmt(best.get("projection_gain"), 2),
                "yes" if s.get("smoke_test") else "no",
            ]
        )
        held = (s.get("held_out") or {}).get("trait_gain")
        steered = held if held is not None else best.get("trait_gain")
        note = _prompting_note(trait, steered, prompted.get("trait_gain"), "held-out" if held is not None else "")
        if note:
            notes.append(note)
    table = format_table(rows, STEERING_HEADER)
    return "\n".join([table, "", *notes]) if notes else table


def _prompting_note(trait: str, steered: float | None, prompted: float | None, label: str) -> str | None:
    """The line saying prompting beat steering on ``trait`` (``None`` when it did not, or is unknown)."""
    if prompted is None or (steered is not None and steered >= prompted):
        return None
    steered_text = (
        "no coherent run" if steered is None else f"{steered:+.1f} steered" + (f" ({label})" if label else "")
    )
    return f"{trait}: prompting beats steering (trait gain {prompted:+.1f} prompted vs {steered_text})"


def rescore_table(comparison: Mapping[str, Any]) -> str:
    """The old and new judge's means per run, their differences, and the two judges' correlations.

    Args:
        comparison: :func:`traitvec.stages.rescore.compare_judges`'s result.
    """
    rows = [
        [
            r["run"],
            fmt(r["trait"]["old"]),
            fmt(r["trait"]["new"]),
            _signed(r["trait"]["difference"]),
            fmt(r["coherence"]["old"]),
            fmt(r["coherence"]["new"]),
            _signed(r["coherence"]["difference"]),
        ]
        for r in comparison["runs"]
    ]
    header = ["run", "trait old", "trait new", "diff", "coherence old", "coherence new", "diff"]
    lines = [format_table(rows, header), ""]
    for kind in ("trait", "coherence"):
        mean = comparison["mean_difference"][kind]
        runs, responses = comparison["correlation"]["runs"], comparison["correlation"]["responses"]
        lines.append(
            f"{kind}: mean difference (new - old) {_signed(mean['mean'])} over {mean['n']} runs; correlation "
            f"across runs {fmt(runs[kind], 2)} (n={runs['n_' + kind]}), across responses "
            f"{fmt(responses[kind], 2)} (n={responses['n_' + kind]})"
        )
    return "\n".join(lines)


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}"


def format_vetting(report: Mapping[str, Any], *, max_failing: int = 40) -> str:
    """A readable summary of a ``vetting.json`` report: class means, separation, verdict, failing scenarios."""
    pos, neg = report["positive"], report["negative"]
    sep, ci = report["separation"], report["separation_ci95"]
    interval = ("[" + _num(ci[0]) + ", " + _num(ci[1]) + "]") if ci else "-"
    lines = [
        f"{report['trait']}: scenario vetting on {report['model']['name']}, judge {report['judge'].get('name')}",
        f"  positive mean {_num(pos['mean'])}  {_counts(pos)}",
        f"  negative mean {_num(neg['mean'])}  {_counts(neg)}",
        f"  separation    {_num(sep)}  95% CI {interval}"
        f"  -> {'PASS' if report['passed'] else 'FAIL'} (needs > {report['settings']['threshold']:g})",
        f"  pairs with both sides passing: {report['n_pairs_passed']} / {report['n_pairs']}",
    ]
    failing = report["failing"]
    if failing:
        lines.append(
            f"  failing scenarios ({len(failing)}; positive < {report['settings']['pass_score']:g}, "
            f"negative >= {report['settings']['pass_score']:g}, or unscored):"
        )
        lines.append(f"    {'line':>4}  {'side':8}  {'score':>5}  prefill → continuation")
        for e in failing[:max_failing]:
            score = _num(e["score"]) if e["score"] is not None else e["status"]
            text = _clip(f"{e['prefill'][-70:]} → {e['continuation']}", 110)
            lines.append(f"    {e['line']:>4}  {e['side']:8}  {score:>5}  {text}")
        if len(failing) > max_failing:
            lines.append(f"    … {len(failing) - max_failing} more in vetting.json")
    if report.get("smoke_test"):
        lines.append("  WARNING: scored by a tiny local judge: a smoke test, not a measurement")
    return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _counts(summary: Mapping[str, Any]) -> str:
    return f"(n={summary['n']}, failed {summary['n_failed']}, abstained {summary['n_abstained']})"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
