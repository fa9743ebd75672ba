"""The whole pipeline and scenario vetting, end to end, with a judge served on 127.0.0.1.

Fast tests use a tiny random-init model saved to a folder (a real local model as far as traitvec
is concerned); ``slow`` tests use the embedded models.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EXTERNAL, ROOT, tiny_experiments_root

from traitvec.cli import main
from traitvec.judge.testing import JudgeServer, KeywordResponder

KEY = "sk-test-SECRET-pipeline-4242"


def scored(requests: list[dict]) -> int:
    """How many requests asked for a score (every command also sends one preflight check first)."""
    from traitvec.judge._preflight import CHECK_PROMPT

    return sum(r["messages"][-1]["content"] != CHECK_PROMPT for r in requests)


@pytest.fixture
def judge_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    with JudgeServer(KeywordResponder()) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("TRAITVEC_CACHE", str(tmp_path / "cache"))
        yield server


@pytest.fixture(scope="module")
def tiny_experiments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_experiments_root(tmp_path_factory.mktemp("experiments"))


def run_args(experiments: Path, traits_root: Path, trait: str, *extra: str) -> list[str]:
    return [
        "run",
        "--experiment",
        "tiny",
        "--steer-experiment",
        "tiny",
        "--traits",
        trait,
        "--traits-root",
        str(traits_root),
        "--experiments-root",
        str(experiments),
        "--judge-model",
        "test-judge",
        "--questions",
        "3",
        "--search-steps",
        "2",
        "--max-new-tokens",
        "8",
        *extra,
    ]


def test_pipeline_end_to_end_on_a_tiny_model(judge_env, tiny_experiments: Path, capsys) -> None:
    traits_root = ROOT / "datasets" / "traits"
    assert main(run_args(tiny_experiments, traits_root, "states/optimism")) == 0
    out = capsys.readouterr().out
    assert "states/optimism" in out and "projection gain" in out
    folder = tiny_experiments / "tiny"
    results = json.loads((folder / "steering/states/optimism/results.json").read_text())
    assert results["baseline"]["trait"]["n"] == 3
    assert len(results["runs"]) == 2 * 2  # two candidate layers, two search rounds
    for response in results["responses"]:
        assert set(response) >= {"question", "layer", "coefficient", "text", "trait", "coherence", "projection"}
        assert response["trait"]["mode"] == "logprobs" and response["trait"]["status"] == "ok"
    assert results["judge"]["name"] == "test-judge" and not results["smoke_test"]
    base_coherence = results["baseline"]["coherence"]["mean"]
    floor = results["coherence_floor"]
    assert floor["requested"] == 70
    assert floor["effective"] == (70 if base_coherence >= 70 else pytest.approx(base_coherence - 10))
    for run in results["runs"]:
        assert run["coherent"] == (run["coherence"]["mean"] >= floor["effective"])
    steering = folder / "steering/states/optimism"
    for name in ("results.md", "trait_coherence.png", "heatmap.png", "projection.png"):
        assert (steering / name).read_bytes() == (steering / results["run_folder"] / name).read_bytes() != b""
    assert json.loads((steering / results["run_folder"] / "results.json").read_text()) == results
    assert (folder / "extraction/states/optimism/vectors/mean-diff-prefill-mean.safetensors").is_file()
    written = [p for p in folder.rglob("*") if p.is_file()] + list((Path(os.environ["TRAITVEC_CACHE"])).rglob("*"))
    for path in written:
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    requests, sent = scored(judge_env.requests), len(judge_env.requests)
    assert main(run_args(tiny_experiments, traits_root, "states/optimism")) == 0  # everything current
    assert scored(judge_env.requests) == requests and len(judge_env.requests) == sent + 1  # the check alone


def test_vetting_end_to_end_and_vetted_only_extraction(judge_env, tiny_experiments: Path, capsys) -> None:
    traits_root = ROOT / "datasets" / "traits"
    args = [
        "vet",
        "--experiment",
        "tiny",
        "--trait",
        "beliefs/confidence",
        "--traits-root",
        str(traits_root),
        "--experiments-root",
        str(tiny_experiments),
        "--judge-model",
        "test-judge",
        "--tokens",
        "16",
    ]
    status = main(args)
    assert status in (0, 1)
    out = capsys.readouterr().out
    assert "separation" in out and "positive mean" in out
    report = json.loads((tiny_experiments / "tiny/extraction/beliefs/confidence/vetting.json").read_text())
    assert report["passed"] == (status == 0)
    assert len(report["scenarios"]) == 2 * report["n_pairs"] and len(report["pair_passed"]) == report["n_pairs"]
    pos = [s["score"] for s in report["scenarios"] if s["side"] == "positive" and s["score"] is not None]
    neg = [s["score"] for s in report["scenarios"] if s["side"] == "negative" and s["score"] is not None]
    assert report["separation"] == pytest.approx(sum(pos) / len(pos) - sum(neg) / len(neg))
    low, high = report["separation_ci95"]
    assert low <= report["separation"] <= high
    for entry in report["failing"]:
        assert (entry["side"] == "positive" and (entry["score"] is None or entry["score"] < 50)) or (
            entry["side"] == "negative" and (entry["score"] is None or entry["score"] >= 50)
        )
    if report["n_pairs_passed"] >= 3:
        extract = [
            "extract",
            "--experiment",
            "tiny",
            "--traits",
            "beliefs/confidence",
            "--traits-root",
            str(traits_root),
            "--experiments-root",
            str(tiny_experiments),
            "--vetted-only",
        ]
        assert main(extract) == 0
        meta = json.loads(
            (tiny_experiments / "tiny/extraction/beliefs/confidence/vectors/mean-diff-prefill-mean.json").read_text()
        )
        assert meta["n_pairs"] == report["n_pairs_passed"]


def _pipeline_command(experiments: Path, traits_root: Path, trait: str, cache: Path) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "extraction" / "run_pipeline.py"),
        *run_args(experiments, traits_root, trait, "--judge-cache", str(cache))[1:],
    ]


@pytest.mark.skipif(not EXTERNAL.is_dir(), reason="../shared/external-traits is absent")
def test_killed_pipeline_resumes_with_the_same_results(tmp_path: Path, tiny_experiments: Path) -> None:
    trait = "hum/optimism"
    with JudgeServer(KeywordResponder(), latency=0.05) as server:
        env = dict(
            os.environ, OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY=KEY, TRAITVEC_CACHE=str(tmp_path / "cache")
        )
        reference = tmp_path / "reference"
        subprocess.run(["cp", "-r", str(tiny_experiments), str(reference)], check=True)
        subprocess.run(
            _pipeline_command(reference, EXTERNAL, trait, tmp_path / "ref.sqlite") + ["--judge-concurrency", "1"],
            env=env,
            check=True,
            capture_output=True,
        )
        interrupted = tmp_path / "interrupted"
        subprocess.run(["cp", "-r", str(tiny_experiments), str(interrupted)], check=True)
        command = _pipeline_command(interrupted, EXTERNAL, trait, tmp_path / "run.sqlite") + [
            "--judge-concurrency",
            "1",
        ]
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        runs = interrupted / "tiny/steering" / trait / "runs"
        deadline = time.time() + 300
        progress = None
        while time.time() < deadline and process.poll() is None:
            found = list(runs.glob("*/progress.json"))
            if found and len(json.loads(found[0].read_text())["rounds"]) >= 2:
                progress = found[0]
                break
            time.sleep(0.05)
        assert process.poll() is None and progress is not None, "the run finished before it could be interrupted"
        process.send_signal(signal.SIGKILL)
        process.wait()
        rounds_done = len(json.loads(progress.read_text())["rounds"])
        requests_before = len(server.requests)
        extracted = interrupted / "tiny/extraction" / trait
        before = {p: p.stat().st_mtime_ns for p in extracted.rglob("*") if p.is_file()}
        finished = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        assert "resuming after" in finished.stderr
        # the finished stage was not redone: it wrote nothing (extraction.json still records the run that computed)
        assert {p: p.stat().st_mtime_ns for p in extracted.rglob("*") if p.is_file()} == before
        new_requests = len(server.requests) - requests_before
        total_answers = 3 * (1 + 2 * 2) + 3  # baseline and 2 layers × 2 steps, then the prompting baseline
        assert new_requests <= 3 * (total_answers - 3 * (1 + 2 * (rounds_done - 1))) + 1  # 3 judge items an answer
    ours = json.loads((interrupted / "tiny/steering" / trait / "results.json").read_text())
    theirs = json.loads((reference / "tiny/steering" / trait / "results.json").read_text())
    strip = ("seconds", "usage", "vector", "judge", "finished_at")
    assert {k: v for k, v in ours.items() if k not in strip} == {k: v for k, v in theirs.items() if k not in strip}
    assert not progress.exists()
    assert not [p for p in (interrupted / "tiny").rglob("*") if p.name.startswith(".") and p.suffix == ".tmp"]


def _experiment(root: Path, name: str, extra: str = "") -> str:
    """Another experiment on the tiny model of ``root/tiny`` (its own outputs folder)."""
    (root / name).mkdir(exist_ok=True)
    (root / name / "config.toml").write_text((root / "tiny" / "config.toml").read_text() + extra)
    return name


def test_run_pipeline_from_python_with_settings_objects(tiny_experiments: Path) -> None:
    import traitvec as tv
    from traitvec.judge import make_judge

    traits_root = ROOT / "datasets" / "traits"
    experiment = _experiment(tiny_experiments, "tiny-library")
    extraction = tv.ExtractionSettings(positions=("prefill-mean",), methods=("mean-diff", "probe"))
    steering = tv.SteeringSettings(method="probe", n_layers=1, questions=2, search_steps=2, max_new_tokens=8)
    with JudgeServer(KeywordResponder()) as server:
        made: list[int] = []

        def judge() -> tv.Judge:
            made.append(1)
            return make_judge("test-judge", base_url=server.base_url, api_key=KEY, cache_path=False)

        def run() -> list[tv.TraitRun]:
            return tv.run_pipeline(
                experiment,
                ["states/optimism"],
                extraction=extraction,
                steering=steering,
                judge=judge,
                traits_root=traits_root,
                experiments_root=tiny_experiments,
            )

        (first,) = run()
        requests = scored(server.requests)
        (again,) = run()  # everything current: nothing recomputed, nothing judged again
        assert scored(server.requests) == requests > 0 and made == [1, 1]
    assert isinstance(first, tv.TraitRun) and first.trait == "states/optimism" and first.vetting is None
    assert first.extraction is not None and again.extraction is not None
    folder = tiny_experiments / experiment
    extracted = folder / "extraction/states/optimism"
    assert first.extraction.folder == extracted and again.extraction.recomputed == ()
    assert set(first.extraction.vectors) == {"mean-diff-prefill-mean", "probe-prefill-mean"}
    assert first.extraction.recomputed == (
        "activations/prefill-mean",
        "vectors/mean-diff-prefill-mean",
        "vectors/probe-prefill-mean",
        "evaluation/prefill-mean",
    )
    evaluation = json.loads((extracted / "evaluation.json").read_text())
    assert list(evaluation["positions"]) == ["prefill-mean"]
    results = json.loads((folder / "steering/states/optimism/results.json").read_text())
    assert first.steering == results and again.steering == results
    assert results["settings"]["method"] == "probe" and results["vector"]["method"] == "probe"
    # The one candidate layer: the probe's highest validation Cohen's d within 20-80% of the 4-layer depth.
    metrics = [m for m in evaluation["positions"]["prefill-mean"]["metrics"] if m["method"] == "probe"]
    band = [m for m in metrics if 0.2 <= m["layer"] / 3 <= 0.8]

    def validation(m: dict) -> tuple[float, float, int]:
        d = m["validation"]["cohens_d"]
        return (d if d is not None else -1e9, m["validation"]["auroc"], -m["layer"])

    best = max(band, key=validation)
    assert results["layers"] == [best["layer"]]
    assert results["baseline"]["trait"]["n"] == 2 and len(results["questions"]) == 2
    assert [(r["layer"], r["round"]) for r in results["runs"]] == [(best["layer"], 1), (best["layer"], 2)]
    assert abs(results["runs"][0]["coefficient"]) == 0.5 and results["judge"]["name"] == "test-judge"
    markdown = (folder / "steering/states/optimism/results.md").read_text()
    assert markdown.startswith("# Steering evaluation: states/optimism")


def test_run_pipeline_without_steering_builds_no_judge_and_uses_the_experiment_layers(tiny_experiments: Path) -> None:
    import traitvec as tv

    experiment = _experiment(tiny_experiments, "tiny-layers", "layers = [1, 2]\n")

    def no_judge() -> tv.Judge:
        raise AssertionError("extraction alone must not build the judge")

    (run,) = tv.run_pipeline(
        experiment,
        [tv.load_trait("states/optimism", ROOT / "datasets" / "traits")],
        steering=None,
        judge=no_judge,
        experiments_root=tiny_experiments,
    )
    assert run.steering is None and run.extraction is not None
    methods, positions = ("mean-diff", "probe", "pca"), ("prefill-mean", "last-token")  # the defaults
    assert set(run.extraction.vectors) == {f"{m}-{p}" for m in methods for p in positions}
    folder = tiny_experiments / experiment / "extraction/states/optimism"
    evaluation = json.loads((folder / "evaluation.json").read_text())
    assert evaluation["positions"]["prefill-mean"]["layers"] == [1, 2]
    assert json.loads((folder / "extraction.json").read_text())["settings"]["layers"] == [1, 2]
    assert not (tiny_experiments / experiment / "steering").exists()


def test_vetted_only_without_vetting_names_the_setting(tiny_experiments: Path) -> None:
    import traitvec as tv

    experiment = _experiment(tiny_experiments, "tiny-unvetted")
    with pytest.raises(tv.ConfigError, match=r"run_pipeline\(vetted_only=\) needs .*vetting.json") as info:
        tv.run_pipeline(
            experiment,
            ["beliefs/confidence"],
            steering=None,
            vetted_only=True,
            traits_root=ROOT / "datasets" / "traits",
            experiments_root=tiny_experiments,
        )
    assert info.value.setting == "run_pipeline(vetted_only=)"
