"""``traitvec monitor``, ``traitvec compare`` and ``traitvec import-pairs``: reading texts with vectors."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, Literal, cast

from ..errors import ConfigError
from .settings import parse_layers

if TYPE_CHECKING:
    from ..stages.readouts import ReadoutChoice

__all__ = ["cmd_monitor", "cmd_compare", "cmd_import_pairs", "monitor_arguments", "compare_arguments"]
__all__ += ["import_pairs_arguments"]

_PREVIEW = 100


def _roots(p: argparse.ArgumentParser, traits: bool = True) -> None:
    if traits:
        p.add_argument("--traits-root", default="datasets/traits", metavar="R", help="folder of category/trait folders")
    p.add_argument("--experiments-root", default="experiments", metavar="DIR", help="folder of experiment folders")


def _readout_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("which vector (default: the evaluation's recommendation)")
    g.add_argument("--method", metavar="M", help="vector method: mean-diff (default), probe, pca")
    g.add_argument("--position", metavar="P", help="capture position (default: answer-mean, else prefill-mean)")
    g.add_argument("--layer", metavar="L", help="layer(s) to read, e.g. 6 or 4,8 (default: the recommended layer)")


def monitor_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``traitvec monitor``."""
    p.add_argument("--experiment", required=True, metavar="E", help="experiment whose model and vectors read")
    p.add_argument("--traits", nargs="+", required=True, metavar="cat/trait", help="traits to read (extracted on E)")
    p.add_argument("--input", required=True, metavar="FILE", help=".txt (a text a line) or .jsonl (text/messages rows)")
    p.add_argument("--name", metavar="N", help="output folder under experiments/E/monitor/ (default: the input's stem)")
    _roots(p)
    _readout_options(p)
    p.add_argument("--rank", action="store_true", help="rank the texts per trait by mean projection (ranking.json)")
    p.add_argument("--rank-by", metavar="S", help="rank by this summary, mean or max (implies --rank)")
    p.add_argument("--top", type=int, default=10, metavar="K", help="examples shown at each end of a ranking (10)")
    p.add_argument("--report-texts", type=int, default=200, metavar="N", help="texts shown in report.html (200)")
    p.add_argument("--force", action="store_true", help="recompute even when the outputs are current")
    g = p.add_argument_group("generation: answer the input's prompts first, then read prompt + answer")
    g.add_argument("--generate", action="store_true", help="the input holds prompts (questions) to answer")
    g.add_argument("--max-new-tokens", type=int, default=64, metavar="N", help="answer length (default 64)")
    g.add_argument("--steer", metavar="cat/trait", help="steer the answers with this trait's vector (from E)")
    g.add_argument("--coefficient", type=float, metavar="C", help="steering strength in spread units")
    g.add_argument("--steer-layer", type=int, metavar="L", help="steered layer (default: --layer, else recommended)")


def compare_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``traitvec compare``."""
    p.add_argument("--experiments", nargs="+", required=True, metavar="E", help="A B: vectors from A, shift = B - A")
    p.add_argument("--traits", nargs="+", required=True, metavar="cat/trait", help="traits to read (extracted on A)")
    p.add_argument("--input", required=True, metavar="FILE", help=".txt (a text a line) or .jsonl (text/messages rows)")
    p.add_argument("--name", metavar="N", help="output folder under experiments/A/compare/B/ (default: input stem)")
    _roots(p, traits=False)
    _readout_options(p)
    p.add_argument("--force", action="store_true", help="recompute even when compare.json is current")


def import_pairs_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``traitvec import-pairs``."""
    p.add_argument("file", metavar="FILE", help="JSON Lines preference file")
    p.add_argument("--format", required=True, metavar="F", help="kto (labelled rows) or dpo (chosen/rejected rows)")
    p.add_argument("--behavior", metavar="NAME", help="import only this behaviour (needed when the file has several)")
    p.add_argument("--out", required=True, metavar="DIR", help="trait folder to write, e.g. datasets/traits/agent/NAME")
    p.add_argument("--skip-bad", action="store_true", help="import the usable rows and list the refused ones")
    p.add_argument("--holdout", type=float, default=0.2, metavar="F", help="share of user requests held out (0.2)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the held-out draw (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace --out when it exists")


def _choice(args: argparse.Namespace) -> ReadoutChoice:
    from ..stages.readouts import ReadoutChoice

    return ReadoutChoice(method=args.method, position=args.position, layers=parse_layers(args.layer, "--layer"))


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _PREVIEW else flat[: _PREVIEW - 1] + "…"


