"""The command line: subcommands, exit statuses, and one readable line for every bad input."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DEFINITION, NEGATIVE, POSITIVE, ROOT, STEERING, write_trait

from traitvec.cli import main

TRAITS = ROOT / "datasets" / "traits"
KEY = "sk-test-SECRET-cli-7731"


def errors(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("traitvec") and ": error:" in line]


def status(argv: list[str]) -> int:
    """``main``'s exit status, also when argparse exits (a flag it refuses)."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


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


def test_main_leaves_the_callers_logging_as_it_found_it(trait_root: Path, caplog, capsys) -> None:
    """A notebook (or a test) that calls main() keeps its own handlers: the CLI's set-up is undone."""
    import logging

    logger = logging.getLogger("traitvec")
    before = (logger.handlers[:], logger.level, logger.propagate, logging.getLogger("httpx").level)
    assert main(["traits", "--traits-root", str(trait_root)]) == 0
    assert main(["traits", "--traits-root", str(trait_root), "missing/trait"]) == 2
    assert (logger.handlers[:], logger.level, logger.propagate, logging.getLogger("httpx").level) == before
    with caplog.at_level(logging.INFO, logger="traitvec"):
        logging.getLogger("traitvec.stages").info("after main")
    assert "after main" in caplog.text  # before the fix, main() left propagate off and this record was lost


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
        code = status(
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
        assert code == 2
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
    assert status(["vet", "--trait", "test/optimism", *where, "--tokens", "8"]) == 2
    (line,) = errors(capsys)
    assert "--tokens 8: use a whole number from 16 to 32" in line
    assert main(["extract", "--traits", "test/optimism", *where, "--vetted-only"]) == 2
    (line,) = errors(capsys)
    assert "--vetted-only needs" in line and "vetting.json" in line and "--vet," in line
    assert "run_pipeline(" not in line


# --------------------------------------------------------------------------------------------
# flags: numbers in range, no abbreviations, --trait and --traits, help


def test_every_invalid_numeric_flag_is_reported_in_one_line_before_anything_loads(capsys) -> None:
    argv = ["run", "--experiment", "nope", "--traits", "a/b", "--questions", "0", "--samples", "-18"]
    argv += ["--coherence-floor", "150", "--max-new-tokens", "x", "--search-steps", "2.5", "--n-layers", "0"]
    argv += ["--response-tokens", "-1", "--judge-concurrency", "0", "--layers", "1,-2", "--steer-layers", "a"]
    argv += ["--fluency-margin", "-1", "--repetition-ceiling", "inf"]
    assert status(argv) == 2
    (line,) = errors(capsys)
    for expected in (
        "--questions 0: use a whole number of at least 1",
        "--samples -18: use a whole number of at least 1",
        "--coherence-floor 150: use a number from 0 to 100",
        "--max-new-tokens x: use a whole number of at least 1",
        "--search-steps 2.5: use a whole number of at least 1",
        "--n-layers 0: use a whole number of at least 1",
        "--response-tokens -1: use a whole number of at least 1",
        "--judge-concurrency 0: use a whole number of at least 1",
        "--layers '1,-2': use comma-separated layer numbers of at least 0",
        "--steer-layers 'a': use comma-separated layer numbers",
        "--fluency-margin -1: use a number of at least 0",
        "--repetition-ceiling inf: use a number from 0 to 1",
    ):
        assert expected in line, (expected, line)
    assert "no experiment" not in line  # nothing was loaded: the flags failed first


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "--experiment", "nope", "--traits", "a/b", "--questions", "-18"], "--questions -18: use a whole"),
        (
            ["vet", "--experiment", "nope", "--trait", "a/b", "--tokens", "40"],
            "--tokens 40: use a whole number from 16",
        ),
        (["vet", "--experiment", "nope", "--trait", "a/b", "--threshold", "nan"], "--threshold nan: use a number from"),
        (["vet", "--experiment", "nope", "--trait", "a/b", "--pass-score", "-5"], "--pass-score -5: use a number from"),
        (["steer", "--experiment", "nope", "--vector", "v", "--layer", "-1", "--coefficient", "1", "q"], "--layer -1"),
        (
            ["steer", "--experiment", "nope", "--vector", "v", "--layer", "2", "--coefficient", "inf", "q"],
            "--coefficient inf",
        ),
        (
            ["export-gguf", "v.safetensors", "--out", "v.gguf", "--coefficient", "nan"],
            "--coefficient nan: use a finite",
        ),
    ],
)
def test_numeric_flags_out_of_range_exit_2(argv: list[str], expected: str, capsys) -> None:
    assert status(argv) == 2
    (line,) = errors(capsys)
    assert expected in line


