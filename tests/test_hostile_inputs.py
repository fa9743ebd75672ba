"""Hostile inputs to the loaders (issue 14): files outside the root, odd names, huge or deep data, corrupt models.

Each case is a real file (symlinks, FIFOs, sparse files, damaged safetensors) and must end in one
TraitvecError line: from the library (the message) and from the command line (exit 2, one line,
no traceback).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import NEGATIVE, POSITIVE, STEERING, write_trait
from tiny import make_model

from traitvec import ConfigError, ModelError, TraitDataError, load_experiment, load_model, load_trait
from traitvec._io import (
    MAX_JSON_DEPTH,
    JSONError,
    apply_umask,
    atomic_path,
    load_json,
    read_json_text,
    write_json,
    write_text,
)
from traitvec.cli import main
from traitvec.stages.resume import read_json
from traitvec.traits import MAX_LINE_CHARS, MAX_PAIRS, MAX_QUESTION_CHARS, MAX_TRAIT_FILE_BYTES


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("traitvec: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def trait(tmp_path: Path) -> Path:
    """A valid trait folder ``c/t`` under ``tmp_path / "traits"`` (returns the folder)."""
    return write_trait(
        tmp_path / "traits", "c/t", POSITIVE, NEGATIVE, definition="Score it (0-100).", steering=STEERING
    )


def _root(folder: Path) -> Path:
    return folder.parents[1]


# --------------------------------------------------------------------------------------------
# 14.2 files that leave the traits root, or are not regular files


@pytest.mark.parametrize("name", ["definition.txt", "positive.txt", "steering.json", "notes.txt"])
def test_a_symlinked_file_leaving_the_root_is_refused(trait: Path, tmp_path: Path, name: str, capsys) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("api-key: sk-very-secret\n" * len(POSITIVE), encoding="utf-8")
    (trait / name).unlink(missing_ok=True)
    (trait / name).symlink_to(secret)
    with pytest.raises(TraitDataError) as info:
        load_trait("c/t", _root(trait))
    message = str(info.value)
    assert f"{trait / name} is a symlink to {secret}, outside the traits root" in message
    assert "sk-very-secret" not in message
    assert main(["traits", "--traits-root", str(_root(trait)), "c/t"]) == 2
    assert "outside the traits root" in one_error_line(capsys)


def test_a_symlink_to_dev_zero_is_refused(trait: Path) -> None:
    (trait / "definition.txt").unlink()
    (trait / "definition.txt").symlink_to("/dev/zero")
    with pytest.raises(TraitDataError, match="outside the traits root"):
        load_trait("c/t", _root(trait))


def test_a_symlink_inside_the_root_is_followed(trait: Path) -> None:
    shared = _root(trait) / "shared-steering.json"
    shutil.move(trait / "steering.json", shared)
    (trait / "steering.json").symlink_to(shared)
    assert load_trait("c/t", _root(trait)).questions == tuple(STEERING["questions"])


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_non_regular_files_are_refused(trait: Path, kind: str) -> None:
    (trait / "positive.txt").unlink()
    if kind == "fifo":
        os.mkfifo(trait / "positive.txt")
        expected = "is not a regular file"
    else:
        (trait / "positive.txt").mkdir()
        expected = "is a folder, not a file"
    with pytest.raises(TraitDataError, match=expected):
        load_trait("c/t", _root(trait))


def test_a_fifo_that_is_not_trait_data_is_left_alone(trait: Path) -> None:
    os.mkfifo(trait / "pipe")  # never opened: reading it would block forever
    assert load_trait("c/t", _root(trait)).n_pairs == len(POSITIVE)


# --------------------------------------------------------------------------------------------
# 14.3 / 14.13 names


@pytest.mark.parametrize("name", [".", "", "./", "c/.", "c/./t", "c//t", "/"])
def test_names_that_name_no_trait_folder_are_refused(trait: Path, name: str, capsys) -> None:
    with pytest.raises(TraitDataError) as info:
        load_trait(name, _root(trait))
    assert "names no trait folder" in str(info.value) or "would leave the traits root" in str(info.value)
    assert main(["traits", "--traits-root", str(_root(trait)), name]) == 2
    one_error_line(capsys)


def test_a_300_character_trait_name_is_one_line(trait: Path, capsys) -> None:
    name = "c/" + "x" * 300
    with pytest.raises(TraitDataError, match="more than the 255 a file name may have"):
        load_trait(name, _root(trait))
    assert main(["traits", "--traits-root", str(_root(trait)), name]) == 2
    assert "more than the 255 a file name may have" in one_error_line(capsys)


def test_a_300_character_experiment_name_is_one_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(ConfigError, match="at most 255 bytes"):
        load_experiment("e" * 300, tmp_path)
    assert main(["extract", "--experiment", "e" * 300, "--experiments-root", str(tmp_path), "--traits", "c/t"]) == 2
    one_error_line(capsys)


def _experiments(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "experiments", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (outside / "config.toml").write_text('model = "gemma-3-270m"\n', encoding="utf-8")
    return root, outside


def test_an_experiment_folder_symlinked_outside_the_root_is_refused(tmp_path: Path, capsys) -> None:
    root, outside = _experiments(tmp_path)
    (root / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match=f"is a symlink to {outside}, outside the experiments root"):
        load_experiment("linked", root)
    assert main(["extract", "--experiment", "linked", "--experiments-root", str(root), "--traits", "c/t"]) == 2
    assert "outside the experiments root" in one_error_line(capsys)


def test_a_config_toml_symlinked_outside_the_root_is_refused(tmp_path: Path) -> None:
    root, outside = _experiments(tmp_path)
    (root / "e").mkdir()
    (root / "e" / "config.toml").symlink_to(outside / "config.toml")
    with pytest.raises(ConfigError, match="outside the experiments root"):
        load_experiment("e", root)
    (root / "e" / "config.toml").unlink()
    (root / "e" / "config.toml").mkdir()
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_experiment("e", root)


# --------------------------------------------------------------------------------------------
# 14.13 invisible lines, 14.8 sizes


@pytest.mark.parametrize("blank", ["\u200b", "\u200b\u200c\u200d", " \u2060 ", "\ufeff\u200b", "\u3164", "\u2800"])
def test_lines_of_only_invisible_characters_are_blank(tmp_path: Path, blank: str) -> None:
    write_trait(tmp_path, "c/t", POSITIVE[:2] + [blank] + POSITIVE[3:], NEGATIVE)
    with pytest.raises(TraitDataError, match="positive.txt line 3: blank line"):
        load_trait("c/t", tmp_path)


def test_an_invisible_jsonl_prompt_is_blank(tmp_path: Path) -> None:
    folder = tmp_path / "c" / "t"
    folder.mkdir(parents=True)
    (folder / "positive.jsonl").write_text('{"prompt": "Hi?"}\n{"prompt": "\\u200b"}\n', encoding="utf-8")
    (folder / "negative.jsonl").write_text('{"prompt": "Yo?"}\n{"prompt": "Why?"}\n', encoding="utf-8")
    with pytest.raises(TraitDataError, match='positive.jsonl line 2: "prompt" must be a non-empty string'):
        load_trait("c/t", tmp_path)


def test_a_10_mb_line_is_refused(tmp_path: Path) -> None:
    write_trait(tmp_path, "c/t", POSITIVE[:1] + ["word " * 2_000_000] + POSITIVE[2:], NEGATIVE)
    with pytest.raises(TraitDataError) as info:
        load_trait("c/t", tmp_path)
    assert f"positive.txt line 2: 10000000 characters, more than the {MAX_LINE_CHARS}" in str(info.value)


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(trait: Path) -> None:
    with open(trait / "notes.txt", "wb") as handle:  # sparse: no time or disk spent
        handle.truncate(MAX_TRAIT_FILE_BYTES + 1)
    with pytest.raises(TraitDataError, match=f"{MAX_TRAIT_FILE_BYTES + 1} bytes, more than the"):
        load_trait("c/t", _root(trait))


def test_more_pairs_than_the_limit_are_refused(tmp_path: Path) -> None:
    count = MAX_PAIRS + 1
    write_trait(tmp_path, "c/t", [f"p{i}" for i in range(count)], [f"n{i}" for i in range(count)])
    with pytest.raises(TraitDataError, match=f"{count} pairs, more than the {MAX_PAIRS}"):
        load_trait("c/t", tmp_path)


def test_a_huge_steering_question_is_refused(tmp_path: Path) -> None:
    steering = {"questions": ["Short?", "x" * (MAX_QUESTION_CHARS + 1)]}
    write_trait(tmp_path, "c/t", POSITIVE, NEGATIVE, steering=steering)
    with pytest.raises(TraitDataError, match=f'"questions" item 2 has {MAX_QUESTION_CHARS + 1} characters'):
        load_trait("c/t", tmp_path)


# --------------------------------------------------------------------------------------------
# 14.12 JSON shapes


BAD_JSON: dict[str, tuple[str, str]] = {
    "deep": ("[" * 100_000 + "]" * 100_000, f"nested more than {MAX_JSON_DEPTH} levels deep"),
    "deep-but-parsable": ("[" * 150 + "]" * 150, "line 1: arrays and objects nested more than"),
    "long-int": ('{"questions": ["a"], "n": ' + "9" * 5000 + "}", "an integer of 5000 digits"),
    "duplicate": ('{\n  "questions": ["a"],\n  "direction": "positive",\n  "questions": ["b"]\n}', "line 4"),
    "nan": ('{"questions": ["a"], "x": NaN}', "NaN is not a JSON number"),
    "infinite-float": ('{"questions": ["a"], "x": 1e999}', "1e999 is not a JSON number"),
}


@pytest.mark.parametrize("kind", sorted(BAD_JSON))
def test_bad_json_shapes_in_steering_json_are_one_line(tmp_path: Path, kind: str, capsys) -> None:
    text, expected = BAD_JSON[kind]
    write_trait(tmp_path, "c/t", POSITIVE, NEGATIVE, steering=text)
    with pytest.raises(TraitDataError) as info:
        load_trait("c/t", tmp_path)
    assert expected in str(info.value) and "steering.json" in str(info.value)
    assert main(["traits", "--traits-root", str(tmp_path), "c/t"]) == 2
    one_error_line(capsys)


def test_a_duplicate_key_names_the_key_and_both_lines() -> None:
    text = '{\n  "questions": ["a"],\n  "inner": {"questions": 1},\n  "questions": ["b"]\n}'
    with pytest.raises(JSONError) as info:
        read_json_text(text, where="s.json")
    assert str(info.value).startswith('s.json line 4: key "questions" appears twice in one object (first on line 2)')
    assert read_json_text('{"a": {"k": 1}, "b": {"k": 2}}', where="x") == {"a": {"k": 1}, "b": {"k": 2}}


def test_bad_json_in_a_jsonl_row_names_the_row_line(tmp_path: Path) -> None:
    folder = tmp_path / "c" / "t"
    folder.mkdir(parents=True)
    (folder / "positive.jsonl").write_text('{"prompt": "a"}\n{"prompt": "b", "prompt": "c"}\n', encoding="utf-8")
    (folder / "negative.jsonl").write_text('{"prompt": "x"}\n{"prompt": "y"}\n', encoding="utf-8")
    with pytest.raises(TraitDataError, match='positive.jsonl line 2: key "prompt" appears twice'):
        load_trait("c/t", tmp_path)
    (folder / "positive.jsonl").write_text('{"prompt": "a"}\n' + "[" * 50_000 + "\n", encoding="utf-8")
    with pytest.raises(TraitDataError, match="positive.jsonl line 2: arrays and objects nested"):
        load_trait("c/t", tmp_path)


@pytest.mark.parametrize("kind", sorted(BAD_JSON))
def test_state_files_with_bad_json_read_as_absent(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "results.json"
    path.write_text(BAD_JSON[kind][0], encoding="utf-8")
    assert read_json(path) is None  # the stage recomputes instead of raising on every rerun
    with pytest.raises(JSONError):
        load_json(path)


# --------------------------------------------------------------------------------------------
# 14.14 model folders and devices


def _saved_model(tmp_path: Path) -> Path:
    tiny = make_model("llama")
    folder = tmp_path / "model"
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    return folder


class _Evil:
    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (print, ("this pickle ran code",))


def _corrupt(kind: str, folder: Path) -> str:
    """Damage the saved model in ``folder`` one way; return what the error must say."""
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    header = struct.unpack("<Q", data[:8])[0]
    damaged = {
        "truncated": data[: len(data) // 2],
        "random": random.Random(0).randbytes(4096),
        "huge-header": struct.pack("<Q", 1 << 60) + data[8:],
        "empty": b"",
        "bit-flip-header": data[:20] + bytes([data[20] ^ 0xFF]) + data[21:],
        "bad-header-json": data[:8] + b"{" * header + data[8 + header :],
    }
    if kind in damaged:
        weights.write_bytes(damaged[kind])
        return "a .safetensors file is damaged or incomplete"
    weights.unlink()
    torch.save({"model.embed_tokens.weight": _Evil()}, folder / "pytorch_model.bin")
    return "torch.load(weights_only=True) refuses"


@pytest.mark.parametrize(
    "kind", ["truncated", "random", "huge-header", "empty", "bit-flip-header", "bad-header-json", "pickle-only"]
)
def test_damaged_model_folders_are_one_line(tmp_path: Path, kind: str, capsys) -> None:
    folder = _saved_model(tmp_path)
    expected = _corrupt(kind, folder)
    with pytest.raises(ModelError) as info:
        load_model(str(folder))
    message = str(info.value)
    assert expected in message and "\n" not in message and str(folder) in message
    assert "this pickle ran code" not in capsys.readouterr().out


def test_a_bit_flip_in_the_weights_loads_with_another_fingerprint(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TRAITVEC_CACHE", str(tmp_path / "cache"))
    folder = _saved_model(tmp_path)
    before = load_model(str(folder)).fingerprint
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-3] ^= 0x04
    (folder / "model.safetensors").write_bytes(bytes(data))
    assert load_model(str(folder)).fingerprint != before


@pytest.mark.parametrize("name", ["z" * 300, "org/" + "z" * 300, "\x00", "a b/c", "org/name/extra", "/dev/null"])
def test_hostile_model_names_are_one_line(name: str) -> None:
    with pytest.raises(ModelError) as info:
        load_model(name)
    message = str(info.value)
    assert ("unknown model" in message or "has no config.json" in message) and len(message) < 400


def test_devices_this_machine_lacks_are_one_line(tmp_path: Path) -> None:
    folder = _saved_model(tmp_path)
    if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        with pytest.raises(ModelError, match="mps exists only on macOS"):
            load_model(str(folder), device="mps")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA GPU is visible"):
            load_model(str(folder), device_map="cuda")
        with pytest.raises(ModelError, match="no CUDA GPU is visible"):
            load_model(str(folder), device="cuda:1")


def test_device_problems_from_a_config_are_one_line_on_the_command_line(tmp_path: Path, trait: Path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    folder = _saved_model(tmp_path)
    exp = tmp_path / "experiments" / "e"
    exp.mkdir(parents=True)
    (exp / "config.toml").write_text(f'model = "{folder}"\ndevice_map = "cuda"\n', encoding="utf-8")
    argv = ["extract", "--experiment", "e", "--experiments-root", str(exp.parent), "--traits-root"]
    assert main([*argv, str(_root(trait)), "--traits", "c/t"]) == 2
    assert "no CUDA GPU is visible" in one_error_line(capsys)


# --------------------------------------------------------------------------------------------
# 13.2 file modes


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_atomic_writes_honour_the_umask(tmp_path: Path, umask: int, file_mode: int, dir_mode: int) -> None:
    old = os.umask(umask)
    try:
        write_json(tmp_path / "new" / "results.json", {"a": 1})
        write_text(tmp_path / "results.md", "# r\n")
        with atomic_path(tmp_path / "plots" / "heatmap.png", suffix=".png") as tmp:
            tmp.write_bytes(b"png")
        from traitvec.vectors import TraitVector

        vector = TraitVector(
            directions={0: torch.tensor([1.0, 0.0])},
            method="mean-diff",
            position="prefill-mean",
            model={"name": "tiny"},
            trait="c/t",
            trait_hash="0" * 64,
            n_pairs=2,
            raw_norms={0: 1.0},
            activation_norms={0: 1.0},
            spreads={0: 1.0},
        )
        vector.save(tmp_path / "vectors")
        stray = tmp_path / "owner-only"
        stray.write_bytes(b"x")
        os.chmod(stray, 0o600)
        apply_umask(stray)
    finally:
        os.umask(old)
    files = [
        tmp_path / "new" / "results.json",
        tmp_path / "results.md",
        tmp_path / "plots" / "heatmap.png",
        *sorted((tmp_path / "vectors").iterdir()),
        stray,
    ]
    assert {p.name: _mode(p) for p in files} == {p.name: file_mode for p in files}
    assert _mode(tmp_path / "new") == dir_mode and _mode(tmp_path / "plots") == dir_mode
    assert not list(tmp_path.rglob(".*.tmp"))  # no temporary file left behind


def test_written_json_reads_back_strictly(tmp_path: Path) -> None:
    data = {"questions": ["a", "b"], "n": 10**50, "nested": [[[{"k": None}]]]}
    write_json(tmp_path / "x.json", data)
    assert load_json(tmp_path / "x.json") == data
    assert json.loads((tmp_path / "x.json").read_text()) == data
