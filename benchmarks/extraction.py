#!/usr/bin/env python3
"""Extraction throughput against its limit and the usual alternatives, in interleaved rounds.

On the same prefills (default: 64 real prefills from the bundled traits) and the same model
(default: the embedded gemma-3-270m), each round times, one after another:

  (a) limit     the bare decoder stack up to the deepest layer, batched, no hooks
  (b) traitvec  capture of every layer with prefill-mean and last-token (tokenisation included)
  (d) nnsight   an nnsight trace per batch saving every layer's output
  (c) naive     full model with output_hidden_states=True, one prefill at a time (on the first
                ``--naive-n`` prefills, its time scaled to all tokens)

and the rounds repeat (a b d c, a b d c, …), so that load drifting on a shared machine hits every
variant of a round alike. Each ratio is computed per round and printed as the median over rounds
with its min–max. Then, once, the peak extra memory (RSS sampled every 2 ms, each in a fresh
subprocess) of capture and of the bare decoder stack on the same batches, for 1x and 4x longer
prefills: capture's own share is the difference. The machine's load is printed at start and end.
It ends with

  ratios: traitvec_vs_limit=X speedup_vs_naive=Y speedup_vs_nnsight=Z

(medians) X = traitvec's throughput / the limit's; Y, Z = the other approach's time / traitvec's.

    python benchmarks/extraction.py [--model gemma-3-270m] [--n 64] [--rounds 5] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from _rounds import interleave, machine_load, per_round, ratios_line, spread  # noqa: E402

from traitvec import Trait, capture, list_traits, load_model, load_trait  # noqa: E402
from traitvec.batching import length_batches, pad_batch  # noqa: E402

CPU_BUDGET = 1024  # traitvec's default padded tokens per capture batch on CPU (32768 on GPU)


def real_prefills(n: int) -> list[str]:
    roots = [ROOT / "datasets" / "traits", ROOT.parent / "shared" / "external-traits"]
    texts: list[str] = []
    for root in roots:
        if not root.is_dir():
            continue
        for name in list_traits(root):
            try:
                trait = load_trait(name, root)
            except Exception:  # noqa: BLE001 - a broken folder is skipped here
                continue
            if trait.chat:
                continue
            for a, b in zip(trait.positive, trait.negative, strict=True):
                texts += [a.text, b.text]
        if len(texts) >= n:
            break
    if len(texts) < 2:
        raise SystemExit("no prefills found under datasets/traits or ../shared/external-traits")
    return texts[:n] if len(texts) >= n else texts


def as_trait(texts: list[str], folder: Path) -> Trait:
    """The prefills as one trait (first half positive, second half negative), read back by load_trait."""
    half = len(texts) // 2
    trait_folder = folder / "bench" / "prefills"
    trait_folder.mkdir(parents=True, exist_ok=True)
    (trait_folder / "positive.txt").write_text("\n".join(texts[:half]) + "\n", encoding="utf-8")
    (trait_folder / "negative.txt").write_text("\n".join(texts[half : 2 * half]) + "\n", encoding="utf-8")
    return load_trait("bench/prefills", folder)


def decoder_stack(loaded: Any) -> Any:
    return loaded.model.model if hasattr(loaded.model, "model") else loaded.model


def run_limit(loaded: Any, encoded: list[list[int]], budget: int) -> None:
    stack, pad = decoder_stack(loaded), loaded.tokenizer.pad_token_id
    for batch in length_batches([len(e) for e in encoded], budget):
        padded = pad_batch([encoded[i] for i in batch], pad)
        with torch.inference_mode():
            stack(
                input_ids=padded.input_ids,
                attention_mask=padded.attention_mask,
                position_ids=padded.position_ids,
                use_cache=False,
            )


def run_capture(loaded: Any, trait: Trait, budget: int) -> None:
    capture(loaded, trait, positions=["prefill-mean", "last-token"], max_batch_tokens=budget)


def run_naive(loaded: Any, texts: list[str]) -> None:
    tok, model = loaded.tokenizer, loaded.model
    for text in texts:
        inputs = tok(text, return_tensors="pt")
        with torch.no_grad():
            out = model(**inputs, output_hidden_states=True)
        [h[0, 1:].mean(0) for h in out.hidden_states[1:]]  # prefill-mean per layer, as such scripts do
        [h[0, -1] for h in out.hidden_states[1:]]


def nnsight_model(loaded: Any) -> Any:
    """The loaded model wrapped once for nnsight (outside the timing, as a session would)."""
    from nnsight import LanguageModel

    with warnings.catch_warnings():  # nnsight 0.8 deprecates LanguageModel; it still wraps a loaded module
        warnings.filterwarnings("ignore", message="LanguageModel is deprecated")
        return LanguageModel(loaded.model, tokenizer=loaded.tokenizer)


def run_nnsight(loaded: Any, lm: Any, encoded: list[list[int]], budget: int) -> None:
    pad = loaded.tokenizer.pad_token_id
    for batch in length_batches([len(e) for e in encoded], budget):
        padded = pad_batch([encoded[i] for i in batch], pad)
        with lm.trace({"input_ids": padded.input_ids, "attention_mask": padded.attention_mask}):
            saved = list().save()
            for layer in lm.model.layers:
                saved.append(layer.output)
        m = padded.attention_mask[..., None].float()
        [(h * m).sum(1) / m.sum(1) for h in saved]


def memory_child(model: str, n: int, factor: int, budget: int, what: str) -> None:
    """Run in a subprocess: print the peak extra RSS (MiB) of a capture of every prefill
    (``what="capture"``), or of the bare decoder stack over the same batches (``what="limit"``)."""
    loaded = load_model(model)
    texts = real_prefills(n * factor)
    texts = [" ".join(texts[i * factor : (i + 1) * factor]) for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        trait = as_trait(texts, Path(tmp))
        warm = as_trait([texts[0][:40], texts[1][-40:]], Path(tmp) / "warm")
    encoded = [list(loaded.tokenizer(t)["input_ids"]) for t in texts]
    # warm up kernels on one short prefill only, so the measured peak includes the batches' own buffers
    capture(loaded, warm, positions=["prefill-mean"], max_batch_tokens=budget)
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * page

    before, peak, running = rss(), [0], [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    if what == "capture":
        run_capture(loaded, trait, budget)
    else:
        run_limit(loaded, encoded, budget)
    running[0] = False
    thread.join()
    tokens = sum(len(e) for e in encoded)
    print(json.dumps({"factor": factor, "what": what, "tokens": tokens, "peak_extra_mib": (peak[0] - before) / 2**20}))


def measure_memory(model: str, budget: int) -> None:
    memory = {}
    for factor in (1, 4):
        for what in ("limit", "capture"):
            command = [sys.executable, __file__, "--model", model, "--budget", str(budget)]
            command += ["--memory-child", str(factor), "--memory-what", what]
            out = subprocess.run(command, capture_output=True, text=True, check=True)
            memory[factor, what] = json.loads(out.stdout.strip().splitlines()[-1])
    for factor in (1, 4):
        cap, limit = memory[factor, "capture"], memory[factor, "limit"]
        own = cap["peak_extra_mib"] - limit["peak_extra_mib"]
        print(
            f"memory: {factor}x prefill length ({cap['tokens']} tokens, {budget} tokens/batch): capture peak "
            f"extra {cap['peak_extra_mib']:.1f} MiB; bare decoder stack on the same batches "
            f"{limit['peak_extra_mib']:.1f} MiB; capture's own {own:+.1f} MiB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--n", type=int, default=64, help="number of prefills (default 64)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--budget", type=int, help=f"padded tokens per batch (default {CPU_BUDGET} on CPU)")
    parser.add_argument("--naive-n", type=int, default=16, help="prefills timed for (c), scaled (default 16)")
    parser.add_argument("--skip-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--memory-what", default="capture", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.model, 64, args.memory_child, args.budget or CPU_BUDGET, args.memory_what)
        return
    print(machine_load("start"))
    torch.manual_seed(0)
    loaded = load_model(args.model)
    budget = args.budget or (32768 if loaded.device.type == "cuda" else CPU_BUDGET)
    texts = real_prefills(args.n)
    texts = texts[: 2 * (len(texts) // 2)]
    tmp = tempfile.TemporaryDirectory()
    trait = as_trait(texts, Path(tmp.name))
    encoded = [list(loaded.tokenizer(t)["input_ids"]) for t in texts]
    tokens = sum(len(e) for e in encoded)
    naive_texts = texts[: args.naive_n or len(texts)]
    naive_tokens = sum(len(loaded.tokenizer(t)["input_ids"]) for t in naive_texts)
    print(
        f"model {loaded.name}: {loaded.num_layers} layers, width {loaded.hidden_size}, {torch.get_num_threads()} "
        f"threads; {len(encoded)} prefills, {tokens} tokens, batch budget {budget} tokens; {args.rounds} rounds"
    )

    lm = nnsight_model(loaded)
    variants: dict[str, Callable[[], object]] = {
        "limit": lambda: run_limit(loaded, encoded, budget),
        "traitvec": lambda: run_capture(loaded, trait, budget),
        "nnsight": lambda: run_nnsight(loaded, lm, encoded, budget),
        "naive": lambda: run_naive(loaded, naive_texts),
    }
    warm = as_trait(texts[:4], Path(tmp.name) / "warm")
    run_limit(loaded, encoded[:4], budget)  # warm-up of every variant on 4 prefills
    run_capture(loaded, warm, budget)
    run_nnsight(loaded, lm, encoded[:4], budget)
    run_naive(loaded, naive_texts[:2])
    times = interleave(variants, args.rounds)
    times["naive"] = [t * tokens / naive_tokens for t in times["naive"]]  # scaled to all tokens
    tmp.cleanup()

    labels = {
        "limit": "(a) limit   ",
        "traitvec": "(b) traitvec",
        "naive": "(c) naive   ",
        "nnsight": "(d) nnsight ",
    }
    notes = {
        "limit": "bare decoder stack, batched, no hooks",
        "traitvec": "all layers, prefill-mean + last-token",
        "naive": "full model, output_hidden_states, 1 at a time"
        + (f" (timed on {len(naive_texts)} prefills, scaled)" if len(naive_texts) < len(texts) else ""),
        "nnsight": "nnsight trace saving every layer, batched",
    }
    print("tok/s and seconds: median over rounds (min–max)")
    for name in ("limit", "traitvec", "naive", "nnsight"):
        rate = spread([tokens / t for t in times[name]]).show(0)
        print(f"{labels[name]} {rate:>20} tok/s  {spread(times[name]).show(2):>22} s  {notes[name]}")
    ratios = {
        "traitvec_vs_limit": spread(per_round(times["limit"], times["traitvec"])),
        "speedup_vs_naive": spread(per_round(times["naive"], times["traitvec"])),
        "speedup_vs_nnsight": spread(per_round(times["nnsight"], times["traitvec"])),
    }
    for name, value in ratios.items():
        print(f"ratio {name:<20} {value.show(3)}  (per round; median, min–max)")

    if not args.skip_memory:
        measure_memory(args.model, budget)
    print(machine_load("end"))
    print(ratios_line({name: value.median for name, value in ratios.items()}))


if __name__ == "__main__":
    main()
