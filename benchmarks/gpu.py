#!/usr/bin/env python3
"""GPU speed and memory of capture and steered generation, on random-init models of real sizes.

Builds Gemma-2-2B and Llama-3.1-8B from their published configurations (written below; random
weights do the same FLOPs as trained ones) in bfloat16 on one GPU, and measures, in interleaved
rounds (A B, A B, …; each ratio per round, median with min–max):

  capture   traitvec's capture_sequences of every layer (prefill-mean and last-token), against the
            bare decoder stack on the same batches (no hooks, no output head): tokens/s and peak
            memory (torch.cuda.max_memory_allocated) of each;
  generate  greedy generation at batch 64, exactly ``--new-tokens`` per row: unsteered, steered at
            one layer (every row the same), and a sweep of 8 configurations (2 layers × 4
            coefficients, 8 rows each) in the same batch: new tokens/s and peak memory of each.

It needs only torch, transformers (with their dependencies) and the project's files: no weights, no
tokenizer files (a word-level tokenizer over the model's vocabulary is built in-process); it prints
which packages the traitvec modules it imports use beyond those. The last line is

  ratios: MODEL.capture_speed_vs_bare=… MODEL.capture_extra_mem_vs_bare=… MODEL.steered_speed_vs_unsteered=…
          MODEL.sweep8_speed_vs_unsteered=… MODEL.steered_extra_mem_vs_unsteered=…   (one line, every model)

speed = tokens/s of the first / the second (1.0: as fast, below 1: slower); extra_mem = peak memory
above the weights, first / second. Sized to take under 5 minutes on one H100/H200 (not yet measured).

    python benchmarks/gpu.py [--models gemma-2-2b,llama-3.1-8b] [--rounds 3]
    python benchmarks/gpu.py --dry-run     # the same code path on CPU with tiny configurations, seconds
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import transformers  # noqa: E402
from _rounds import interleave, machine_load, per_round, ratios_line, spread  # noqa: E402

_BEFORE_TRAITVEC = set(sys.modules)
from traitvec.batching import length_batches, pad_batch  # noqa: E402
from traitvec.capture import Selection, capture_sequences  # noqa: E402
from traitvec.generation import generate  # noqa: E402
from traitvec.models import LoadedModel, wrap_model  # noqa: E402
from traitvec.steering import Steer  # noqa: E402

_ADDED_BY_TRAITVEC = set(sys.modules) - _BEFORE_TRAITVEC

# config.json of google/gemma-2-2b and meta-llama/Llama-3.1-8B (architecture and token ids; the
# generation-only "cache_implementation" and the "torch_dtype" keys are left out: dtype is set here).
CONFIGS: dict[str, dict[str, Any]] = {
    "gemma-2-2b": {
        "model_type": "gemma2",
        "hidden_size": 2304,
        "intermediate_size": 9216,
        "num_hidden_layers": 26,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "vocab_size": 256000,
        "max_position_embeddings": 8192,
        "hidden_activation": "gelu_pytorch_tanh",
        "hidden_act": "gelu_pytorch_tanh",
        "query_pre_attn_scalar": 256,
        "sliding_window": 4096,
        "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
    },
    "llama-3.1-8b": {
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": False,
        "initializer_range": 0.02,
        "bos_token_id": 128000,
        "eos_token_id": 128001,
    },
}
# --dry-run: the same architectures and keys, shrunk.
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4}
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny-gemma2": {**CONFIGS["gemma-2-2b"], **TINY, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512,
                    "query_pre_attn_scalar": 16, "sliding_window": 32},
    "tiny-llama": {**CONFIGS["llama-3.1-8b"], **TINY, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512,
                   "bos_token_id": 500, "eos_token_id": 501},
}  # fmt: skip


def build(name: str, values: dict[str, Any], device: str, dtype: torch.dtype, attn: str | None) -> LoadedModel:
    """A random-init model of this configuration, built directly on ``device`` in ``dtype``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    values = dict(values)
    config = AutoConfig.for_model(values.pop("model_type"), **values)
    extra = {"attn_implementation": attn} if attn else {}
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, **extra)
    return wrap_model(model, word_tokenizer(config), name=name, fingerprint=f"random-init:{name}")


