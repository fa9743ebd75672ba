"""Fuzzing the trait loader and the config loader through the command line (issue 14's acceptance).

A few hundred malformed inputs, generated from a seed by mutating real files (truncation, byte
flips, invalid UTF-8, huge lines, bad JSON and TOML shapes, symlinks, folders in place of files,
unknown keys, wrong types), go through ``traitvec traits`` (the trait loader) and ``traitvec
extract --experiment …`` (the config loader; its model is a path that does not exist, so a run
stops before any model load). Every case must end in exit 0 (valid data, ``traits`` only) or exit
2 with exactly one ``traitvec: error:`` line: never a traceback or an exception out of ``main``,
and never a file written outside the experiment folder. Calls are in-process; two run in a
subprocess to check the real entry point.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DEFINITION, NEGATIVE, POSITIVE, ROOT, STEERING, write_trait

from traitvec.cli import main

SEED = 20261201
TRAIT_CASES = 260
CONFIG_CASES = 160
MISSING_MODEL = "./no-such-model-dir/x/y"  # never loads: not embedded, not a folder, not org/name
CONFIG = f"""model = "{MISSING_MODEL}"
dtype = "float32"
device = "cpu"
chat_template = false
layers = [0, 1]
max_batch_tokens = 256
"""
JSONL_POSITIVE = [
    {"prompt": f"Tell me something hopeful about day {i}.", "system_prompt": "Be upbeat."} for i in range(4)
]
JSONL_NEGATIVE = [
    {"prompt": f"Tell me something bleak about day {i}.", "system_prompt": "Be gloomy."} for i in range(4)
]

Mutation = Callable[[random.Random, Path, Path], str]


# --------------------------------------------------------------------------------------------
# mutations of one file (path) inside a case folder (case); each returns a short description


def _truncate(rng: random.Random, path: Path, case: Path) -> str:
    data = path.read_bytes()
    cut = rng.randrange(0, max(1, len(data)))
    path.write_bytes(data[:cut])
    return f"truncate at {cut}"


def _flip(rng: random.Random, path: Path, case: Path) -> str:
    data = bytearray(path.read_bytes() or b"x")
    spots = [rng.randrange(len(data)) for _ in range(rng.randint(1, 6))]
    for spot in spots:
        data[spot] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    return f"flip bits at {spots}"


def _bad_utf8(rng: random.Random, path: Path, case: Path) -> str:
    data = path.read_bytes()
    junk = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x00", b"\xef\xbb\xbf"])
    spot = rng.randrange(len(data) + 1)
    path.write_bytes(data[:spot] + junk + data[spot:])
    return f"insert {junk!r} at {spot}"


def _huge_line(rng: random.Random, path: Path, case: Path) -> str:
    size = rng.choice([250_000, 1_000_000, 3_000_000])
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    lines[rng.randrange(len(lines))] = "a" * size
    path.write_text("\n".join(lines), encoding="utf-8")
    return f"a {size}-character line"


def _invisible(rng: random.Random, path: Path, case: Path) -> str:
    lines = path.read_text(encoding="utf-8").split("\n")
    index = rng.randrange(len(lines))
    lines[index] = rng.choice(["\u200b", "\u2060\u200b", "\ufeff", " \u3164 ", "\t", "\r"])
    path.write_text("\n".join(lines), encoding="utf-8")
    return f"invisible line {index + 1}"


def _empty(rng: random.Random, path: Path, case: Path) -> str:
    path.write_bytes(rng.choice([b"", b"\n", b"\n\n\n", b"\xef\xbb\xbf"]))
    return "empty"


def _delete(rng: random.Random, path: Path, case: Path) -> str:
    path.unlink()
    return "deleted"


def _as_folder(rng: random.Random, path: Path, case: Path) -> str:
    path.unlink()
    path.mkdir()
    (path / "inner.txt").write_text("x\n", encoding="utf-8")
    return "a folder in its place"


def _symlink(rng: random.Random, path: Path, case: Path) -> str:
    outside = case / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_text("secret line\n" * 6, encoding="utf-8")
    target = rng.choice(
        [outside / "secret.txt", outside, Path("/dev/null"), case / "dangling", Path("/etc/hostname"), path.parent]
    )
    path.unlink()
    path.symlink_to(target)
    return f"symlink to {target}"


def _shuffle_lines(rng: random.Random, path: Path, case: Path) -> str:
    lines = path.read_text(encoding="utf-8").split("\n")
    rng.shuffle(lines)
    path.write_text("\n".join(lines[: rng.randint(1, len(lines))]), encoding="utf-8")
    return "shuffled and cut lines"


def _json_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 10**30, 3.5, 1e308])
    if kind == 3:
        return rng.choice(["", " ", "\u200b", "x" * rng.choice([1, 9000]), "{question} {answer}", "negative"])
    if kind in (4, 5):
        return rng.choice(["Why?", "What causes inflation?"])
    if kind in (6, 7):
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["questions", "eval_prompt", "direction", "x"]): _json_value(rng, depth + 1)}


def _json_shape(rng: random.Random, path: Path, case: Path) -> str:
    """A steering.json (or jsonl row) of a random wrong shape, or one of the strict reader's refusals."""
    special = [
        "[" * 100_000,
        "[" * 120 + "]" * 120,
        '{"questions": ["a"], "n": ' + "7" * 5000 + "}",
        '{"questions": ["a"],\n"questions": ["b"]}',
        '{"questions": ["a"], "x": NaN}',
        '{"questions": ["a"], "x": -Infinity}',
        '{"questions": ["a"]} trailing',
        '"just a string"',
    ]
    if rng.random() < 0.35:
        text = rng.choice(special)
    else:
        value = {"questions": _json_value(rng)} if rng.random() < 0.7 else _json_value(rng)
        if isinstance(value, dict) and rng.random() < 0.5:
            value[rng.choice(["eval_prompt", "direction", "unknown_key", "questions"])] = _json_value(rng)
        text = json.dumps(value)
    if path.suffix == ".jsonl":
        lines = path.read_text(encoding="utf-8").split("\n")
        lines[rng.randrange(len(lines))] = text.replace("\n", " ")
        text = "\n".join(lines)
    path.write_text(text, encoding="utf-8")
    return f"JSON shape {text[:50]!r}"


