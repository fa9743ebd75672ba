"""Markdown summaries: ``results.md`` of a steering evaluation, drawn from its ``results.json`` document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .text import fmt

__all__ = ["format_results"]


def format_results(results: Mapping[str, Any]) -> str:
    """``results.md``: the protocol, baseline, every run, the best run and sample answers."""
    lines = [f"# Steering evaluation: {results['trait']}", ""]
    if results.get("smoke_test"):
        lines += ["> **Smoke test, not a measurement:** scored by a tiny local judge.", ""]
    lines += _protocol(results) + [""] + _runs_table(results) + [""]
    best = results["best"]
    if best:
        lines += _best(results)
    else:
        lines.append(
            "**No coherent run improved on the baseline**: lower the coherence floor, try other layers, "
            "or check the vector's evaluation."
        )
    return "\n".join(lines) + "\n"


def _floor_text(results: Mapping[str, Any]) -> str:
    requested, effective = results["coherence_floor"]["requested"], results["coherence_floor"]["effective"]
    if effective == requested:
        return f"{requested:g}"
    return f"{effective:.1f} (requested {requested:g}; the unsteered baseline scores under it)"


def _protocol(results: Mapping[str, Any]) -> list[str]:
    vec = results["vector"]
    return [
        f"- vector: `{vec['method']}` at `{vec['position']}`, extracted on {vec['extracted_on'].get('name')}",
        f"- steered model: {results['steer_model']['name']}; layers {results['layers']}; direction "
        f"{results['direction']}",
        f"- judge: {results['judge'].get('name')}; coherence floor {_floor_text(results)}",
        f"- coefficients in spread units; {len(results['questions'])} questions × "
        f"{results['settings']['samples']} sample(s)",
    ]


def _runs_table(results: Mapping[str, Any]) -> list[str]:
    base, best = results["baseline"], results["best"]
    lines = [
        "| layer | coefficient | trait (mean ± CI) | coherence | trait gain | projection gain "
        "| n / failed / abstained |",
        "|---|---|---|---|---|---|---|",
        f"| – | 0 (baseline) | {fmt(base['trait']['mean'])} | {fmt(base['coherence']['mean'])} | – | – | "
        f"{base['trait']['n']} / {base['trait']['n_failed']} / {base['trait']['n_abstained']} |",
    ]
    for run in sorted(results["runs"], key=lambda r: (r["layer"], abs(r["coefficient"]))):
        ci = run["trait"]["ci95"]
        trait_cell = fmt(run["trait"]["mean"]) + (f" ± {(ci[1] - ci[0]) / 2:.1f}" if ci else "")
        mark = " ✓" if run is best or run == best else ""
        lines.append(
            f"| {run['layer']} | {run['coefficient']:+.3g}{mark} | {trait_cell} | {fmt(run['coherence']['mean'])} | "
            f"{fmt(run['trait_gain'])} | {fmt(run['projection_gain'], 2)} | {run['trait']['n']} / "
            f"{run['trait']['n_failed']} / {run['trait']['n_abstained']} |"
        )
    return lines


def _best(results: Mapping[str, Any]) -> list[str]:
    base, best = results["baseline"], results["best"]
    lines = [
        f"**Best:** layer {best['layer']}, coefficient {best['coefficient']:+.3g}: trait "
        f"{fmt(base['trait']['mean'])} → {fmt(best['trait']['mean'])} at coherence "
        f"{fmt(best['coherence']['mean'])}; projection gain {fmt(best['projection_gain'], 2)}."
    ]
    examples = [
        r for r in results["responses"] if r["layer"] == best["layer"] and r["coefficient"] == best["coefficient"]
    ][:3]
    baseline_answers = {
        r["question_index"]: r for r in results["responses"] if r["coefficient"] == 0 and r["sample"] == 0
    }
    for r in examples:
        b = baseline_answers.get(r["question_index"])
        lines += [
            "",
            f"**Q:** {r['question']}",
            f"- baseline: {(b or {}).get('text', '').strip()!r}",
            f"- steered: {r['text'].strip()!r}",
        ]
    return lines