def word_tokenizer(config: Any) -> Any:
    """A word-level tokenizer over the model's whole vocabulary (``t123`` is id 123), with its special ids."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    specials = {"<bos>": config.bos_token_id, "<eos>": config.eos_token_id, "<pad>": config.pad_token_id}
    specials = {token: i for token, i in specials.items() if i is not None}
    taken = set(specials.values())
    vocab = {f"t{i}": i for i in range(config.vocab_size) if i not in taken} | specials
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **{t[1:-1] + "_token": t for t in specials})


def random_prompts(loaded: LoadedModel, n: int, low: int, high: int, seed: int) -> list[list[int]]:
    """``n`` random token sequences of lengths in [low, high], each starting with BOS, no other special id."""
    generator = torch.Generator().manual_seed(seed)
    special = loaded.special_ids
    vocab = loaded.model.config.vocab_size
    bos = loaded.tokenizer.bos_token_id
    lengths = torch.randint(low, high + 1, (n,), generator=generator).tolist()
    prompts = []
    for length in lengths:
        ids = torch.randint(0, vocab, (length - 1,), generator=generator).tolist()
        prompts.append([bos] + [i if i not in special else (i + 3) % vocab for i in ids])
    return prompts


def run_bare(loaded: LoadedModel, prompts: list[list[int]], budget: int) -> None:
    """The bare decoder stack over the same batches capture makes: no hooks, no output head."""
    stack, device, pad = loaded.model.model, loaded.device, loaded.tokenizer.pad_token_id
    for batch in length_batches([len(p) for p in prompts], budget):
        padded = pad_batch([prompts[i] for i in batch], pad)
        with torch.inference_mode():
            stack(
                input_ids=padded.input_ids.to(device),
                attention_mask=padded.attention_mask.to(device),
                position_ids=padded.position_ids.to(device),
                use_cache=False,
            )


class Memory:
    """Peak device memory of each variant, over all its rounds (None on CPU, which has no such counter)."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.peaks: dict[str, int] = {}

    def before(self, name: str) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def after(self, name: str) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peaks[name] = max(self.peaks.get(name, 0), torch.cuda.max_memory_allocated())

    def show(self, name: str, weights: int | None) -> str:
        if not self.cuda or weights is None:
            return "peak n/a (no device memory counter on CPU)"
        peak = self.peaks[name]
        return f"peak {peak / 2**30:.2f} GiB (weights {weights / 2**30:.2f} + {(peak - weights) / 2**30:.2f})"

    def extra_ratio(self, first: str, second: str, weights: int | None) -> float:
        if not self.cuda or weights is None:
            return float("nan")
        return (self.peaks[first] - weights) / (self.peaks[second] - weights)


def bench_model(name: str, values: dict[str, Any], args: argparse.Namespace, out: dict[str, float]) -> None:
    """Build one model, measure capture and generation on it, free it."""
    memory = Memory(args.device)
    start = time.perf_counter()
    loaded = build(name, values, args.device, getattr(torch, args.dtype), args.attn)
    memory.before("build")
    built = time.perf_counter() - start
    weights = torch.cuda.memory_allocated() if memory.cuda else None
    config = loaded.model.config
    params = sum(p.numel() for p in loaded.model.parameters())
    print(
        f"model {name} ({config.model_type}): {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"heads {config.num_attention_heads}/{config.num_key_value_heads} kv, head_dim {config.head_dim}, "
        f"intermediate {config.intermediate_size}, vocab {config.vocab_size}; {params / 1e6:.1f} M parameters, "
        f"{str(loaded.dtype).removeprefix('torch.')}, attention {config._attn_implementation}; built in {built:.1f} s"
    )
    bench_capture(loaded, args, memory, weights, out)
    bench_generate(loaded, args, memory, weights, out)
    del loaded
    gc.collect()
    if memory.cuda:
        torch.cuda.empty_cache()