TRAIT_MUTATIONS: list[Mutation] = [
    _truncate,
    _flip,
    _bad_utf8,
    _huge_line,
    _invisible,
    _empty,
    _delete,
    _as_folder,
    _symlink,
    _shuffle_lines,
    _json_shape,
]


# --------------------------------------------------------------------------------------------
# config mutations


def _toml_value(rng: random.Random) -> str:
    return rng.choice(
        [
            "1",
            "-5",
            "true",
            '""',
            '"auto"',
            '"cuda"',
            '"mps"',
            '"4bit"',
            "[]",
            "[1, 2]",
            '["a"]',
            "{ a = 1 }",
            "1979-05-27T07:32:00Z",
            "3.5",
            "nan",
            '"x/y"',
            '"' + "z" * 300 + '"',
            "[" * 5000 + "]" * 5000,
            '"\\u0000"',
        ]
    )


def _config_key(rng: random.Random, path: Path, case: Path) -> str:
    keys = ["model", "dtype", "device", "device_map", "chat_template", "layers", "layers_path", "revision"]
    keys += ["max_batch_tokens", "quantization", "adapter", "enable_thinking", "unknown_key", "name", "path"]
    key, value = rng.choice(keys), _toml_value(rng)
    lines = [line for line in CONFIG.splitlines() if not line.startswith(f"{key} ")]
    if key != "model" and rng.random() < 0.5:
        lines = [line for line in lines if not line.startswith("model ")] + [f'model = "{MISSING_MODEL}"']
    path.write_text("\n".join([*lines, f"{key} = {value}"]) + "\n", encoding="utf-8")
    return f"{key} = {value[:40]}"


def _model_name(rng: random.Random, path: Path, case: Path) -> str:
    value = rng.choice(
        [
            '"' + "z" * 300 + '"',
            '"org/' + "z" * 300 + '"',
            '"\\u0000"',
            '"a b/c"',
            '"org/name/extra"',
            '"-org/name"',
            '"./"',
            '"/"',
            '"~"',
            '"/dev/null"',
            '"' + str(case) + '"',
            '"\\u200b"',
        ]
    )
    path.write_text(CONFIG.replace(f'"{MISSING_MODEL}"', value), encoding="utf-8")
    return f"model = {value[:40]}"


def _duplicate_key(rng: random.Random, path: Path, case: Path) -> str:
    path.write_text(CONFIG + 'dtype = "bfloat16"\n', encoding="utf-8")
    return "dtype twice"


CONFIG_MUTATIONS: list[Mutation] = [
    _truncate,
    _flip,
    _bad_utf8,
    _huge_line,
    _empty,
    _delete,
    _as_folder,
    _symlink,
    _config_key,
    _config_key,
    _config_key,
    _model_name,
    _duplicate_key,
]


# --------------------------------------------------------------------------------------------
# running the cases


def _snapshot(root: Path, inside: Path | None) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (not following symlinks), except those under ``inside``."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if inside is not None and (here == inside or inside in here.parents):
            dirnames[:] = []
            continue
        for name in filenames:
            info = (here / name).lstat()
            found[str(here / name)] = (info.st_size, info.st_mtime_ns)
    return found


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.err.splitlines()


def _verdict(code: int, err: list[str], *, allow_success: bool) -> str | None:
    """Why this outcome breaks the rule, or ``None`` when it keeps it."""
    text = "\n".join(err)
    if "Traceback" in text:
        return "traceback"
    errors = [line for line in err if line.startswith("traitvec: error:")]
    others = [line for line in err if line and not line.startswith(("traitvec: error:", "traitvec: warning:"))]
    if code == 0 and allow_success and not errors:
        return None
    if code != 2:
        return f"exit {code}"
    if len(errors) != 1:
        return f"{len(errors)} error lines"
    if others:
        return f"other output on stderr: {others[0][:100]}"
    return None


