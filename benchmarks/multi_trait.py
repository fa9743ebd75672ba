#!/usr/bin/env python3
"""Several traits' steering searches sharing one generate per round, against one trait after another.

On the embedded model (default gemma-3-270m), three bundled traits are extracted once (mean-diff at
prefill-mean). Each round then runs both variants of the same short steering evaluation
(``--questions`` questions, ``--search-steps`` search rounds over ``--n-layers`` candidate layers,
``--tokens`` new tokens, the prompting baseline; scored by the judge double of
:mod:`traitvec.judge.testing` on 127.0.0.1, no score cache, everything recomputed):

  (a) one after another: ``run_steering_eval`` of each trait in turn (what ``--no-batch-traits`` does);
  (b) batched: ``run_steering_evals`` of the three traits, one ``generate`` per round across
      traits × layers × questions;

and the rounds repeat (a b, a b, …), so that load drifting on a shared machine hits both alike.

Then it measures what sharing *extraction* batches across traits could gain at most:

  (c) capture of each trait alone (its own length-sorted batches under the token budget);
  (d) one capture of the three traits' prompts together, as a single trait (mixed batches);

interleaved (c d, c d, …). Traitvec extracts traits one after another on one loaded model (c):
mixing rows of several traits in one batch changes each row's activations in the last bits
(other padded lengths take other kernel paths), so results would no longer be identical to a
trait's alone, and (d) says how much speed that would buy.
The speed-up is computed per round and printed as the median with its min–max, with the machine's
load at start and end. The results of both variants are compared (timings aside) every round. It
ends with one line

  ratios: multi_trait_speedup=X shared_extraction_bound=Y

(the medians of one-after-another time / batched time, and of (c) time / (d) time).

    python benchmarks/multi_trait.py [--model gemma-3-270m] [--rounds 3] [--tokens 24]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from _rounds import interleave, machine_load, per_round, ratios_line, spread  # noqa: E402

from traitvec.batching import length_batches  # noqa: E402
from traitvec.capture import capture, default_budget  # noqa: E402
from traitvec.experiments import ExperimentConfig  # noqa: E402
from traitvec.judge import make_judge  # noqa: E402
from traitvec.judge.testing import JudgeServer, KeywordResponder  # noqa: E402
from traitvec.models import ModelPool  # noqa: E402
from traitvec.stages.extract import ExtractionSettings  # noqa: E402
from traitvec.stages.multi_steer import run_steering_evals  # noqa: E402
from traitvec.stages.pipeline import load_traits, run_pipeline  # noqa: E402
from traitvec.stages.steer import SteeringSettings, run_steering_eval  # noqa: E402

TRAITS = ("states/optimism", "styles/formality", "beliefs/confidence")
TIMINGS = frozenset({"seconds", "finished_at", "created"})


def untimed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--questions", type=int, default=4, help="steering questions per trait (default 4)")
    parser.add_argument("--search-steps", type=int, default=2, help="coefficient search rounds (default 2)")
    parser.add_argument("--n-layers", type=int, default=2, help="candidate layers (default 2)")
    parser.add_argument("--tokens", type=int, default=24, help="new tokens per answer (default 24)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "traitvec-bench-multi-trait",
        help="folder of the benchmark's experiment; a rerun reuses its extraction (default: in the temp folder)",
    )
    args = parser.parse_args()
    print(machine_load("start"))
    config = ExperimentConfig(name="bench", path=args.work / args.model, model=args.model)
    config.path.mkdir(parents=True, exist_ok=True)
    traits = load_traits(TRAITS, ROOT / "datasets" / "traits")
    extraction = ExtractionSettings(methods=("mean-diff",), positions=("prefill-mean",))
    runs = run_pipeline(config, traits, extraction=extraction, steering=None)
    items = [(trait, run.extraction) for trait, run in zip(traits, runs, strict=True) if run.extraction is not None]
    settings = SteeringSettings(
        questions=args.questions, search_steps=args.search_steps, n_layers=args.n_layers, max_new_tokens=args.tokens
    )
    pool = ModelPool()
    loaded = pool.get(config)
    found: dict[str, list[dict[str, Any]]] = {}
    with JudgeServer(KeywordResponder()) as server:
        judge = make_judge("bench-judge", base_url=server.base_url, api_key="sk-bench", cache_path=False)

        def one_by_one() -> None:
            found["one_by_one"] = [
                run_steering_eval(trait, done, config, pool, judge, settings=settings, force=True)
                for trait, done in items
            ]

        def batched() -> None:
            found["batched"] = run_steering_evals(items, config, pool, judge, settings=settings, force=True)

        same: list[bool] = []
        times = interleave(
            {"one_by_one": one_by_one, "batched": batched},
            args.rounds,
            after=lambda name: (
                same.append(untimed(found["one_by_one"]) == untimed(found["batched"])) if name == "batched" else None
            ),
        )
    gens = [len(r["runs"]) for r in found["batched"]]
    print(
        f"model {loaded.name}: {loaded.num_layers} layers, {torch.get_num_threads()} threads; {len(items)} traits x "
        f"{args.questions} questions, {args.search_steps} search steps over {args.n_layers} layers, {args.tokens} new "
        f"tokens; {args.rounds} rounds; runs per trait {gens}; seconds: median over rounds (min–max)"
    )
    print(f"(a) one trait after another  {spread(times['one_by_one']).show(2)} s")
    print(f"(b) batched across traits    {spread(times['batched']).show(2)} s")
    print(f"identical results (timings aside) in every round: {'yes' if all(same) else 'NO'}")
    speedup = spread(per_round(times["one_by_one"], times["batched"]))
    print(f"ratio multi_trait_speedup       {speedup.show(3)}  (per round; median, min–max)")
    shared = shared_extraction_bound(traits, loaded, config.max_batch_tokens or default_budget(loaded), args.rounds)
    print(machine_load("end"))
    print(ratios_line({"multi_trait_speedup": speedup.median, "shared_extraction_bound": shared}))


def shared_extraction_bound(traits: list[Any], loaded: Any, budget: int, rounds: int) -> float:
    """(c) each trait's capture alone against (d) all their prompts in one capture; the median ratio."""
    together = dataclasses.replace(
        traits[0],
        name="bench/together",
        positive=tuple(p for t in traits for p in t.positive),
        negative=tuple(p for t in traits for p in t.negative),
        lines=tuple(range(1, 1 + sum(t.n_pairs for t in traits))),
    )

    def n_batches(trait: Any) -> int:
        lengths = [len(loaded.tokenizer(p.text)["input_ids"]) for p in (*trait.positive, *trait.negative)]
        return len(length_batches(lengths, budget))

    times = interleave(
        {
            "alone": lambda: [capture(loaded, t, max_batch_tokens=budget) for t in traits],
            "together": lambda: capture(loaded, together, max_batch_tokens=budget),
        },
        rounds,
    )
    alone_batches = sum(n_batches(t) for t in traits)
    alone = spread(times["alone"]).show(2)
    print(f"(c) capture, each trait alone   {alone} s  ({alone_batches} batches of {budget} tokens)")
    print(f"(d) capture, all rows together  {spread(times['together']).show(2)} s  ({n_batches(together)} batches)")
    bound = spread(per_round(times["alone"], times["together"]))
    print(f"ratio shared_extraction_bound   {bound.show(3)}  (what mixed extraction batches could gain at most)")
    return bound.median


if __name__ == "__main__":
    main()