def bench_capture(
    loaded: LoadedModel, args: argparse.Namespace, memory: Memory, weights: int | None, out: dict[str, float]
) -> None:
    """traitvec capture of every layer against the bare decoder stack on the same batches."""
    prompts = random_prompts(loaded, args.sequences, args.min_length, args.max_length, seed=1)
    # prefill-mean over every token after BOS, and the last token, as capture() selects them
    sel = [Selection(tuple(p), {"prefill-mean": tuple(range(1, len(p))), "last-token": (len(p) - 1,)}) for p in prompts]
    layers, tokens = list(range(loaded.num_layers)), sum(len(p) for p in prompts)
    variants: dict[str, Callable[[], object]] = {
        "bare": lambda: run_bare(loaded, prompts, args.budget),
        "capture": lambda: capture_sequences(loaded, sel, layers, max_batch_tokens=args.budget),
    }
    run_bare(loaded, prompts[:4], args.budget)  # warm-up
    capture_sequences(loaded, sel[:4], layers, max_batch_tokens=args.budget)
    times = interleave(variants, args.rounds, before=memory.before, after=memory.after)
    print(
        f"  capture: {len(prompts)} sequences, {tokens} tokens (lengths {args.min_length}-{args.max_length}), "
        f"{args.budget} padded tokens per batch, all {len(layers)} layers, prefill-mean + last-token"
    )
    for variant, label in (("bare", "bare decoder stack"), ("capture", "traitvec capture")):
        rate = spread([tokens / t for t in times[variant]]).show(0)
        print(f"    {label:<24} {rate:>20} tok/s      {memory.show(variant, weights)}")
    speed = spread(per_round(times["bare"], times["capture"]))
    print(f"    capture_speed_vs_bare {speed.show(3)}")
    out[f"{loaded.name}.capture_speed_vs_bare"] = speed.median
    out[f"{loaded.name}.capture_extra_mem_vs_bare"] = memory.extra_ratio("capture", "bare", weights)