def _number(value: float | None) -> str:
    return "      –" if value is None else f"{value:+7.3f}"


def cmd_monitor(args: argparse.Namespace) -> int:
    """Project every token of the input on each trait's vector; print where the outputs went (and the ranking)."""
    from ..experiments import load_experiment
    from ..stages.monitor import GenerateSettings, MonitorSettings, run_monitor

    if not args.generate and (args.steer or args.coefficient is not None or args.steer_layer is not None):
        raise ConfigError("--steer, --coefficient and --steer-layer steer the answers of --generate; add --generate")
    config = load_experiment(args.experiment, args.experiments_root)
    rank_by = cast("Literal['mean', 'max'] | None", args.rank_by or ("mean" if args.rank else None))  # checked there
    settings = MonitorSettings(choice=_choice(args), rank_by=rank_by, top=args.top, report_texts=args.report_texts)
    generate = None
    if args.generate:
        layer = args.steer_layer if args.steer_layer is not None else (settings.choice.layers or (None,))[0]
        generate = GenerateSettings(
            max_new_tokens=args.max_new_tokens, steer=args.steer, coefficient=args.coefficient or 0.0, layer=layer
        )
    result = run_monitor(
        config,
        args.traits,
        args.input,
        name=args.name,
        settings=settings,
        generate=generate,
        traits_root=args.traits_root,
        force=args.force,
        show_progress=sys.stderr.isatty(),
    )
    state = "computed" if result.recomputed else "current, nothing recomputed"
    print(f"monitor {config.name}/{result.paths.folder.name}: {result.texts} texts ({state})")
    for name, info in result.vectors.items():
        print(
            f"  {name}: {info['method']} {info['position']} layer {info['layer']} ({info['chosen_by']}), "
            f"values in spread units around the class midpoint"
        )
    print(f"  projections: {result.paths.projections_json}")
    print(f"  report:      {result.paths.report_html}")
    if result.ranking is not None:
        print(f"  ranking:     {result.paths.ranking_json}")
        _print_ranking(result.ranking)
    return 0


def _print_ranking(ranking: dict[str, Any]) -> None:
    by = ranking["rank_by"]
    for name, entry in ranking["traits"].items():
        print(f"\n{name}: texts ranked by {by} (top and bottom {ranking['top']})")
        for label, rows in (("top", entry["top"]), ("bottom", entry["bottom"])):
            for row in rows:
                print(f"  {label:<6} {_number(row['score'])}  line {row['line']:<5} {_preview(row['text'])}")
        if entry["unscored"]:
            print(f"  ({entry['unscored']} texts without a scorable token)")


def cmd_compare(args: argparse.Namespace) -> int:
    """The projection shift B − A per trait on the same token ids; print the table and where compare.json went."""
    from ..experiments import load_experiment
    from ..stages.compare import CompareSettings, run_compare

    if len(args.experiments) != 2:
        raise ConfigError(f"--experiments takes two experiments (A B), got {len(args.experiments)}")
    a, b = (load_experiment(name, args.experiments_root) for name in args.experiments)
    settings = CompareSettings(choice=_choice(args))
    result = run_compare(a, b, args.traits, args.input, name=args.name, settings=settings, force=args.force)
    state = "computed" if result.recomputed else "current, nothing recomputed"
    print(f"compare {a.name} -> {b.name} on {result.texts} texts ({state}); shift = B − A in spread units")
    print(f"  {'trait':<28} {'mean shift':>11} {'95% CI':>19} {'d':>7} {'d 95% CI':>17}")
    for name, entry in result.document["traits"].items():
        lo, hi = entry["mean_shift_ci95"] or (None, None)
        dlo, dhi = entry["ci95"] or (None, None)
        print(
            f"  {name:<28} {_number(entry['mean_shift']):>11} [{_number(lo)}, {_number(hi)}] "
            f"{_number(entry['d']):>7} [{_number(dlo)}, {_number(dhi)}]"
        )
        for token in entry["top_tokens"][:3]:
            print(f"      largest shift {token['shift']:+.3f} at {token['token']!r} (text {token['index']})")
    print(f"  compare.json: {result.paths.compare_json}")
    return 0


def cmd_import_pairs(args: argparse.Namespace) -> int:
    """Preference data (KTO or DPO) as a trait folder; print the counts per behaviour and every skipped row."""
    from ..preference import Format, import_pairs

    report = import_pairs(
        args.file,
        format=cast("Format", args.format),
        behavior=args.behavior,
        out=args.out,
        skip_bad=args.skip_bad,
        holdout=args.holdout,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(report.describe())
    return 0
