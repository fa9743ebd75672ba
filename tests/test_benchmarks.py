"""The benchmark scripts: the interleaved-rounds helper, the GPU benchmark's dry run, and that every
script still starts (its imports resolve) after the library moves things around.

Speed itself is never asserted here: the scripts measure it, the tests check what they print.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _rounds  # noqa: E402

# Packages the bare GPU machine lacks (it has torch, transformers, accelerate, safetensors and their
# dependencies): the dry run must not import them.
ABSENT_ON_GPU_MACHINE = ("sklearn", "openai", "gguf", "nnsight", "matplotlib")
TINY_MODELS = ("tiny-gemma2", "tiny-llama")
SPEED_RATIOS = ("capture_speed_vs_bare", "steered_speed_vs_unsteered", "sweep8_speed_vs_unsteered")
MEMORY_RATIOS = ("capture_extra_mem_vs_bare", "steered_extra_mem_vs_unsteered")


def test_interleave_runs_variants_in_rounds_in_order() -> None:
    calls: list[str] = []
    hooks: list[str] = []
    variants = {name: (lambda name=name: calls.append(name)) for name in "ABC"}
    times = _rounds.interleave(
        variants, 3, before=lambda n: hooks.append(f"before {n}"), after=lambda n: hooks.append(f"after {n}")
    )
    assert calls == list("ABCABCABC")
    assert hooks[:4] == ["before A", "after A", "before B", "after B"] and len(hooks) == 18
    assert set(times) == {"A", "B", "C"} and all(len(t) == 3 and min(t) >= 0 for t in times.values())


def test_rounds_must_be_positive() -> None:
    with pytest.raises(SystemExit, match="--rounds 0"):
        _rounds.interleave({"A": lambda: None}, 0)


def test_ratios_are_per_round_and_summarised_by_median_and_range() -> None:
    # round 2 ran on a loaded machine: both variants slowed, its ratio stays in line
    limit, ours = [1.0, 3.0, 1.1], [1.1, 3.3, 1.1]
    ratios = _rounds.per_round(limit, ours)
    assert ratios == pytest.approx([1 / 1.1, 1 / 1.1, 1.0])
    summary = _rounds.spread(ratios)
    assert summary.median == pytest.approx(1 / 1.1)
    assert (summary.low, summary.high) == (pytest.approx(1 / 1.1), pytest.approx(1.0))
    assert summary.show(2) == "0.91 (0.91–1.00)"
    assert _rounds.spread([3.0, 1.0, 2.0, 10.0]).median == 2.5


def test_ratios_line_and_load_line() -> None:
    line = _rounds.ratios_line({"a_vs_b": 0.95123, "requests": 0.0}, digits={"requests": 0})
    assert line == "ratios: a_vs_b=0.951 requests=0"
    load = _rounds.machine_load("start")
    assert re.fullmatch(r"load at start: [\d.]+ [\d.]+ [\d.]+ \(1/5/15-min averages\) on \d+ CPUs", load)


def parse_ratios(line: str) -> dict[str, float]:
    assert line.startswith("ratios: "), line
    pairs = [item.split("=") for item in line.removeprefix("ratios: ").split()]
    assert all(len(p) == 2 for p in pairs), line
    return {key: float(value) for key, value in pairs}


def test_gpu_dry_run_prints_every_measurement_and_a_parseable_ratio_line() -> None:
    # Run the script as on the GPU machine, then report which of the absent packages got imported.
    probe = (
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(BENCHMARKS)!r})\n"
        "sys.argv = ['gpu.py', '--dry-run']\n"
        "try:\n"
        f"    runpy.run_path({str(BENCHMARKS / 'gpu.py')!r}, run_name='__main__')\n"
        "finally:\n"
        f"    loaded = sorted(m for m in {ABSENT_ON_GPU_MACHINE!r} if m in sys.modules)\n"
        "    print('absent packages imported:', ' '.join(loaded) or 'none')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=1200, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "absent packages imported: none", lines[-1]
    text = "\n".join(lines)
    assert lines[0].startswith("gpu benchmark (dry run): device cpu")
    assert re.search(r"^load at start: .* on \d+ CPUs$", text, re.M)
    assert re.search(r"^load at end: .* on \d+ CPUs$", text, re.M)
    imports = next(line for line in lines if line.startswith("traitvec modules imported:"))
    modules, used, first = imports.split("; ")
    for module in ("traitvec.capture", "traitvec.generation", "traitvec.steering", "traitvec.models"):
        assert module in modules.split()
    # whatever else traitvec uses at module level comes with torch or transformers on the GPU machine
    assert used.startswith("other packages they use at module level: "), imports
    assert "NOT a dependency" not in used and not any(p in used for p in ABSENT_ON_GPU_MACHINE), imports
    assert first == "packages first imported by them: none", imports
    number = r"\d+(?:\.\d+)?"
    spread = rf"{number} \({number}–{number}\)"
    for model in TINY_MODELS:
        assert re.search(rf"^model {model} \(\w+\): 4 layers, hidden 64, .* bfloat16, attention \w+", text, re.M)
    for label in ("bare decoder stack", "traitvec capture"):
        assert len(re.findall(rf"^    {label} +{spread} tok/s +peak n/a", text, re.M)) == 2, label
    for label in (r"unsteered", r"steered \(layer 2\)", r"sweep of 8 in the batch"):
        assert len(re.findall(rf"^    {label} +{spread} new tok/s +peak n/a", text, re.M)) == 2, label
    assert len(re.findall(r"^  generate: batch 64, 8 prompt \+ 8 new tokens per row", text, re.M)) == 2
    ratios = parse_ratios(lines[-2])
    expected = {f"{m}.{r}" for m in TINY_MODELS for r in SPEED_RATIOS + MEMORY_RATIOS}
    assert set(ratios) == expected
    for model in TINY_MODELS:
        for name in SPEED_RATIOS:
            assert math.isfinite(ratios[f"{model}.{name}"]) and ratios[f"{model}.{name}"] > 0
        for name in MEMORY_RATIOS:  # no device memory counter on CPU
            assert math.isnan(ratios[f"{model}.{name}"])


def test_gpu_benchmark_refuses_unknown_models_by_name() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu.py"), "--dry-run", "--models", "tiny-llama,gpt-9"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "--models gpt-9: not one of tiny-gemma2, tiny-llama" in done.stderr


@pytest.mark.parametrize(
    "script", ["extraction.py", "steering.py", "judge.py", "gpu.py", "monitor.py", "multi_trait.py"]
)
def test_benchmark_scripts_start(script: str) -> None:
    """--help imports everything a script imports at the top: a moved library name shows up here."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--help"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "--rounds" in done.stdout