def test_in_range_numbers_parse_to_numbers() -> None:
    from traitvec.cli import build_parser

    args = build_parser().parse_args(
        ["run", "--experiment", "e", "--traits", "a/b", "--questions", "3", "--coherence-floor", "77.5"]
    )
    assert (args.questions, args.coherence_floor, args.samples, args.max_new_tokens) == (3, 77.5, 1, 48)
    assert (args.fluency_margin, args.repetition_ceiling) == (1.5, 0.5)
    off = ["run", "--experiment", "e", "--traits", "a/b", "--fluency-margin", "OFF", "--repetition-ceiling", "0.3"]
    assert (build_parser().parse_args(off).fluency_margin, build_parser().parse_args(off).repetition_ceiling) == (
        None,
        0.3,
    )
    steer = build_parser().parse_args(
        [
            "steer",
            "--experiment",
            "e",
            "--vector",
            "v",
            "--layer",
            "0",
            "--coefficient",
            "-2",
            "--coefficient",
            "1.5",
            "q",
        ]
    )
    assert (steer.layer, steer.coefficient, steer.questions) == (0, [-2.0, 1.5], ["q"])


def _subparsers():
    import argparse

    from traitvec.cli import build_parser

    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return parser, action.choices


def test_no_parser_expands_abbreviated_flags(capsys) -> None:
    parser, commands = _subparsers()
    assert parser.allow_abbrev is False and commands and all(p.allow_abbrev is False for p in commands.values())
    args = parser.parse_args(["vet", "--experiment", "e", "--traits", "c/t"])
    assert args.trait == "c/t" and args.traits_root == "datasets/traits"
    for argv in (
        ["vet", "--experiment", "e", "--trait", "c/t", "--traits-r", "x"],
        ["extract", "--exp", "e", "--traits", "c/t"],
        ["run", "--experiment", "e", "--traits", "c/t", "--question", "3"],
    ):
        assert status(argv) == 2
        (line,) = errors(capsys)
        assert "unrecognized arguments" in line or "required" in line


def test_trait_and_traits_are_accepted_alike(capsys) -> None:
    from traitvec.cli import build_parser

    parser = build_parser()
    for command in ("run", "extract"):
        for flag in ("--trait", "--traits"):
            args = parser.parse_args([command, "--experiment", "e", flag, "a/b", "c/d"])
            assert args.traits == ["a/b", "c/d"]
    for command in ("vet", "judge"):
        extra = ["--question", "q", "--answer", "a"] if command == "judge" else ["--experiment", "e"]
        for flag in ("--trait", "--traits"):
            assert parser.parse_args([command, *extra, flag, "a/b"]).trait == "a/b"
        assert status([command, *extra, "--traits", "a/b", "c/d"]) == 2
        (line,) = errors(capsys)
        assert "--traits takes one trait here, got 2 (a/b, c/d)" in line and "once per trait" in line


def _help(command: str, capsys) -> str:
    assert status([command, "--help"]) == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_explains_steer_flags_and_run_does_not_promise_vetting(capsys) -> None:
    steer = _help("steer", capsys)
    for expected in ("add: add coefficient x vector", "ablate: remove the component", "pin: set the component"):
        assert expected in steer
    assert "prompt (the question's tokens only)" in steer and "response (the generated tokens)" in steer
    assert "default 64: longer than the pipeline's 48" in steer
    run = _help("run", capsys)
    assert "vetting, extraction" not in run and "with --vet, scenario vetting first" in run
    assert "--vet also run scenario vetting first (off by default" in run


def small_vector(folder: Path) -> Path:
    """A mean-difference vector at layers 0 and 1 (width 8), saved under ``folder``."""
    import torch

    from traitvec.capture import Activations
    from traitvec.methods import MeanDiff

    acts = Activations(
        positive=torch.randn(4, 2, 8) + 1,
        negative=torch.randn(4, 2, 8),
        layers=(0, 1),
        position="prefill-mean",
        model={"model_type": "llama"},
        trait="t/x",
        trait_hash="h",
        lines=(1, 2, 3, 4),
    )
    return MeanDiff().fit(acts).save(folder)


