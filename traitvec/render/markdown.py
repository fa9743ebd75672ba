"""Markdown summaries: ``results.md`` of a steering evaluation, drawn from its ``results.json`` document.

The page leads with the held-out estimate (the configuration chosen on one half of the questions
and scored on the other, see ``docs/steering-evaluation.md``), then the protocol, every run and the
in-sample best with sample answers. A best run whose gain interval contains zero says it is not
distinguishable from the baseline; a run whose judge failed says so instead of giving advice about
the coherence floor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .text import fmt

__all__ = ["format_results", "distinguishable"]


def format_results(results: Mapping[str, Any]) -> str:
    """``results.md``: the held-out headline, the protocol, baseline, every run, the best run and sample answers."""
    lines = [f"# Steering evaluation: {results['trait']}", ""]
    if results.get("smoke_test"):
        lines += ["> **Smoke test, not a measurement:** scored by a tiny local judge.", ""]
    failed = _judge_failure(results)
    if failed:
        lines += [failed, ""]
    lines += _held_out(results) + [""] + _prompting(results) + _protocol(results) + [""] + _runs_table(results) + [""]
    if results["best"]:
        lines += _best(results)
    elif not failed:
        lines.append(_no_best(results))
    return "\n".join(lines) + "\n"


def distinguishable(gain: float | None, ci95: list[float] | None) -> bool:
    """Whether a gain is distinguishable from the baseline: its 95% interval exists and excludes 0."""
    return gain is not None and ci95 is not None and (ci95[0] > 0 or ci95[1] < 0)


def _interval(ci: list[float] | None) -> str:
    return f"[{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else "(no interval)"


def _judge_failure(results: Mapping[str, Any]) -> str | None:
    scoring = results.get("scoring") or {}
    if not scoring.get("n_failed"):
        return None
    error = scoring.get("last_error") or "no error message"
    head = "The judge failed" if results.get("status") == "judge failed" else "Some judge items failed"
    return (
        f"> **{head}** on {scoring['n_failed']} of {scoring['n_items']} items (last error: {error}). "
        "Unscored items are counted, never averaged in; rerun when the judge is reachable: the finished "
        "answers and scores are kept and only the failed items are asked again."
    )


def _held_out(results: Mapping[str, Any]) -> list[str]:
    held = results.get("held_out") or {}
    gain = held.get("trait_gain")
    if gain is None:
        return [f"**Held-out gain:** - ({held.get('note', 'not computed')})."]
    folds = held.get("folds", [])
    chosen = "; ".join(
        f"fold {i + 1}: layer {f['chosen']['layer']} × {f['chosen']['coefficient']:+.3g}" if f.get("chosen") else
        f"fold {i + 1}: none coherent"
        for i, f in enumerate(folds)
    )  # fmt: skip
    verdict = "" if distinguishable(gain, held.get("ci95")) else " — not distinguishable from baseline"
    return [
        f"**Held-out gain: {gain:+.1f}** 95% CI {_interval(held.get('ci95'))} over {held['n_questions']} "
        f"questions, held-out coherence {fmt(held.get('coherence'))}{verdict}.",
        f"Chosen on one half of the questions, scored on the other, halves swapped ({chosen}); the search grid "
        "is shared, only the choice is cross-fitted.",
    ]


def _prompting(results: Mapping[str, Any]) -> list[str]:
    """The prompting baseline beside the headline (nothing when the run had none)."""
    prompted = results.get("prompting_baseline")
    if not prompted:
        return []
    gain, held = prompted.get("trait_gain"), (results.get("held_out") or {}).get("trait_gain")
    compare = ""
    if gain is not None and held is not None:
        compare = " — **prompting beats steering**" if gain > held else " — steering beats prompting"
    return [
        f"**Prompting baseline** (the unsteered model asked to show the trait, {prompted['placement']}): trait "
        f"{fmt(prompted['trait']['mean'])}, gain {fmt(gain)} {_interval(prompted.get('trait_gain_ci95'))}, "
        f"coherence {fmt(prompted['coherence']['mean'])}, {_fluency_cell(prompted)} ({prompted.get('verdict')})"
        f"{compare}.",
        "",
    ]


def _fluency_cell(summary: Mapping[str, Any]) -> str:
    """``log-prob -1.23, ppl 3.4, rep 0.18`` of a summary's ``fluency`` (``-`` parts when unread)."""
    f = summary.get("fluency") or {}
    logprob, ppl, rep = ((f.get(k) or {}).get("mean") for k in ("mean_logprob", "perplexity", "repetition"))
    return f"log-prob {fmt(logprob, 2)}, ppl {fmt(ppl)}, rep {fmt(rep, 2)}"


