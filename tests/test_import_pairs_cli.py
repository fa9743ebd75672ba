"""``traitvec import-pairs``: the example KTO and DPO files round-trip through the command line,
malformed rows exit 2 with their line numbers, ``--skip-bad`` imports the rest, and an imported
trait runs through ``traitvec extract`` (answer-mean) and ``traitvec monitor``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from test_preference import DPO, KTO, _expected_kto_pairs, _kto, _loaded_pairs, _rows, _write
from tiny import make_model

from traitvec.capture import POSITIONS
from traitvec.cli import main


def _errors(capsys: pytest.CaptureFixture[str]) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("traitvec: error:")]


@pytest.mark.parametrize("behavior", ["verification_before_action", "intellectual_humility"])
def test_the_kto_example_round_trips_through_the_command_line(tmp_path: Path, behavior: str, capsys) -> None:
    out = tmp_path / "traits" / "agent" / behavior
    code = main(
        ["import-pairs", str(KTO), "--format", "kto", "--behavior", behavior, "--out", str(out), "--holdout", "0"]
    )
    printed = capsys.readouterr().out
    assert code == 0
    expected = _expected_kto_pairs(behavior)
    assert _loaded_pairs(out) == expected
    assert f"{len(expected)} pairs written, 0 held out" in printed
    rows = [r for r in _rows(KTO) if r["behavior"] == behavior]
    positive = sum(r["label"] for r in rows)
    assert (
        f"  behaviour {behavior}: {len(rows)} rows, {positive} positive, {len(rows) - positive} negative, "
        f"{len(expected)} pairs, 0 unpaired"
    ) in printed
    other = ({"verification_before_action", "intellectual_humility"} - {behavior}).pop()
    assert f"  behaviour {other} (not imported):" in printed


def test_the_dpo_example_round_trips_and_holds_out_steering_questions(tmp_path: Path, capsys) -> None:
    out = tmp_path / "traits" / "db" / "careful_sql"
    args = ["import-pairs", str(DPO), "--format", "dpo", "--behavior", "careful_sql", "--out", str(out)]
    assert main([*args, "--holdout", "0"]) == 0
    rows = [r for r in _rows(DPO) if r["behavior"] == "careful_sql"]
    assert _loaded_pairs(out) == [(r["prompt"] + r["chosen"], r["prompt"] + r["rejected"]) for r in rows]
    assert f"{len(rows)} pairs written" in capsys.readouterr().out
    assert main([*args, "--holdout", "0.3", "--seed", "3"]) == 2  # the folder exists now
    assert "--overwrite" in _errors(capsys)[0]
    assert main([*args, "--holdout", "0.3", "--seed", "3", "--overwrite"]) == 0
    steering = json.loads((out / "steering.json").read_text())
    assert len(steering["questions"]) == 2 and "2 steering questions" in capsys.readouterr().out


def test_malformed_rows_exit_2_with_line_numbers_and_skip_bad_imports_the_rest(tmp_path: Path, capsys) -> None:
    good = [_kto(f"Is step {i} safe?", "Let me check first.", True) for i in range(3)]
    good += [_kto(f"Is step {i} safe?", "Yes, go ahead.", False) for i in range(3)]
    bad = ['{"conversations": [', _kto("q", "a", "yes"), {"conversations": "hello", "label": True}]
    path = _write(tmp_path, [*good[:2], bad[0], *good[2:4], bad[1], bad[2], *good[4:]])
    out = tmp_path / "traits" / "agent" / "b"
    args = ["import-pairs", str(path), "--format", "kto", "--behavior", "b", "--out", str(out), "--holdout", "0"]
    assert main(args) == 2
    (line,) = _errors(capsys)
    assert "3 row(s) refused" in line and "line 3: invalid JSON" in line and "line 6:" in line and "line 7:" in line
    assert "--skip-bad" in line and "skip_bad" not in line
    assert not out.exists()
    assert main([*args, "--skip-bad"]) == 0
    printed = capsys.readouterr().out
    assert "3 pairs written" in printed and "3 rows refused" in printed
    assert [ln.split(":")[0].strip() for ln in printed.splitlines() if "refused line" in ln] == [
        "refused line 3",
        "refused line 6",
        "refused line 7",
    ]


@pytest.mark.parametrize(
    ("extra", "flag"),
    [(["--format", "csv"], "--format"), (["--format", "kto", "--holdout", "1.5"], "--holdout")],
)
def test_bad_flags_exit_2_with_one_line_naming_the_flag(tmp_path: Path, capsys, extra, flag) -> None:
    out = tmp_path / "t"
    assert main(["import-pairs", str(KTO), "--behavior", "verification_before_action", "--out", str(out), *extra]) == 2
    (line,) = _errors(capsys)
    assert flag in line and "import_pairs(" not in line
    assert main(["import-pairs", str(tmp_path / "missing.jsonl"), "--format", "kto", "--out", str(out)]) == 2
    (line,) = _errors(capsys)
    assert "is not a file" in line and "missing.jsonl" in line


@pytest.mark.skipif(
    "answer-mean" not in POSITIONS, reason="the answer-mean capture position (w-extract) is not here yet"
)
def test_an_imported_trait_extracts_with_answer_mean_and_is_monitored(tmp_path: Path, capsys) -> None:
    traits = tmp_path / "traits"
    out = traits / "agent" / "verification_before_action"
    args = ["import-pairs", str(KTO), "--format", "kto", "--behavior", "verification_before_action"]
    assert main([*args, "--out", str(out), "--holdout", "0.2"]) == 0
    model = make_model("llama", layers=3, hidden=32, chat=True)
    folder = tmp_path / "model"
    model.model.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    experiments = tmp_path / "experiments"
    (experiments / "tiny").mkdir(parents=True)
    (experiments / "tiny" / "config.toml").write_text(f'model = "{folder}"\ndtype = "float32"\ndevice = "cpu"\n')
    common = ["--experiment", "tiny", "--experiments-root", str(experiments), "--traits-root", str(traits)]
    trait = "agent/verification_before_action"
    assert main(["extract", *common, "--traits", trait, "--position", "answer-mean", "--methods", "mean-diff"]) == 0
    capsys.readouterr()
    vectors = experiments / "tiny" / "extraction" / trait / "vectors"
    assert (vectors / "mean-diff-answer-mean.safetensors").is_file()
    texts = tmp_path / "held.jsonl"
    rows = [r for r in _rows(KTO) if r["behavior"] == "verification_before_action"]
    texts.write_text("".join(json.dumps({"messages": r["conversations"]}) + "\n" for r in rows), encoding="utf-8")
    assert main(["monitor", *common, "--traits", trait, "--input", str(texts)]) == 0
    document = json.loads((experiments / "tiny" / "monitor" / "held" / "projections.json").read_text())
    assert document["vectors"][trait]["position"] == "answer-mean" and len(document["texts"]) == len(rows)
    first = document["texts"][0]
    assert first["span"][1] - first["span"][0] < len(first["ids"])  # the summary covers the answer only


def test_the_command_runs_as_a_module_without_a_traceback(tmp_path: Path) -> None:
    out = tmp_path / "x"
    result = subprocess.run(
        [sys.executable, "-m", "traitvec", "import-pairs", str(KTO), "--format", "kto", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert "several behaviours" in line and "--behavior is not set" in line and not out.exists()