def test_export_gguf_refuses_a_folder_as_out(tmp_path: Path, capsys) -> None:
    path = small_vector(tmp_path / "vectors")
    out = tmp_path / "exports"
    out.mkdir()
    for given in (str(out), str(tmp_path / "new") + "/"):
        assert status(["export-gguf", str(path), "--out", given]) == 2
        (line,) = errors(capsys)
        assert f"--out {given} is a folder" in line and ".gguf" in line
    assert list(out.iterdir()) == [] and not (tmp_path / "new").exists()


# --------------------------------------------------------------------------------------------
# outputs: where they went, folders that cannot be written, a full disk


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-init Llama saved as a local model folder."""
    from tiny import make_model

    folder = tmp_path_factory.mktemp("cli-tiny-model")
    model = make_model("llama", layers=3, hidden=32, chat=True)
    model.model.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    return folder


def experiment(root: Path, model: Path, name: str = "tiny") -> Path:
    """``root/name/config.toml`` for ``model``; returns ``root``."""
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / "config.toml").write_text(f'model = "{model}"\ndtype = "float32"\ndevice = "cpu"\n')
    return root


def extract_argv(experiments: Path, *extra: str) -> list[str]:
    return [
        "extract", "--experiment", "tiny", "--traits", "states/optimism", "--traits-root", str(TRAITS),
        "--experiments-root", str(experiments), "--methods", "mean-diff", "--position", "prefill-mean", *extra,
    ]  # fmt: skip


def outputs_block(out: str, trait: str) -> list[str]:
    """The lines printed under ``Outputs of {trait}:``."""
    block = out.split(f"Outputs of {trait}:\n", 1)[1]
    return [line for line in block.splitlines() if line.startswith("  ")]


def test_extract_prints_where_its_outputs_went(tmp_path: Path, tiny_model: Path, capsys) -> None:
    experiments = experiment(tmp_path / "experiments", tiny_model)
    assert main(extract_argv(experiments)) == 0
    folder = experiments / "tiny/extraction/states/optimism"
    lines = outputs_block(capsys.readouterr().out, "states/optimism")
    assert [line.split()[-1] for line in lines] == [
        f"{folder / 'vectors'}/",
        str(folder / "evaluation.json"),
        str(folder / "evaluation.png"),
    ]
    assert lines[0].split()[0] == "extraction"
    assert (folder / "vectors/mean-diff-prefill-mean.safetensors").is_file() and (folder / "evaluation.png").is_file()


def test_run_prints_where_steering_outputs_went(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from traitvec.judge.testing import JudgeServer, KeywordResponder

    experiments = experiment(tmp_path / "experiments", tiny_model)
    monkeypatch.setenv("TRAITVEC_CACHE", str(tmp_path / "cache"))
    with JudgeServer(KeywordResponder()) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        argv = ["run", *extract_argv(experiments)[1:], "--judge-model", "test-judge"]
        argv += ["--questions", "2", "--search-steps", "1", "--max-new-tokens", "4"]
        assert main(argv) == 0
    lines = outputs_block(capsys.readouterr().out, "states/optimism")
    steering = experiments / "tiny/steering/states/optimism"
    printed = [line.split()[-1] for line in lines]
    assert printed[:3] == [
        f"{experiments / 'tiny/extraction/states/optimism/vectors'}/",
        str(experiments / "tiny/extraction/states/optimism/evaluation.json"),
        str(experiments / "tiny/extraction/states/optimism/evaluation.png"),
    ]
    assert printed[3:5] == [str(steering / "results.md"), str(steering / "results.json")]
    plots, (run_folder,) = printed[5:-1], printed[-1:]
    assert plots and sorted(plots) == sorted(str(p) for p in steering.glob("*.png"))
    assert str(steering / "trait_coherence.png") in plots and str(steering / "projection.png") in plots
    (key,) = [p.name for p in (steering / "runs").iterdir()]
    assert run_folder == f"{steering / 'runs' / key}/"
    assert [line.split()[0] for line in lines if not line.startswith("   ")] == ["extraction", "steering"]


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` read-only for this process: a permission change, or (as root) a read-only bind mount."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")] if p.is_dir()}
        for path in modes:
            path.chmod(0o555)
        try:
            yield
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    bound = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if bound.returncode != 0:
        pytest.skip(f"cannot make a read-only folder as root here: {bound.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_experiment_fails_before_any_model_loads(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import traitvec.models

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded for an experiment folder that cannot be written")

    experiments = experiment(tmp_path / "experiments", tiny_model)
    monkeypatch.setattr(traitvec.models, "load_model", no_load)
    with read_only(experiments / "tiny"):
        assert main(extract_argv(experiments)) == 2
    (line,) = errors(capsys)
    assert f"cannot write in {experiments / 'tiny'}" in line and "writable --experiments-root" in line
    assert [p.name for p in (experiments / "tiny").iterdir()] == ["config.toml"]


@contextlib.contextmanager
def full_disk(kind: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Writes under ``folder`` fail for lack of space: a tmpfs filled up (as root), or every atomic flush failing."""
    if kind == "fsync":

        def no_space(fd: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fsync", no_space)
        yield
        monkeypatch.undo()
        return
    filler = folder / "filler"
    with open(filler, "wb") as handle:
        with contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
    try:
        yield
    finally:
        filler.unlink()


@contextlib.contextmanager
def small_tmpfs(folder: Path) -> Iterator[None]:
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True)
    if os.geteuid() != 0 or mounted.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("kind", ["fsync", "tmpfs"])
