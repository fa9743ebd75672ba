#!/usr/bin/env python3
"""Extraction throughput against its limit and the usual alternatives, measured in one run.

On the same prefills (default: up to 300 real prefills from the bundled traits) and the same model
(default: the embedded gemma-3-270m), it times:

  (a) limit     the bare decoder stack up to the deepest layer, batched, no hooks
  (b) traitvec  capture of every layer with prefill-mean and last-token (tokenisation included)
  (c) naive     full model with output_hidden_states=True, one prefill at a time
  (d) nnsight   an nnsight trace per batch saving every layer's output

and prints tokens/s for each, then the peak extra memory (RSS sampled every 2 ms, each in a fresh
subprocess) of capture and of the bare decoder stack on the same batches, for 1x and 4x longer
prefills: capture's own share is the difference. It ends with

  ratios: traitvec_vs_limit=X speedup_vs_naive=Y speedup_vs_nnsight=Z

X = traitvec's throughput / the limit's; Y, Z = the other approach's time / traitvec's.
Timings on shared machines vary run to run: compare the ratios of one run.

    python benchmarks/extraction.py [--model gemma-3-270m] [--n 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from traitvec import list_traits, load_model, load_trait  # noqa: E402
from traitvec.capture import capture, default_budget, length_batches  # noqa: E402
from traitvec.traits import Prompt, Trait  # noqa: E402


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


def as_trait(texts: list[str]) -> Trait:
    half = len(texts) // 2
    return Trait(
        name="bench/prefills",
        path=ROOT,
        positive=tuple(Prompt(t) for t in texts[:half]),
        negative=tuple(Prompt(t) for t in texts[half : 2 * half]),
        lines=tuple(range(1, half + 1)),
        definition=None,
        questions=(),
        eval_prompt=None,
        direction="positive",
        chat=False,
        files_hash="bench",
    )


def run_limit(loaded, encoded: list[list[int]], budget: int) -> None:
    stack = loaded.model.model if hasattr(loaded.model, "model") else loaded.model
    pad = loaded.tokenizer.pad_token_id
    for batch in length_batches([len(e) for e in encoded], budget):
        width = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), width), pad)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
            mask[row, : len(encoded[i])] = 1
        with torch.inference_mode():
            stack(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0), use_cache=False)


def run_naive(loaded, texts: list[str]) -> None:
    tok, model = loaded.tokenizer, loaded.model
    for text in texts:
        inputs = tok(text, return_tensors="pt")
        with torch.no_grad():
            out = model(**inputs, output_hidden_states=True)
        [h[0, 1:].mean(0) for h in out.hidden_states[1:]]  # prefill-mean per layer, as such scripts do
        [h[0, -1] for h in out.hidden_states[1:]]


def run_nnsight(loaded, encoded: list[list[int]], budget: int) -> None:
    from nnsight import LanguageModel

    with warnings.catch_warnings():  # nnsight 0.8 deprecates LanguageModel; it still wraps a loaded module
        warnings.filterwarnings("ignore", message="LanguageModel is deprecated")
        lm = LanguageModel(loaded.model, tokenizer=loaded.tokenizer)
    pad = loaded.tokenizer.pad_token_id
    for batch in length_batches([len(e) for e in encoded], budget):
        width = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), width), pad)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
            mask[row, : len(encoded[i])] = 1
        with lm.trace({"input_ids": ids, "attention_mask": mask}):
            saved = list().save()
            for layer in lm.model.layers:
                saved.append(layer.output)
        m = mask[..., None].float()
        [(h * m).sum(1) / m.sum(1) for h in saved]


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def memory_child(model: str, n: int, factor: int, budget: int, what: str) -> None:
    """Run in a subprocess: print the peak extra RSS (MiB) of a capture of every prefill
    (``what="capture"``), or of the bare decoder stack over the same batches (``what="limit"``)."""
    loaded = load_model(model)
    texts = real_prefills(n * factor)
    texts = [" ".join(texts[i * factor : (i + 1) * factor]) for i in range(n)]
    trait = as_trait(texts)
    encoded = [list(loaded.tokenizer(t)["input_ids"]) for t in texts]
    # warm up kernels on one short prefill only, so the measured peak includes the batches' own buffers
    capture(loaded, as_trait([texts[0][:40], texts[1][:40]]), positions=["prefill-mean"], max_batch_tokens=budget)
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
        capture(loaded, trait, positions=["prefill-mean", "last-token"], max_batch_tokens=budget)
    else:
        run_limit(loaded, encoded, budget)
    running[0] = False
    thread.join()
    tokens = sum(len(e) for e in encoded)
    print(json.dumps({"factor": factor, "what": what, "tokens": tokens, "peak_extra_mib": (peak[0] - before) / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--n", type=int, default=300, help="number of prefills (default 300)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats, best kept (default 3)")
    parser.add_argument("--budget", type=int, help="padded tokens per batch (default: traitvec's, 1024 on CPU)")
    parser.add_argument("--naive-n", type=int, default=0, help="prefills for (c); default all")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--memory-what", default="capture", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.model, 64, args.memory_child, args.budget or 1024, args.memory_what)
        return
    torch.manual_seed(0)
    loaded = load_model(args.model)
    args.budget = args.budget or default_budget(loaded)
    texts = real_prefills(args.n)
    trait = as_trait(texts)
    encoded = [list(loaded.tokenizer(t)["input_ids"]) for t in texts[: 2 * (len(texts) // 2)]]
    tokens = sum(len(e) for e in encoded)
    print(
        f"model {loaded.name}: {loaded.num_layers} layers, width {loaded.hidden_size}, {torch.get_num_threads()} "
        f"threads; {len(encoded)} prefills, {tokens} tokens, batch budget {args.budget} tokens"
    )

    run_limit(loaded, encoded, args.budget)  # warm-up
    t_limit = best_of(lambda: run_limit(loaded, encoded, args.budget), args.repeats)
    t_ours = best_of(
        lambda: capture(loaded, trait, positions=["prefill-mean", "last-token"], max_batch_tokens=args.budget),
        args.repeats,
    )
    naive_texts = texts[: args.naive_n or len(encoded)]
    naive_tokens = sum(len(loaded.tokenizer(t)["input_ids"]) for t in naive_texts)
    t_naive = best_of(lambda: run_naive(loaded, naive_texts), 1) * tokens / naive_tokens
    t_nnsight = best_of(lambda: run_nnsight(loaded, encoded, args.budget), 1)

    print(f"(a) limit    {tokens / t_limit:9.0f} tok/s  {t_limit:7.2f} s  bare decoder stack, batched, no hooks")
    print(f"(b) traitvec {tokens / t_ours:9.0f} tok/s  {t_ours:7.2f} s  all layers, prefill-mean + last-token")
    print(
        f"(c) naive    {tokens / t_naive:9.0f} tok/s  {t_naive:7.2f} s  full model, output_hidden_states, 1 at a time"
        + (f" (timed on {len(naive_texts)} prefills, scaled)" if args.naive_n else "")
    )
    print(
        f"(d) nnsight  {tokens / t_nnsight:9.0f} tok/s  {t_nnsight:7.2f} s  nnsight trace saving every layer, batched"
    )

    memory = {}
    for factor in (1, 4):
        for what in ("limit", "capture"):
            command = [
                sys.executable,
                __file__,
                "--model",
                args.model,
                "--budget",
                str(args.budget),
                "--memory-child",
                str(factor),
                "--memory-what",
                what,
            ]
            out = subprocess.run(command, capture_output=True, text=True, check=True)
            memory[factor, what] = json.loads(out.stdout.strip().splitlines()[-1])
    for factor in (1, 4):
        cap, limit = memory[factor, "capture"], memory[factor, "limit"]
        own = cap["peak_extra_mib"] - limit["peak_extra_mib"]
        print(
            f"memory: {factor}x prefill length ({cap['tokens']} tokens, {args.budget} tokens/batch): capture peak "
            f"extra {cap['peak_extra_mib']:.1f} MiB; bare decoder stack on the same batches "
            f"{limit['peak_extra_mib']:.1f} MiB; capture's own {own:+.1f} MiB"
        )
    print(
        f"ratios: traitvec_vs_limit={t_limit / t_ours:.3f} speedup_vs_naive={t_naive / t_ours:.2f} "
        f"speedup_vs_nnsight={t_nnsight / t_ours:.2f}"
    )


if __name__ == "__main__":
    main()
