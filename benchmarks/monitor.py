#!/usr/bin/env python3
"""Monitor throughput against extraction's capture, in interleaved rounds, and its memory.

On the same model (default: the embedded gemma-3-270m), each round times, one after another:

  (b) capture   traitvec's capture of every layer, prefill-mean and last-token, on 64 real
                prefills (what benchmarks/extraction.py's "traitvec" line runs)
  (m) monitor   the monitor stage (run_monitor, force=True) on --n short texts (default 1,000 lines
                of the bundled traits): tokenising with offsets, every token projected on one
                trait's vector, projections.json streamed to disk group by group, report.html
  (f) monitor   the same at the model's last layer, so the whole decoder stack runs (the worst case;
      @last     (m) reads the recommended layer and stops the pass there)

and repeats the rounds (b m f, b m f, …). Each ratio is computed per round (tokens/s of a monitor
variant over capture's tokens/s in that round) and printed as the median with its min–max. Then,
once, the peak extra private memory (RssAnon sampled every 2 ms, each in a fresh subprocess) of a
monitor run on 250 and on 1,000 texts (--memory-texts; the same 250 lines repeated, so that the
longest text, which sets the largest batch, is the same), to show that it does not grow with the
number of texts; the file-backed part (the memory-mapped weights' pages) is printed beside it.
It ends with

  ratios: monitor_vs_capture=X monitor_last_layer_vs_capture=Y memory_1000_vs_250=Z

    python benchmarks/monitor.py [--model gemma-3-270m] [--n 1000] [--rounds 3] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _rounds import interleave, machine_load, per_round, ratios_line, spread  # noqa: E402

from traitvec import Trait, capture, list_traits, load_experiment, load_trait  # noqa: E402
from traitvec.models import ModelPool  # noqa: E402
from traitvec.stages.extract import ExtractionSettings, extract_trait  # noqa: E402
from traitvec.stages.monitor import MonitorSettings, run_monitor  # noqa: E402
from traitvec.stages.readouts import ReadoutChoice  # noqa: E402

CPU_BUDGET = 1024  # traitvec's default padded tokens per batch on CPU (32768 on GPU)
TRAIT = "styles/formality"


def real_lines(n: int) -> list[str]:
    """Up to ``n`` prefills of the bundled traits (short texts, one sentence or two each)."""
    root = ROOT / "datasets" / "traits"
    texts: list[str] = []
    for name in list_traits(root):
        trait = load_trait(name, root)
        if not trait.chat:
            texts += [p.text for pair in zip(trait.positive, trait.negative, strict=True) for p in pair]
    if len(texts) < n:  # repeat with a counter, so every text stays distinct
        texts = [f"{t} ({k})" for k in range(n // len(texts) + 1) for t in texts]
    return texts[:n]


def experiment(folder: Path, model: str) -> Any:
    """An experiment folder on ``model`` with the formality trait extracted (mean-diff, prefill-mean)."""
    (folder / "bench").mkdir(parents=True, exist_ok=True)
    (folder / "bench" / "config.toml").write_text(f'model = "{model}"\n')
    return load_experiment("bench", folder)


def prepare(folder: Path, model: str, pool: ModelPool) -> Any:
    config = experiment(folder, model)
    trait = load_trait(TRAIT, ROOT / "datasets" / "traits")
    settings = ExtractionSettings(positions=("prefill-mean",), methods=("mean-diff",))
    extract_trait(trait, config.path, lambda: pool.get(config), settings=settings)
    return config


def as_trait(texts: list[str], folder: Path) -> Trait:
    """The prefills as one trait (first half positive, second half negative), read back by load_trait."""
    half = len(texts) // 2
    trait_folder = folder / "bench" / "prefills"
    trait_folder.mkdir(parents=True, exist_ok=True)
    (trait_folder / "positive.txt").write_text("\n".join(texts[:half]) + "\n", encoding="utf-8")
    (trait_folder / "negative.txt").write_text("\n".join(texts[half : 2 * half]) + "\n", encoding="utf-8")
    return load_trait("bench/prefills", folder)


def monitor(config: Any, pool: ModelPool, inputs: Path, layers: tuple[int, ...] | None, budget: int) -> None:
    settings = MonitorSettings(choice=ReadoutChoice(layers=layers), max_batch_tokens=budget)
    run_monitor(
        config,
        [TRAIT],
        inputs,
        name="bench-" + ("rec" if layers is None else "-".join(map(str, layers))),
        settings=settings,
        pool=pool,
        force=True,
    )


def memory_texts(n: int, base: int = 250) -> list[str]:
    """``n`` texts made of the same ``base`` lines repeated, each copy with its own counter: every
    count has the same longest text (the largest batch's activations, which set the peak), so what
    the counts compare is the number of texts alone."""
    lines = real_lines(base)
    return [f"{line} ({k})" for k in range(-(-n // base)) for line in lines][:n]


def memory_child(model: str, n: int, budget: int, folder: str) -> None:
    """In a subprocess: the peak extra memory (MiB) of one monitor run on ``n`` texts (``folder``: the
    experiments root :func:`prepare` made), private and file-backed apart.

    Private memory (``RssAnon``: what the process allocates) is the measure. The file-backed part
    (``RssFile``) is mostly the memory-mapped weights: every token id not seen before pages in its
    row of the embedding matrix (262,144 rows × 640 floats = 640 MiB for gemma-3-270m), so it grows
    with the vocabulary the texts use, up to the size of the weight file, and the kernel can drop
    those clean pages again under memory pressure.
    """
    pool = ModelPool()
    config = experiment(Path(folder), model)
    pool.get(config)
    inputs = Path(folder).parent / f"texts-{n}.txt"
    inputs.write_text("\n".join(memory_texts(n)) + "\n", encoding="utf-8")
    warm = Path(folder).parent / "warm-memory.txt"
    warm.write_text("\n".join(real_lines(4)) + "\n", encoding="utf-8")
    monitor(config, pool, warm, None, budget)  # kernels and caches warm, on 4 texts

    def status() -> tuple[int, int]:
        """(RssAnon, RssFile) in bytes."""
        found = {}
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(("RssAnon:", "RssFile:")):
                    name, value, _ = line.split()
                    found[name] = int(value) * 1024
        return found["RssAnon:"], found["RssFile:"]

    before, peak, running = status(), [0, 0], [True]

    def sample() -> None:
        while running[0]:
            anon, file = status()
            peak[0], peak[1] = max(peak[0], anon), max(peak[1], file)
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    monitor(config, pool, inputs, None, budget)
    running[0] = False
    thread.join()
    extra = {"peak_extra_mib": (peak[0] - before[0]) / 2**20, "file_extra_mib": (peak[1] - before[1]) / 2**20}
    print(json.dumps({"texts": n, **extra}))


def measure_memory(model: str, budget: int, counts: list[int], folder: Path) -> dict[int, float]:
    memory, files = {}, {}
    for n in counts:
        command = [sys.executable, __file__, "--model", model, "--budget", str(budget), "--memory-child", str(n)]
        out = subprocess.run([*command, "--folder", str(folder)], capture_output=True, text=True, check=True)
        found = json.loads(out.stdout.strip().splitlines()[-1])
        memory[n], files[n] = found["peak_extra_mib"], found["file_extra_mib"]
    for n in counts:
        print(
            f"memory: monitor of {n} texts ({budget} tokens/batch): peak extra private {memory[n]:.1f} MiB "
            f"(file-backed, the weights' pages touched: +{files[n]:.1f} MiB)"
        )
    return memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--n", type=int, default=1000, help="texts monitored per round (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--budget", type=int, help=f"padded tokens per batch (default {CPU_BUDGET} on CPU)")
    parser.add_argument("--memory-texts", default="250,1000", help="text counts of the memory runs (250,1000)")
    parser.add_argument("--skip-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    budget = args.budget or (32768 if torch.cuda.is_available() else CPU_BUDGET)
    if args.memory_child:
        memory_child(args.model, args.memory_child, budget, args.folder)
        return
    print(machine_load("start"))
    torch.manual_seed(0)
    tmp = tempfile.TemporaryDirectory()
    folder = Path(tmp.name)
    pool = ModelPool()
    config = prepare(folder / "experiments", args.model, pool)
    loaded = pool.get(config)
    texts = real_lines(args.n)
    inputs = folder / "texts.txt"
    inputs.write_text("\n".join(texts) + "\n", encoding="utf-8")
    prefills = real_lines(64)
    trait = as_trait(prefills, folder / "traits")
    capture_tokens = sum(len(loaded.tokenizer(t)["input_ids"]) for t in prefills)
    monitor_tokens = sum(len(loaded.tokenizer(t)["input_ids"]) for t in texts)
    last = (loaded.num_layers - 1,)
    print(
        f"model {loaded.name}: {loaded.num_layers} layers, width {loaded.hidden_size}, {torch.get_num_threads()} "
        f"threads; capture: 64 prefills, {capture_tokens} tokens; monitor: {len(texts)} texts, {monitor_tokens} "
        f"tokens; batch budget {budget} tokens; {args.rounds} rounds"
    )
    variants: dict[str, Callable[[], object]] = {
        "capture": lambda: capture(loaded, trait, positions=["prefill-mean", "last-token"], max_batch_tokens=budget),
        "monitor": lambda: monitor(config, pool, inputs, None, budget),
        "monitor_last": lambda: monitor(config, pool, inputs, last, budget),
    }
    warm = folder / "warm.txt"
    warm.write_text("\n".join(texts[:4]) + "\n", encoding="utf-8")
    capture(loaded, as_trait(prefills[:4], folder / "warm"), positions=["prefill-mean"], max_batch_tokens=budget)
    monitor(config, pool, warm, None, budget)
    times = interleave(variants, args.rounds)
    layer = json.loads((config.path / "extraction" / TRAIT / "evaluation.json").read_text())
    recommended = layer["positions"]["prefill-mean"]["recommended_layer"]["mean-diff"]
    tokens = {"capture": capture_tokens, "monitor": monitor_tokens, "monitor_last": monitor_tokens}
    labels = {
        "capture": f"(b) capture, all {loaded.num_layers} layers",
        "monitor": f"(m) monitor, layer {recommended}",
        "monitor_last": f"(f) monitor, layer {last[0]}",
    }
    print("tok/s and seconds: median over rounds (min–max)")
    rates = {name: [tokens[name] / t for t in times[name]] for name in times}
    for name in times:
        print(f"{labels[name]:<28} {spread(rates[name]).show(0):>20} tok/s  {spread(times[name]).show(2):>22} s")
    ratios = {
        "monitor_vs_capture": spread(per_round(rates["monitor"], rates["capture"])),
        "monitor_last_layer_vs_capture": spread(per_round(rates["monitor_last"], rates["capture"])),
    }
    for name, value in ratios.items():
        print(f"ratio {name:<30} {value.show(3)}  (tokens/s per round; median, min–max; target >= 0.8)")
    medians = {name: value.median for name, value in ratios.items()}
    if not args.skip_memory:
        counts = [int(x) for x in args.memory_texts.split(",")]
        memory = measure_memory(args.model, budget, counts, folder / "experiments")
        medians[f"memory_{counts[-1]}_vs_{counts[0]}"] = memory[counts[-1]] / max(memory[counts[0]], 1e-9)
    tmp.cleanup()
    print(machine_load("end"))
    print(ratios_line(medians))


if __name__ == "__main__":
    main()
