#!/usr/bin/env python3
"""Steered generation against unsteered generation, in interleaved rounds.

On the same prompts (default: 16 steering questions of the bundled traits) and model (default:
the embedded gemma-3-270m), every generation runs exactly ``--tokens`` new tokens (EOS may not end
a row early, so all variants do the same work). Each round runs, one after another:

  (1) one configuration: the batch unsteered, then the same batch steered at one layer;
  (2) a sweep of 8 configurations (layers × coefficients) over ``--sweep-questions`` questions:
      all 8 batched into one generate call, then the same 8 run one after another;

and the rounds repeat, so that load drifting on a shared machine hits every variant of a round
alike. Each ratio is computed per round and printed as the median over rounds with its min–max;
the machine's load is printed at start and end. It ends with one line

  ratios: steered_vs_unsteered=X sweep8_batched_speedup=Y

(medians) X = steered time / unsteered time (1.0 means free); Y = sequential time / batched time.

    python benchmarks/steering.py [--model gemma-3-270m] [--tokens 16] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from _rounds import interleave, machine_load, per_round, ratios_line, spread  # noqa: E402

from traitvec import Steer, generate, list_traits, load_model, load_trait  # noqa: E402


def questions(n: int) -> list[str]:
    found: list[str] = []
    for root in (ROOT / "datasets" / "traits", ROOT.parent / "shared" / "external-traits"):
        if root.is_dir():
            for name in list_traits(root):
                try:
                    found += list(load_trait(name, root).questions)
                except Exception:  # noqa: BLE001 - a broken folder is skipped here
                    continue
        if len(found) >= n:
            break
    return found[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--questions", type=int, default=16, help="batch of (1) (default 16)")
    parser.add_argument("--sweep-questions", type=int, default=4, help="questions per configuration in (2)")
    parser.add_argument("--tokens", type=int, default=16, help="new tokens per row (default 16)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    args = parser.parse_args()
    print(machine_load("start"))
    loaded = load_model(args.model)
    torch.manual_seed(0)
    direction = torch.randn(loaded.hidden_size)
    direction /= direction.norm()
    middle = loaded.num_layers // 2
    qs = questions(args.questions)
    tokens = args.tokens

    def run(prompts: list[str], rows: Sequence[Sequence[Steer]] | None = None) -> None:
        generate(loaded, prompts, max_new_tokens=tokens, min_new_tokens=tokens, steering=rows, max_batch_size=256)

    one = [[Steer(direction, middle, 4.0, scale="absolute")]] * len(qs)
    sweep_q = qs[: args.sweep_questions]
    configs = [
        [Steer(direction, layer, c, scale="absolute")]
        for layer in (middle - 2, middle + 2)
        for c in (1.0, 2.0, 4.0, 8.0)
    ]
    batched_prompts = [q for _ in configs for q in sweep_q]
    batched_rows = [c for c in configs for _ in sweep_q]
    variants: dict[str, Callable[[], object]] = {
        "unsteered": lambda: run(qs),
        "steered": lambda: run(qs, one),
        "batched": lambda: run(batched_prompts, batched_rows),
        "sequential": lambda: [run(sweep_q, [c] * len(sweep_q)) for c in configs],
    }
    run(qs[:2])  # warm-up
    run(qs[:2], one[:2])
    times = interleave(variants, args.rounds)

    rows = len(qs) * tokens
    threads = torch.get_num_threads()
    print(
        f"model {loaded.name}: {loaded.num_layers} layers, {threads} threads; {tokens} new tokens per row; "
        f"{args.rounds} rounds; seconds and tok/s: median over rounds (min–max)"
    )
    secs = {name: spread(times[name]).show(2) for name in times}
    rates = {name: spread([rows / t for t in times[name]]).show(1) for name in ("unsteered", "steered")}
    print(f"(1) unsteered              {len(qs):3d} rows  {secs['unsteered']} s  {rates['unsteered']} tok/s")
    print(f"(1) steered (layer {middle:2d})      {len(qs):3d} rows  {secs['steered']} s  {rates['steered']} tok/s")
    print(f"(2) sweep of 8, batched    {len(batched_prompts):3d} rows  {secs['batched']} s  (one generate call)")
    print(f"(2) sweep of 8, one by one {len(sweep_q):2d} rows x 8  {secs['sequential']} s")
    ratios = {
        "steered_vs_unsteered": spread(per_round(times["steered"], times["unsteered"])),
        "sweep8_batched_speedup": spread(per_round(times["sequential"], times["batched"])),
    }
    for name, value in ratios.items():
        print(f"ratio {name:<24} {value.show(3)}  (per round; median, min–max)")
    print(machine_load("end"))
    print(ratios_line({name: value.median for name, value in ratios.items()}))


if __name__ == "__main__":
    main()