def test_a_full_disk_is_one_line_and_leaves_every_finished_file_intact(
    kind: str, tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    disk = tmp_path / "disk"
    with small_tmpfs(disk) if kind == "tmpfs" else contextlib.nullcontext(disk.mkdir()):
        experiments = experiment(disk / "experiments", tiny_model)
        assert main(extract_argv(experiments)) == 0
        capsys.readouterr()
        folder = experiments / "tiny/extraction/states/optimism"
        before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        with full_disk(kind, disk, monkeypatch):
            assert main(extract_argv(experiments, "--force")) == 2
        (line,) = errors(capsys)
        assert "No space left on device while writing outputs" in line and "free some space and rerun" in line
        after = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        assert after == before  # nothing half-written, no temporary file left behind
        assert main(extract_argv(experiments)) == 0  # and a rerun with space again works
    shutil.rmtree(disk, ignore_errors=True)


def test_steer_refuses_a_layer_the_vector_lacks_before_the_model_loads(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import traitvec.models

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    experiments = experiment(tmp_path / "experiments", tiny_model)
    vector = small_vector(tmp_path / "vectors")
    monkeypatch.setattr(traitvec.models, "load_model", no_load)
    argv = ["steer", "--experiment", "tiny", "--experiments-root", str(experiments), "--vector", str(vector)]
    assert main([*argv, "--layer", "7", "--coefficient", "1", "Why?"]) == 2
    (line,) = errors(capsys)
    assert "has no layer 7; it has layers [0, 1]" in line


# --------------------------------------------------------------------------------------------
# the judge: checked and announced before any model work, its model loaded only to score


DEAD_JUDGE = "http://127.0.0.1:9/v1"  # nothing listens on port 9: connection refused, no network needed


def test_an_unreachable_judge_stops_run_and_vet_before_any_model_loads(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import traitvec.models

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the judge was checked")

    experiments = experiment(tmp_path / "experiments", tiny_model)
    monkeypatch.setattr(traitvec.models, "load_model", no_load)
    monkeypatch.setenv("TRAITVEC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    run = ["run", *extract_argv(experiments)[1:]]
    vet = ["vet", "--experiment", "tiny", "--trait", "states/optimism", "--traits-root", str(TRAITS)]
    vet += ["--experiments-root", str(experiments)]
    for argv in (run, run + ["--vet"], vet):
        assert main([*argv, "--judge-base-url", DEAD_JUDGE]) == 2, argv
        (line,) = errors(capsys)
        assert f"judge at {DEAD_JUDGE} is unreachable" in line and KEY not in line, line
    assert [p.name for p in (experiments / "tiny").iterdir()] == ["config.toml"]  # extraction never started


def test_a_trait_without_a_rubric_is_refused_before_steering_starts(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import traitvec.models

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded for a trait the judge cannot score")

    bare = {"questions": STEERING["questions"]}  # no eval_prompt, and no definition.txt
    write_trait(tmp_path / "traits", "c/bare", POSITIVE, NEGATIVE, steering=bare)
    experiments = experiment(tmp_path / "experiments", tiny_model)
    monkeypatch.setattr(traitvec.models, "load_model", no_load)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    argv = ["run", "--experiment", "tiny", "--traits", "c/bare", "--traits-root", str(tmp_path / "traits")]
    argv += ["--experiments-root", str(experiments), "--judge-base-url", DEAD_JUDGE]
    assert main(argv) == 2
    (line,) = errors(capsys)
    assert "trait c/bare has no definition.txt and no eval_prompt" in line  # named before the judge is asked


def test_the_smoke_test_warning_comes_first_and_a_current_rerun_loads_no_model(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import traitvec.models

    experiments = experiment(tmp_path / "experiments", tiny_model)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRAITVEC_CACHE", str(tmp_path / "cache"))
    argv = ["run", *extract_argv(experiments)[1:], "--local-judge", str(tiny_model)]
    argv += ["--questions", "2", "--search-steps", "1", "--max-new-tokens", "4"]
    loads: list[str] = []
    real = traitvec.models.load_model

    def counted(spec, **kwargs):
        loads.append(str(getattr(spec, "model", spec)))
        return real(spec, **kwargs)

    monkeypatch.setattr(traitvec.models, "load_model", counted)
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.index("SMOKE TEST") < err.index("loading ")  # announced before the first model loads
    assert loads  # the first run loads models: the experiment's, and the judge's when it scores
    loads.clear()
    assert main(argv) == 0  # everything current
    assert loads == []
    assert "SMOKE TEST" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# naming traits: a category, a folder path


def test_a_category_named_as_a_trait_says_so_and_lists_its_traits(trait_root: Path, capsys) -> None:
    write_trait(trait_root, "test/hope", POSITIVE, NEGATIVE, definition=DEFINITION, steering=STEERING)
    where = ["--traits-root", str(trait_root), "--experiments-root", str(ROOT / "experiments")]
    for argv in (
        ["traits", "--traits-root", str(trait_root), "test"],
        ["extract", "--experiment", "gemma-3-270m", "--traits", "test", *where],
        ["vet", "--experiment", "gemma-3-270m", "--trait", "test", *where],
    ):
        assert status(argv) == 2, argv
        (line,) = [x for x in errors(capsys) if "category" in x]
        assert "test/hope" in line and "test/optimism" in line and "positive.txt" not in line, line


def test_a_trait_folder_path_is_accepted_wherever_a_trait_is(
    tmp_path: Path, trait_root: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from traitvec.cli import build_parser
    from traitvec.stages.preflight import load_traits

    monkeypatch.chdir(trait_root.parent)
    for given in (str(trait_root / "test/optimism"), "traits/test/optimism/", "./traits/test/optimism"):
        (trait,) = load_traits([given], "traits")
        assert trait.name == "test/optimism"
        assert main(["traits", "--traits-root", "traits", given]) == 0
        assert "test/optimism" in capsys.readouterr().out
        args = build_parser().parse_args(["extract", "--experiment", "e", "--traits", given])
        assert load_traits(args.traits, "traits")[0].name == "test/optimism"
    outside = tmp_path / "elsewhere" / "x"
    write_trait(tmp_path / "elsewhere", "x", POSITIVE, NEGATIVE)
    assert main(["traits", "--traits-root", "traits", str(outside)]) == 2
    assert len(errors(capsys)) == 1


@pytest.mark.parametrize("command", ["extract", "run"])
def test_an_offline_hub_id_is_one_line_and_loads_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, command: str
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: the model is nowhere
    monkeypatch.setenv("TRAITVEC_CACHE", str(tmp_path / "cache"))
    experiments = tmp_path / "experiments"
    (experiments / "e").mkdir(parents=True)
    (experiments / "e" / "config.toml").write_text('model = "org/name"\n')
    argv = [command, *extract_argv(experiments)[1:]]
    argv[argv.index("tiny")] = "e"
    if command == "run":
        argv += ["--no-steering"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines  # no "loading org/name" before the error
    assert "HF_HUB_OFFLINE is set" in lines[0] and "not in the local Hugging Face cache" in lines[0]