def _floor_text(results: Mapping[str, Any]) -> str:
    requested, effective = results["coherence_floor"]["requested"], results["coherence_floor"]["effective"]
    if effective == requested:
        return f"{requested:g}"
    return f"{effective:.1f} (requested {requested:g}; the unsteered baseline scores under it)"


def _protocol(results: Mapping[str, Any]) -> list[str]:
    vec, settings = results["vector"], results["settings"]
    return [
        f"- vector: `{vec['method']}` at `{vec['position']}`, extracted on {vec['extracted_on'].get('name')}",
        f"- steered model: {results['steer_model']['name']}; layers {results['layers']}; direction "
        f"{results['direction']}",
        f"- judge: {results['judge'].get('name')}; coherence floor {_floor_text(results)}, with at least "
        f"{settings.get('min_scored', 0.8):.0%} of a run's answers scored",
        f"- coefficients in spread units; {len(results['questions'])} questions × {settings['samples']} sample(s); "
        "intervals are across questions",
        *_guard_line(results),
    ]


def _guard_line(results: Mapping[str, Any]) -> list[str]:
    guard = results.get("fluency_guard")
    if not guard:
        return []
    parts = []
    if guard.get("min_mean_logprob") is not None:
        parts.append(f"mean log-prob at least {guard['min_mean_logprob']:.2f} ({guard['margin']:g} under the baseline)")
    if guard.get("max_repetition") is not None:
        parts.append(f"3-gram repetition at most {guard['max_repetition']:.2f}")
    return [f"- fluency guard (judge-free, unsteered model): {'; '.join(parts) or 'off'}"] if parts else []


def _runs_table(results: Mapping[str, Any]) -> list[str]:
    base, best = results["baseline"], results["best"]
    lines = [
        "| layer | coefficient | trait (mean ± CI) | coherence | trait gain [95% CI] | projection gain "
        "| fluency | verdict | n / failed / abstained |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| – | 0 (baseline) | {fmt(base['trait']['mean'])} | {fmt(base['coherence']['mean'])} | – | – | "
        f"{_fluency_cell(base)} | – | "
        f"{base['trait']['n']} / {base['trait']['n_failed']} / {base['trait']['n_abstained']} |",
    ]
    for run in sorted(results["runs"], key=lambda r: (r["layer"], abs(r["coefficient"]))):
        ci = run["trait"]["ci95"]
        trait_cell = fmt(run["trait"]["mean"]) + (f" ± {(ci[1] - ci[0]) / 2:.1f}" if ci else "")
        gain_ci = run.get("trait_gain_ci95")
        gain_cell = fmt(run["trait_gain"]) + (f" {_interval(gain_ci)}" if gain_ci else "")
        mark = " ✓" if run is best or run == best else ""
        verdict = run.get("verdict") or ("coherent" if run["coherent"] else "below floor")
        lines.append(
            f"| {run['layer']} | {run['coefficient']:+.3g}{mark} | {trait_cell} | {fmt(run['coherence']['mean'])} | "
            f"{gain_cell} | {fmt(run['projection_gain'], 2)} | {_fluency_cell(run)} | {verdict} | "
            f"{run['trait']['n']} / {run['trait']['n_failed']} / {run['trait']['n_abstained']} |"
        )
    return lines


def _no_best(results: Mapping[str, Any]) -> str:
    verdicts = {r.get("verdict") for r in results["runs"]}
    if verdicts and verdicts <= {"unscored", "too few scored"}:
        return (
            "**No run had enough scored answers to judge its coherence**: check the judge's failures above "
            "and rerun; nothing about the coherence floor can be concluded."
        )
    return (
        "**No coherent run improved on the baseline**: lower the coherence floor, try other layers, "
        "or check the vector's evaluation."
    )


def _best(results: Mapping[str, Any]) -> list[str]:
    base, best = results["baseline"], results["best"]
    gain_ci = best.get("trait_gain_ci95")
    verdict = ""
    if not distinguishable(best["trait_gain"], gain_ci):
        why = f"its gain's 95% interval {_interval(gain_ci)} contains 0" if gain_ci else "its gain has no interval"
        verdict = f" **Not distinguishable from baseline**: {why}."
    lines = [
        f"**In-sample best (✓):** layer {best['layer']}, coefficient {best['coefficient']:+.3g}: trait "
        f"{fmt(base['trait']['mean'])} → {fmt(best['trait']['mean'])} (gain {fmt(best['trait_gain'])}) at coherence "
        f"{fmt(best['coherence']['mean'])}; projection gain {fmt(best['projection_gain'], 2)}. Chosen and scored "
        f"on the same questions, so optimistic.{verdict}"
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
