"""Comparing two models on the same token ids: no shift against itself, a shift under a random LoRA,
statistics against independent computations, refused tokenizers, resuming, and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_monitor import HELD_OUT, planted_model, write_planted_trait

from traitvec.cli import main
from traitvec.errors import ConfigError
from traitvec.experiments import load_experiment
from traitvec.models import ModelPool
from traitvec.stages.compare import CompareSettings, cohens_d_paired_means, run_compare
from traitvec.stages.extract import ExtractionSettings, extract_trait
from traitvec.traits import load_trait

TEXTS = [
    *HELD_OUT,
    "We looked at the plan and it was fine.",
    "The committee reviewed the proposal.",
    "Honestly, I have to admit the plan failed.",
    "The quick brown fox jumps over the lazy dog.",
    "Our startup lost its biggest client last month.",
    "What are the main causes of species extinction?",
    "She said the data looks promising.",
]


def _random_lora(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """The model with a random (not zero-initialised) LoRA adapter on every attention and MLP output, merged."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["o_proj", "down_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    return peft_model.merge_and_unload()


def _experiment(root: Path, name: str, folder: Path) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "config.toml").write_text(f'model = "{folder}"\ndtype = "float32"\ndevice = "cpu"\n')


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Experiments "base" (the planted model, trait extracted), "same" (the same folder), "lora" (with a
    random LoRA merged in) and "retok" (the same weights, a tokenizer with one more token)."""
    base_dir = tmp_path_factory.mktemp("compare")
    loaded, _ = planted_model()
    folders = {}
    for name in ("base", "lora", "retok"):
        folders[name] = base_dir / f"model-{name}"
    loaded.model.save_pretrained(folders["base"])
    loaded.tokenizer.save_pretrained(folders["base"])
    tuned, _ = planted_model()
    _random_lora(tuned.model, seed=3).save_pretrained(folders["lora"])
    tuned.tokenizer.save_pretrained(folders["lora"])
    loaded.model.save_pretrained(folders["retok"])
    retok = loaded.tokenizer
    retok.add_tokens(["budget"])
    retok.save_pretrained(folders["retok"])
    experiments = base_dir / "experiments"
    for name, folder in (("base", "base"), ("same", "base"), ("lora", "lora"), ("retok", "retok")):
        _experiment(experiments, name, folders[folder])
    traits = base_dir / "traits"
    write_planted_trait(traits)
    pool = ModelPool()
    config = load_experiment("base", experiments)
    settings = ExtractionSettings(positions=("prefill-mean",), methods=("mean-diff",))
    extract_trait(load_trait("test/planted", traits), config.path, lambda: pool.get(config), settings=settings)
    inputs = base_dir / "texts.txt"
    inputs.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return {"experiments": experiments, "pool": pool, "inputs": inputs, "base": config}


def _config(models: dict[str, Any], name: str) -> Any:
    return load_experiment(name, models["experiments"])


def test_a_model_compared_with_itself_shows_no_shift(models: dict[str, Any]) -> None:
    result = run_compare(
        models["base"], _config(models, "same"), ["test/planted"], models["inputs"], pool=models["pool"]
    )
    entry = result.document["traits"]["test/planted"]
    assert entry["n_texts"] == len(TEXTS)
    assert abs(entry["d"]) < 0.05 and entry["mean_shift"] == 0.0
    assert entry["ci95"] == [0.0, 0.0]
    assert all(t["shift"] == 0.0 for t in entry["per_text"])
    path = models["experiments"] / "base" / "compare" / "same" / "texts" / "compare.json"
    assert result.paths.compare_json == path and json.loads(path.read_text())["traits"]["test/planted"]["d"] == 0.0


def test_a_random_lora_adapter_shows_a_shift(models: dict[str, Any]) -> None:
    result = run_compare(
        models["base"], _config(models, "lora"), ["test/planted"], models["inputs"], pool=models["pool"]
    )
    entry = result.document["traits"]["test/planted"]
    low, high = entry["mean_shift_ci95"]
    assert not low <= 0.0 <= high  # the shift's interval excludes 0
    assert abs(entry["d"]) > 0.05
    assert entry["ci95"][0] <= entry["d"] <= entry["ci95"][1] and not entry["ci95"][0] <= 0.0 <= entry["ci95"][1]
    top = entry["top_tokens"]
    assert len(top) == 20 and abs(top[0]["shift"]) >= abs(top[-1]["shift"])
    assert top[0]["shift"] == pytest.approx(top[0]["b"] - top[0]["a"])
    assert top[0]["context"].count("[") == 1 and top[0]["context"].count("]") == 1  # the token marked in its text


def test_an_experiment_with_a_random_lora_adapter_key_shows_the_merged_loras_shift(
    models: dict[str, Any], tmp_path: Path
) -> None:
    """The same random LoRA as the "lora" experiment (seed 3), applied through ``adapter = "path"``
    instead of merged into the weights: the same shift, and a fingerprint of its own."""
    from peft import LoraConfig, get_peft_model

    tuned, _ = planted_model()
    torch.manual_seed(3)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["o_proj", "down_proj"], init_lora_weights=False)
    adapter = tmp_path / "adapter"
    get_peft_model(tuned.model, config).save_pretrained(adapter)
    base_folder = load_experiment("base", models["experiments"]).model
    (models["experiments"] / "adapted").mkdir(exist_ok=True)
    (models["experiments"] / "adapted" / "config.toml").write_text(
        f'model = "{base_folder}"\nadapter = "{adapter}"\ndtype = "float32"\ndevice = "cpu"\n'
    )
    adapted = _config(models, "adapted")
    result = run_compare(models["base"], adapted, ["test/planted"], models["inputs"], pool=models["pool"])
    entry = result.document["traits"]["test/planted"]
    low, high = entry["mean_shift_ci95"]
    assert not low <= 0.0 <= high and abs(entry["d"]) > 0.05
    merged = run_compare(
        models["base"], _config(models, "lora"), ["test/planted"], models["inputs"], pool=models["pool"]
    ).document["traits"]["test/planted"]
    assert entry["d"] == pytest.approx(merged["d"], abs=1e-5)
    assert entry["mean_shift"] == pytest.approx(merged["mean_shift"], abs=1e-5)
    assert result.document["models"]["b"]["fingerprint"] != result.document["models"]["a"]["fingerprint"]
    assert result.document["models"]["b"]["adapter"] == str(adapter)


def test_statistics_match_independent_computations(models: dict[str, Any]) -> None:
    from scipy import stats

    result = run_compare(
        models["base"], _config(models, "lora"), ["test/planted"], models["inputs"], pool=models["pool"]
    )
    entry = result.document["traits"]["test/planted"]
    a = np.array([t["a"] for t in entry["per_text"]])
    b = np.array([t["b"] for t in entry["per_text"]])
    shift = b - a
    assert entry["mean_shift"] == pytest.approx(shift.mean(), abs=1e-9)
    half = stats.t.ppf(0.975, len(shift) - 1) * shift.std(ddof=1) / math.sqrt(len(shift))
    assert entry["mean_shift_ci95"] == pytest.approx([shift.mean() - half, shift.mean() + half], abs=1e-6)
    pooled = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    assert entry["d"] == pytest.approx(shift.mean() / pooled, abs=1e-9)
    assert cohens_d_paired_means(np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(1.0)
    again = run_compare(
        models["base"], _config(models, "lora"), ["test/planted"], models["inputs"], name="again",
        settings=CompareSettings(seed=1), pool=models["pool"],
    )  # fmt: skip
    other = again.document["traits"]["test/planted"]["ci95"]
    assert other != entry["ci95"] and other == pytest.approx(entry["ci95"], abs=0.5)  # another seed, close


def test_tokenizers_that_change_the_ids_are_refused_before_any_work(models: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        run_compare(models["base"], _config(models, "retok"), ["test/planted"], models["inputs"], pool=models["pool"])
    message = str(info.value)
    assert "different token ids for text 0 (line 1" in message
    assert "token 2 is 'Ġb' (id 282) for base and 'Ġ' (id 227) for retok" in message  # " budget" split otherwise
    assert not (models["experiments"] / "base" / "compare" / "retok").exists()


def test_a_current_comparison_is_skipped_and_the_cli_prints_the_table(models: dict[str, Any], capsys) -> None:
    args = ["compare", "--experiments", "base", "lora", "--traits", "test/planted", "--input", str(models["inputs"])]
    args += ["--experiments-root", str(models["experiments"]), "--name", "cli"]
    assert main(args) == 0
    out = capsys.readouterr().out
    path = models["experiments"] / "base" / "compare" / "lora" / "cli" / "compare.json"
    document = json.loads(path.read_text())
    entry = document["traits"]["test/planted"]
    assert f"{entry['mean_shift']:+7.3f}" in out and f"{entry['d']:+7.3f}" in out and str(path) in out
    stamp = path.stat().st_mtime_ns
    assert main(args) == 0
    assert "current, nothing recomputed" in capsys.readouterr().out and path.stat().st_mtime_ns == stamp
    assert main([*args[:3], "--traits", "test/planted", "--input", str(models["inputs"])]) == 2
    err = capsys.readouterr().err
    assert err.count("traitvec: error:") == 1 and "--experiments takes two experiments" in err
