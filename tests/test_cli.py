"""The command line: subcommands, exit statuses, and one readable line for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import NEGATIVE, POSITIVE, ROOT, STEERING, write_trait

from traitvec.cli import main


def errors(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("traitvec: error:")]


BAD_FOLDERS = {
    "unequal": lambda root: write_trait(root, "c/t", POSITIVE, NEGATIVE[:3]),
    "blank": lambda root: write_trait(root, "c/t", POSITIVE[:2] + [""] + POSITIVE[3:], NEGATIVE),
    "identical": lambda root: write_trait(root, "c/t", POSITIVE, POSITIVE[:1] + NEGATIVE[1:]),
    "duplicate": lambda root: write_trait(root, "c/t", POSITIVE + POSITIVE[:1], NEGATIVE + NEGATIVE[:1]),
    "bytes": lambda root: (write_trait(root, "c/t", POSITIVE, NEGATIVE) / "positive.txt").write_bytes(b"ok\n\xff\n"),
    "json": lambda root: write_trait(root, "c/t", POSITIVE, NEGATIVE, steering='{"questions": [}'),
    "no-questions": lambda root: write_trait(root, "c/t", POSITIVE, NEGATIVE, steering={"eval_prompt": "x"}),
    "empty-questions": lambda root: write_trait(root, "c/t", POSITIVE, NEGATIVE, steering={"questions": []}),
    "question-type": lambda root: write_trait(root, "c/t", POSITIVE, NEGATIVE, steering={"questions": [1]}),
    "eval-prompt": lambda root: write_trait(
        root, "c/t", POSITIVE, NEGATIVE, steering={"questions": ["a"], "eval_prompt": "{question} only"}
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_FOLDERS))
def test_traits_exits_2_with_one_line_naming_file_and_line(tmp_path: Path, kind: str, capsys) -> None:
    BAD_FOLDERS[kind](tmp_path)
    assert main(["traits", "--traits-root", str(tmp_path), "c/t"]) == 2
    lines = errors(capsys)
    assert len(lines) == 1
    assert ".txt" in lines[0] or ".json" in lines[0]
    assert " line " in lines[0]


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "missing/trait"])
def test_bad_trait_names_exit_2(trait_root: Path, name: str, capsys) -> None:
    assert main(["traits", "--traits-root", str(trait_root), name]) == 2
    assert len(errors(capsys)) == 1


def test_traits_lists_counts_and_passes_on_valid_data(trait_root: Path, capsys) -> None:
    assert main(["traits", "--traits-root", str(trait_root)]) == 0
    out = capsys.readouterr().out
    assert "test/optimism" in out and f"  {len(POSITIVE)}  " in out and f"  {len(STEERING['questions'])}  " in out


def test_bundled_datasets_are_valid(capsys) -> None:
    assert main(["traits"]) == 0 or not (ROOT / "datasets/traits").is_dir()


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (None, "no experiment 'nope'"),
        ('model = "no-such-model"\n', "unknown model 'no-such-model'"),
        ('model = "x/y"\ncolour = "red"\n', "unknown key(s) colour"),
    ],
)
def test_experiment_and_model_errors_exit_2(tmp_path: Path, trait_root: Path, config, expected: str, capsys) -> None:
    experiments = tmp_path / "experiments"
    (experiments / "nope").mkdir(parents=True)
    if config is not None:
        (experiments / "nope" / "config.toml").write_text(config)
    status = main(
        [
            "extract",
            "--experiment",
            "nope",
            "--traits",
            "test/optimism",
            "--traits-root",
            str(trait_root),
            "--experiments-root",
            str(experiments),
        ]
    )
    assert status == 2
    lines = errors(capsys)
    assert len(lines) == 1 and expected in lines[0]


def test_bad_flags_exit_2_with_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["extract", "--experiment"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0]


def test_bad_position_and_layers_flags(trait_root: Path, capsys) -> None:
    for flag in (["--position", "middle"], ["--layers", "a,b"], ["--methods", "lda"]):
        status = main(
            [
                "extract",
                "--experiment",
                "gemma-3-270m",
                "--traits",
                "test/optimism",
                "--traits-root",
                str(trait_root),
                "--experiments-root",
                str(ROOT / "experiments"),
                *flag,
            ]
        )
        assert status == 2
        assert len(errors(capsys)) == 1


def test_help_lists_every_subcommand() -> None:
    out = subprocess.run([sys.executable, "-m", "traitvec", "--help"], capture_output=True, text=True, check=True)
    for command in ("traits", "audit", "extract", "vet", "run", "steer", "judge", "models", "export-gguf"):
        assert command in out.stdout


def test_scripts_and_module_report_errors_without_traceback(tmp_path: Path) -> None:
    for command in (
        [sys.executable, str(ROOT / "extraction/run_pipeline.py"), "--experiment", "missing", "--traits", "a/b"],
        [sys.executable, str(ROOT / "extraction/vet_scenarios.py"), "--experiment", "missing", "--trait", "a/b"],
        [sys.executable, "-m", "traitvec", "traits", "--traits-root", str(tmp_path / "none")],
    ):
        result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert len([line for line in result.stderr.splitlines() if "error:" in line]) == 1


def test_export_gguf_command(tmp_path: Path, capsys) -> None:
    import torch

    from traitvec.capture import Activations
    from traitvec.methods import MeanDiff

    acts = Activations(
        positive=torch.randn(4, 3, 8) + 1,
        negative=torch.randn(4, 3, 8),
        layers=(0, 1, 2),
        position="prefill-mean",
        model={"model_type": "llama"},
        trait="t/x",
        trait_hash="h",
        lines=(1, 2, 3, 4),
    )
    path = MeanDiff().fit(acts).save(tmp_path)
    assert main(["export-gguf", str(path), "--layers", "1,2", "--out", str(tmp_path / "v.gguf")]) == 0
    assert (tmp_path / "v.gguf").stat().st_size > 0
    assert main(["export-gguf", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "w.gguf")]) == 2
    assert len(errors(capsys)) == 1
    json.loads(path.with_suffix(".json").read_text())


def test_library_errors_name_the_setting_and_the_cli_names_the_flag(trait_root: Path, capsys) -> None:
    from traitvec import ConfigError, ExtractionSettings, SteeringSettings, VetSettings

    with pytest.raises(ConfigError) as info:
        ExtractionSettings(backend="x")  # type: ignore[arg-type]
    assert str(info.value) == "ExtractionSettings.backend = 'x' is not one of hooks, nnsight"
    assert info.value.setting == "ExtractionSettings.backend"
    for make, setting in (
        (lambda: SteeringSettings(samples=0), "SteeringSettings.samples"),
        (lambda: SteeringSettings(coherence_floor=150), "SteeringSettings.coherence_floor"),
        (lambda: VetSettings(tokens=8), "VetSettings.tokens"),
    ):
        with pytest.raises(ConfigError) as info:
            make()
        assert info.value.setting == setting and str(info.value).startswith(f"{setting} = ")
        assert "--" not in str(info.value)

    common = ["--traits", "test/optimism", "--traits-root", str(trait_root)]
    common += ["--experiments-root", str(ROOT / "experiments"), "--experiment", "gemma-3-270m"]
    cases = [
        (["extract", *common, "--backend", "x"], "--backend 'x' is not one of hooks, nnsight"),
        (["extract", *common, "--position", "middle"], "--position 'middle' is not one of prefill-mean,"),
        (["run", *common, "--samples", "0"], "--samples 0: must be at least 1"),
        (["run", *common, "--coherence-floor", "150"], "--coherence-floor 150.0: use a score between 0 and 100"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2
        (line,) = errors(capsys)
        assert expected in line and "Settings." not in line, line


def test_vet_and_vetted_only_errors_name_flags(tmp_path: Path, trait_root: Path, capsys) -> None:
    experiments = tmp_path / "experiments"
    (experiments / "e").mkdir(parents=True)
    (experiments / "e" / "config.toml").write_text('model = "x/y"\n')
    where = ["--traits-root", str(trait_root), "--experiments-root", str(experiments), "--experiment", "e"]
    assert main(["vet", "--trait", "test/optimism", *where, "--tokens", "8"]) == 2
    (line,) = errors(capsys)
    assert "--tokens 8: vetting continuations are 16-32 tokens" in line
    assert main(["extract", "--traits", "test/optimism", *where, "--vetted-only"]) == 2
    (line,) = errors(capsys)
    assert "--vetted-only needs" in line and "vetting.json" in line and "--vet," in line
    assert "run_pipeline(" not in line
