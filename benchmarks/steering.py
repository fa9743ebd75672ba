#!/usr/bin/env python3
"""Steered generation against unsteered generation, measured in one run.

On the same prompts (default: 16 steering questions of the bundled traits) and model (default:
the embedded gemma-3-270m), every generation runs exactly ``--tokens`` new tokens (EOS may not end
a row early, so all variants do the same work):

  (1) one configuration: the batch unsteered, then the same batch steered at one layer;
  (2) a sweep of 8 configurations (layers × coefficients) over ``--sweep-questions`` questions:
      all 8 batched into one generate call, against the same 8 run one after another.

It ends with one line

  ratios: steered_vs_unsteered=X sweep8_batched_speedup=Y

X = steered time / unsteered time (1.0 means free); Y = sequential time / batched time.
Timings on shared machines vary run to run: compare the ratios of one run.

    python benchmarks/steering.py [--model gemma-3-270m] [--tokens 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from traitvec import list_traits, load_model, load_trait  # noqa: E402
from traitvec.generation import generate  # noqa: E402
from traitvec.steering import Steer  # noqa: E402


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


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--questions", type=int, default=16, help="batch of (1) (default 16)")
    parser.add_argument("--sweep-questions", type=int, default=4, help="questions per configuration in (2)")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per row (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats, best kept (default 3)")
    args = parser.parse_args()
    loaded = load_model(args.model)
    torch.manual_seed(0)
    direction = torch.randn(loaded.hidden_size)
    direction /= direction.norm()
    middle = loaded.num_layers // 2
    qs = questions(args.questions)
    tokens = args.tokens

    def run(prompts: list[str], rows=None) -> None:
        generate(loaded, prompts, max_new_tokens=tokens, min_new_tokens=tokens, steering=rows, max_batch_size=256)

    one = [[Steer(direction, middle, 4.0, scale="absolute")]] * len(qs)
    run(qs[:2])  # warm-up
    unsteered = steered = 0.0
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits both alike
        unsteered_t = best_of(lambda: run(qs), 1)
        steered_t = best_of(lambda: run(qs, one), 1)
        unsteered = min(unsteered or unsteered_t, unsteered_t)
        steered = min(steered or steered_t, steered_t)

    sweep_q = qs[: args.sweep_questions]
    configs = [
        [Steer(direction, layer, c, scale="absolute")]
        for layer in (middle - 2, middle + 2)
        for c in (1.0, 2.0, 4.0, 8.0)
    ]
    batched_prompts = [q for _ in configs for q in sweep_q]
    batched_rows = [c for c in configs for _ in sweep_q]
    batched = best_of(lambda: run(batched_prompts, batched_rows), args.repeats)
    sequential = best_of(lambda: [run(sweep_q, [c] * len(sweep_q)) for c in configs], max(1, args.repeats - 1))

    rows = len(qs) * tokens
    threads = torch.get_num_threads()
    print(f"model {loaded.name}: {loaded.num_layers} layers, {threads} threads; {tokens} new tokens per row")
    print(f"(1) unsteered           {len(qs):3d} rows  {unsteered:7.2f} s  {rows / unsteered:7.1f} tok/s")
    print(f"(1) steered (layer {middle:2d})   {len(qs):3d} rows  {steered:7.2f} s  {rows / steered:7.1f} tok/s")
    print(f"(2) sweep of 8, batched {len(batched_prompts):3d} rows  {batched:7.2f} s  (one generate call)")
    print(f"(2) sweep of 8, one by one {len(sweep_q):2d} rows x 8  {sequential:7.2f} s")
    print(f"ratios: steered_vs_unsteered={steered / unsteered:.3f} sweep8_batched_speedup={sequential / batched:.2f}")


if __name__ == "__main__":
    main()