def _kind(line: str, tmp_path: Path) -> str:
    """An error line with paths and numbers taken out: what kind of refusal it is."""
    text = line.removeprefix("traitvec: error: ").replace(str(tmp_path), "")
    return re.sub(r"[0-9]+", "N", re.sub(r"/e[0-9]+/exp/config.toml:?", "", text))[:40]


def _trait_case(base: Path, rng: random.Random) -> tuple[Path, Path, str]:
    case = base
    root = case / "traits"
    if rng.random() < 0.3:
        folder = root / "c" / "t"
        folder.mkdir(parents=True)
        for name, rows in (("positive.jsonl", JSONL_POSITIVE), ("negative.jsonl", JSONL_NEGATIVE)):
            (folder / name).write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
        (folder / "steering.json").write_text(json.dumps(STEERING), encoding="utf-8")
    else:
        folder = write_trait(root, "c/t", POSITIVE, NEGATIVE, definition=DEFINITION, steering=STEERING)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    descriptions = []
    for _ in range(rng.choice([1, 1, 1, 2])):
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink())
        if not files:
            break
        target = rng.choice(files)
        descriptions.append(f"{target.name}: {rng.choice(TRAIT_MUTATIONS)(rng, target, case)}")
    return root, folder, "; ".join(descriptions)


def test_fuzzed_trait_folders_exit_0_or_2_with_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TRAITVEC_CACHE", str(tmp_path / "cache"))
    rng = random.Random(SEED)
    failures, outcomes = [], {0: 0, 2: 0}
    for index in range(TRAIT_CASES):
        case = tmp_path / f"t{index}"
        root, folder, what = _trait_case(case, rng)
        before = _snapshot(tmp_path, None)
        code, err = _run(["traits", "--traits-root", str(root), "c/t"], capsys)
        problem = _verdict(code, err, allow_success=True)
        if _snapshot(tmp_path, None) != before:
            problem = "files written"
        if problem:
            failures.append(f"case {index} ({what}): {problem}: {' | '.join(err)[:300]}")
        outcomes[code] = outcomes.get(code, 0) + 1
        shutil.rmtree(case, ignore_errors=True)
    assert not failures, "\n".join(failures[:20])
    assert outcomes[2] > TRAIT_CASES // 2 and outcomes[0] > 5  # mostly refused, some still valid


def test_fuzzed_experiment_configs_exit_2_with_one_line_and_write_nothing_outside(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("TRAITVEC_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    traits = tmp_path / "traits"
    write_trait(traits, "c/t", POSITIVE, NEGATIVE, definition=DEFINITION, steering=STEERING)
    rng = random.Random(SEED + 1)
    failures, messages = [], set()
    for index in range(CONFIG_CASES):
        experiments = tmp_path / f"e{index}"
        folder = experiments / "exp"
        folder.mkdir(parents=True)
        (folder / "config.toml").write_text(CONFIG, encoding="utf-8")
        what = rng.choice(CONFIG_MUTATIONS)(rng, folder / "config.toml", experiments)
        before = _snapshot(tmp_path, folder)
        argv = ["extract", "--experiment", "exp", "--experiments-root", str(experiments), "--traits-root", str(traits)]
        code, err = _run([*argv, "--traits", "c/t"], capsys)
        problem = _verdict(code, err, allow_success=False)
        if _snapshot(tmp_path, folder if folder.is_dir() and not folder.is_symlink() else None) != before:
            problem = "a file written outside the experiment folder"
        if problem:
            failures.append(f"case {index} ({what}): {problem}: {' | '.join(err)[:300]}")
        messages.update(_kind(line, tmp_path) for line in err if line.startswith("traitvec: error:"))
        shutil.rmtree(experiments, ignore_errors=True)
    assert not failures, "\n".join(failures[:20])
    assert len(messages) > 8, sorted(messages)  # the refusals are specific, not one catch-all message


def test_the_installed_entry_point_reports_one_line(tmp_path: Path) -> None:
    root = tmp_path / "traits"
    folder = write_trait(root, "c/t", POSITIVE, NEGATIVE, steering='{"questions": ["a"],\n"questions": ["b"]}')
    (folder / "definition.txt").symlink_to("/etc/hostname")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for argv, expected in (
        (["traits", "--traits-root", str(root), "c/t"], "outside the traits root"),
        (["traits", "--traits-root", str(root), "c"], "is a category"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "traitvec", *argv], capture_output=True, text=True, env=env, timeout=300
        )
        lines = [line for line in result.stderr.splitlines() if line.startswith("traitvec: error:")]
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert len(lines) == 1 and expected in lines[0], result.stderr