def bench_generate(
    loaded: LoadedModel, args: argparse.Namespace, memory: Memory, weights: int | None, out: dict[str, float]
) -> None:
    """Unsteered, steered (one configuration) and a sweep of 8 configurations, all at batch --batch."""
    prompts = random_prompts(loaded, args.batch, args.prompt_length, args.prompt_length, seed=2)
    direction = torch.randn(loaded.hidden_size, generator=torch.Generator().manual_seed(3))
    n_layers, n_new = loaded.num_layers, args.new_tokens
    middle = n_layers // 2
    one = [[Steer(direction, middle, 4.0, scale="absolute")]] * len(prompts)
    configs = [
        [Steer(direction, layer, c, scale="absolute")]
        for layer in (n_layers // 4, 3 * n_layers // 4)
        for c in (1.0, 2.0, 4.0, 8.0)
    ]
    sweep = [configs[i * len(configs) // len(prompts)] for i in range(len(prompts))]

    def run(rows: list[list[Steer]] | None, new: int = n_new) -> None:
        generate(loaded, prompts, max_new_tokens=new, min_new_tokens=new, steering=rows, max_batch_size=args.batch)

    variants: dict[str, Callable[[], object]] = {
        "unsteered": lambda: run(None),
        "steered": lambda: run(one),
        "sweep8": lambda: run(sweep),
    }
    run(None, 4)  # warm-up
    run(sweep, 4)
    times = interleave(variants, args.rounds, before=memory.before, after=memory.after)
    print(f"  generate: batch {len(prompts)}, {args.prompt_length} prompt + {n_new} new tokens per row, greedy")
    labels = {"unsteered": "unsteered", "steered": f"steered (layer {middle})", "sweep8": "sweep of 8 in the batch"}
    for variant, label in labels.items():
        rate = spread([len(prompts) * n_new / t for t in times[variant]]).show(0)
        print(f"    {label:<24} {rate:>20} new tok/s  {memory.show(variant, weights)}")
    steered = spread(per_round(times["unsteered"], times["steered"]))
    swept = spread(per_round(times["unsteered"], times["sweep8"]))
    print(f"    steered_speed_vs_unsteered {steered.show(3)}; sweep8_speed_vs_unsteered {swept.show(3)}")
    out[f"{loaded.name}.steered_speed_vs_unsteered"] = steered.median
    out[f"{loaded.name}.sweep8_speed_vs_unsteered"] = swept.median
    out[f"{loaded.name}.steered_extra_mem_vs_unsteered"] = memory.extra_ratio("steered", "unsteered", weights)


def required_by(packages: tuple[str, ...]) -> dict[str, str]:
    """{requirement's import name: the package that requires it}, from the installed metadata."""
    from importlib import metadata

    found: dict[str, str] = {}
    for package in packages:
        for line in metadata.requires(package) or []:
            if "extra ==" in line:
                continue
            name = line.split(";")[0].strip()
            for stop in "<>=!~[ (":
                name = name.split(stop)[0]
            found.setdefault(name.lower().replace("-", "_"), package)
    return found


def imports_line() -> str:
    """Which traitvec modules this script imported, and which other packages they use at module level.

    A package torch or transformers had already imported does not show up as newly imported, so
    this looks at what each traitvec module holds: modules, classes and functions from elsewhere.
    """
    ours = sorted(m for m in _ADDED_BY_TRAITVEC if m == "traitvec" or m.startswith("traitvec."))
    known = set(sys.stdlib_module_names) | {"traitvec", "torch", "transformers", "builtins"}
    used: dict[str, set[str]] = {}
    for name in ours:
        for value in vars(sys.modules[name]).values():
            origin = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
            top = origin.split(".")[0] if isinstance(origin, str) else None
            if top and top not in known and not top.startswith("_"):
                used.setdefault(top, set()).add(name)
    new = sorted({m.split(".")[0] for m in _ADDED_BY_TRAITVEC} - known)
    brought = required_by(("torch", "transformers"))
    notes = []
    for top, where in sorted(used.items()):
        source = f"a dependency of {brought[top]}" if top in brought else "NOT a dependency of torch or transformers"
        notes.append(f"{top} ({' '.join(sorted(where))}, {source})")
    others = ", ".join(notes) or "none"
    return (
        f"traitvec modules imported: {' '.join(ours)}; other packages they use at module level: {others}; "
        f"packages first imported by them: {' '.join(m for m in new if not m.startswith('_')) or 'none'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny configurations, seconds (for CI)")
    parser.add_argument("--models", help="comma-separated (default: gemma-2-2b,llama-3.1-8b; dry run: the tiny ones)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    parser.add_argument("--device", help="default cuda (dry run: cpu)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--attn", help="attention implementation (default: transformers' choice for the model)")
    parser.add_argument("--sequences", type=int, help="capture: sequences (default 256; dry run 16)")
    parser.add_argument("--min-length", type=int, help="capture: shortest sequence (default 64; dry run 8)")
    parser.add_argument("--max-length", type=int, help="capture: longest sequence (default 512; dry run 48)")
    parser.add_argument("--budget", type=int, help="capture: padded tokens per batch (default 32768; dry run 256)")
    parser.add_argument("--batch", type=int, default=64, help="generate: rows per batch (default 64)")
    parser.add_argument("--prompt-length", type=int, help="generate: prompt tokens per row (default 128; dry run 8)")
    parser.add_argument("--new-tokens", type=int, help="generate: new tokens per row (default 128; dry run 8)")
    args = parser.parse_args()
    dry = args.dry_run
    defaults = {
        "rounds": (3, 3),
        "device": ("cuda", "cpu"),
        "sequences": (256, 16),
        "min_length": (64, 8),
        "max_length": (512, 48),
        "budget": (32768, 256),
        "prompt_length": (128, 8),
        "new_tokens": (128, 8),
    }
    for key, (real, tiny) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, tiny if dry else real)
    table = TINY_CONFIGS if dry else CONFIGS
    names = args.models.split(",") if args.models else list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"--models {','.join(unknown)}: not one of {', '.join(table)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU is visible; run with --dry-run on CPU, or on a GPU machine")

    start = time.perf_counter()
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(
        f"gpu benchmark{' (dry run)' if dry else ''}: device {args.device} ({where}), torch {torch.__version__}, "
        f"transformers {transformers.__version__}, {args.dtype}, {args.rounds} rounds; "
        "tok/s: median over rounds (min–max)"
    )
    print(machine_load("start"))
    print(imports_line())
    ratios: dict[str, float] = {}
    for name in names:
        bench_model(name, table[name], args, ratios)
    print(machine_load("end"))
    print(f"total {time.perf_counter() - start:.1f} s")
    print(ratios_line(ratios))


if __name__ == "__main__":
    main()
