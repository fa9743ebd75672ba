"""traitvec rescore: re-judging saved steering answers with another judge, no model loaded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import DEFINITION, NEGATIVE, POSITIVE, write_trait
from tiny import make_model

import traitvec as tv
from traitvec.cli import main
from traitvec.judge import JudgeScore
from traitvec.judge.openai import OpenAIJudge
from traitvec.judge.scores import gate_coherence
from traitvec.judge.testing import Completion, JudgeServer, KeywordResponder, prompt_text
from traitvec.stages.rescore import compare_judges, pearson, rescore_steering
from traitvec.stages.rounds import rescore_failed


def test_pearson() -> None:
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [6, 4, 2]) == pytest.approx(-1.0)
    assert pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert pearson([1, 2], [1, 2]) is None  # too few pairs
    assert pearson([1, 1, 1], [1, 2, 3]) is None  # a constant side
    with pytest.raises(ValueError, match="paired"):
        pearson([1, 2, 3], [1, 2])


def _doc(trait_means, coherence_means, scores):
    def summary(i):
        return {"trait": {"mean": trait_means[i]}, "coherence": {"mean": coherence_means[i]}}

    return {
        "baseline": summary(0),
        "runs": [{"layer": 6, "coefficient": c, "round": k + 1, **summary(k + 1)} for k, c in enumerate((0.5, 1.0))],
        "prompting_baseline": {**summary(3), "responses": [{"trait": {"score": scores[-1]}, "coherence": None}]},
        "responses": [{"trait": {"score": s}, "coherence": {"score": 50.0}} for s in scores[:-1]],
    }


def test_compare_judges_per_run_differences_and_correlations() -> None:
    old = _doc([10.0, 20.0, 30.0, 40.0], [90.0, 80.0, 70.0, 60.0], [10.0, 20.0, 30.0, None, 50.0])
    new = _doc([15.0, 30.0, 50.0, None], [90.0, 80.0, 70.0, 60.0], [12.0, 25.0, 31.0, 44.0, 60.0])
    comparison = compare_judges(old, new)
    rows = {r["run"]: r for r in comparison["runs"]}
    assert list(rows) == ["baseline", "L6 x +0.5 (round 1)", "L6 x +1 (round 2)", "prompted"]
    assert rows["L6 x +1 (round 2)"]["trait"] == {"old": 30.0, "new": 50.0, "difference": 20.0}
    assert rows["prompted"]["trait"] == {"old": 40.0, "new": None, "difference": None}
    assert comparison["mean_difference"]["trait"]["mean"] == pytest.approx((5 + 10 + 20) / 3)
    assert comparison["mean_difference"]["trait"]["n"] == 3
    assert comparison["mean_difference"]["coherence"]["mean"] == 0.0
    runs, responses = comparison["correlation"]["runs"], comparison["correlation"]["responses"]
    assert runs["trait"] == pytest.approx(pearson([10, 20, 30], [15, 30, 50])) and runs["n_trait"] == 3
    assert runs["coherence"] == pytest.approx(1.0)
    assert responses["n_trait"] == 4  # the unscored old response is left out
    assert responses["trait"] == pytest.approx(pearson([10, 20, 30, 50], [12, 25, 31, 60]))
    assert responses["coherence"] is None and responses["n_coherence"] == 4  # every coherence is 50: constant


# ---------------------------------------------------------------------------------------------- tier 1: a tiny run

QUESTIONS = ["What causes inflation?", "How do glaciers form?", "Why do startups fail?"]
KEY = "sk-test-SECRET-rescore-5150"


class NoiseResponder:
    """Repeatable scores unrelated to the first judge's: a hash of the prompt, 0-100."""

    def __call__(self, request: dict[str, Any]) -> Completion:
        value = int(hashlib.sha256(prompt_text(request).encode()).hexdigest()[:8], 16) % 101
        return Completion.from_probs({str(value): 0.9, "The": 0.1})


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished steering evaluation of test/optimism on a tiny chat model, judged by a keyword judge."""
    root = tmp_path_factory.mktemp("rescore")
    write_trait(root / "traits", "test/optimism", POSITIVE, NEGATIVE, definition=DEFINITION,
                steering={"questions": QUESTIONS})  # fmt: skip
    model = make_model("llama", layers=4, hidden=32, chat=True)
    model.model.save_pretrained(root / "model")
    model.tokenizer.save_pretrained(root / "model")
    (root / "experiments" / "tiny").mkdir(parents=True)
    (root / "experiments" / "tiny" / "config.toml").write_text(
        f'model = "{root / "model"}"\ndtype = "float32"\ndevice = "cpu"\n'
    )
    with JudgeServer(KeywordResponder()) as server:
        tv.run_pipeline(
            "tiny",
            ["test/optimism"],
            extraction=tv.ExtractionSettings(positions=("prefill-mean",), methods=("mean-diff",)),
            steering=tv.SteeringSettings(n_layers=1, questions=3, search_steps=2, max_new_tokens=6),
            judge=lambda: OpenAIJudge("judge-a", base_url=server.base_url, api_key=KEY, cache_path=False),
            traits_root=root / "traits",
            experiments_root=root / "experiments",
        )
    return root


def _results(root: Path) -> dict[str, Any]:
    return json.loads((root / "experiments/tiny/steering/test/optimism/results.json").read_text())


def test_a_finished_run_records_fluency_relevance_free_prompting_baseline_and_guard(finished: Path) -> None:
    from traitvec.fluency import read_answers
    from traitvec.generation import Generation
    from traitvec.models import load_model
    from traitvec.prompting import encode_chat
    from traitvec.stages.baseline import prompting_instruction
    from traitvec.traits import load_trait

    results = _results(finished)
    trait = load_trait("test/optimism", root=finished / "traits")
    prompted = results["prompting_baseline"]
    assert prompted["instruction"] == prompting_instruction(trait) and prompted["placement"] == "system prompt"
    assert [r["question_index"] for r in prompted["responses"]] == [0, 1, 2]
    assert {r["question"] for r in prompted["responses"]} == set(QUESTIONS)  # judged against the plain question
    assert prompted["trait"]["n"] == 3 and "trait_gain" in prompted and prompted["verdict"] in (
        "coherent", "below floor", "not fluent", "too few scored", "unscored"
    )  # fmt: skip
    guard = results["fluency_guard"]
    base = results["baseline"]["fluency"]
    assert guard["margin"] == 1.5 and guard["min_mean_logprob"] == pytest.approx(base["mean_logprob"]["mean"] - 1.5)
    assert guard["repetition_n"] == 3
    for run in results["runs"]:
        assert run["fluency"]["n"] == 3
    # per response: the unsteered model's reading of the exact tokens, recomputed independently here
    loaded = load_model(str(finished / "model"), dtype="float32", device="cpu")
    sample = [r for r in results["responses"] if r["tokens"]][:4]
    generations = [
        Generation(tuple(encode_chat(loaded, r["question"])), tuple(r["tokens"]), tuple(r["tokens"]), r["text"], True)
        for r in sample
    ]
    for r, reading in zip(sample, read_answers(loaded, generations), strict=True):
        assert set(r["fluency"]) == {"mean_logprob", "perplexity", "repetition"}
        assert r["fluency"]["mean_logprob"] == pytest.approx(reading.mean_logprob, abs=1e-5)
        assert r["fluency"]["repetition"] == reading.repetition


def test_rescore_asks_only_the_new_judge_and_never_loads_a_model(
    finished: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import traitvec.models

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("rescore loaded a model")

    monkeypatch.setattr(traitvec.models, "load_model", refuse)
    monkeypatch.setattr(traitvec.models.ModelPool, "get", refuse)
    folder = finished / "experiments/tiny/steering/test/optimism"
    original = (folder / "results.json").read_bytes()
    old = json.loads(original)
    answers = old["responses"] + old["prompting_baseline"]["responses"]
    n_answers, distinct = len(answers), {(r["question"], r["text"]) for r in answers}
    with JudgeServer(KeywordResponder()) as first, JudgeServer(NoiseResponder()) as second:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", first.base_url)  # the old judge's address: must not be used
        roots = ["--traits-root", str(finished / "traits"), "--experiments-root", str(finished / "experiments")]
        judge = ["--judge-model", "judge-b", "--judge-base-url", second.base_url, "--judge-cache", "off"]
        status = main(["rescore", "--experiment", "tiny", "--traits", "test/optimism", *roots, *judge])
        assert status == 0
        assert first.request_count == 0
        # the preflight check, then the trait, coherence and relevance of every distinct answer
        assert second.request_count == 1 + 3 * len(distinct)
    out = capsys.readouterr().out
    assert (folder / "results.json").read_bytes() == original  # the old results are left as they were
    (path,) = (folder / old["run_folder"]).glob("results.rescored-*.json")
    assert str(path) in out and "correlation across runs" in out
    new = json.loads(path.read_text())
    assert new["judge"]["name"] == "judge-b" and new["rescored"]["from_judge"]["name"] == "judge-a"
    assert [r["text"] for r in new["responses"]] == [r["text"] for r in old["responses"]]
    assert [r["fluency"] for r in new["responses"]] == [r["fluency"] for r in old["responses"]]
    assert all(r["trait"]["judge"] == "judge-b" for r in new["responses"] + new["prompting_baseline"]["responses"])
    comparison = new["comparison"]
    labels = [row["run"] for row in comparison["runs"]]
    assert labels[0] == "baseline" and labels[-1] == "prompted" and len(labels) == len(old["runs"]) + 2
    baseline_row = comparison["runs"][0]["trait"]
    assert (
        baseline_row["old"] == old["baseline"]["trait"]["mean"]
        and baseline_row["new"] == new["baseline"]["trait"]["mean"]
    )
    assert baseline_row["difference"] == pytest.approx(baseline_row["new"] - baseline_row["old"])
    assert comparison["correlation"]["responses"]["n_trait"] == n_answers
    assert KEY not in path.read_text() and KEY not in out


class OffTopicResponder:
    """Every answer fluent (coherence 90) and off-topic (relevance 10); trait scores by keyword."""

    def __call__(self, request: dict[str, Any]) -> Completion:
        prompt = prompt_text(request)
        value = 90 if "Score coherence" in prompt else 10 if "Score relevance" in prompt else 30
        return Completion.from_probs({str(value): 1.0})


def _every_answer(results: dict[str, Any]) -> list[dict[str, Any]]:
    return results["responses"] + results["prompting_baseline"]["responses"]


def test_every_coherence_score_of_a_run_goes_through_the_relevance_gate(finished: Path) -> None:
    results = _results(finished)
    answers = _every_answer(results)
    assert {r["round"] for r in results["responses"]} >= {0, 1} and results["prompting_baseline"]["responses"]
    assert results["relevance_gate"] == {"threshold": 50.0, "cap": 50.0}
    for r in answers:  # steered, baseline and prompted alike
        raw, relevance = JudgeScore(**r["coherence_raw"]), JudgeScore(**r["relevance"])
        assert raw.kind == "coherence" and relevance.kind == "relevance"
        assert relevance.score == pytest.approx(KeywordResponder.relevance(r["question"], r["text"]))
        assert raw.score == pytest.approx(KeywordResponder.coherence(r["text"]))
        assert r["coherence"] == gate_coherence(raw, relevance).to_dict()
        assert r["coherence"]["relevance"] == relevance.score
    assert set(results["prompt_hashes"]) == {"trait", "coherence", "relevance"}


def test_rescoring_gates_coherence_with_the_new_judges_relevance(finished: Path) -> None:
    trait = tv.load_trait("test/optimism", root=finished / "traits")
    with JudgeServer(OffTopicResponder()) as server:
        judge = OpenAIJudge("judge-c", base_url=server.base_url, api_key=KEY, cache_path=False)
        outcome = rescore_steering(trait, finished / "experiments" / "tiny", judge)
    try:
        answers = _every_answer(outcome.results)
        assert {r["coherence_raw"]["score"] for r in answers} == {90.0}
        assert {r["relevance"]["score"] for r in answers} == {10.0}
        assert {(r["coherence"]["score"], r["coherence"]["uncapped"]) for r in answers} == {(50.0, 90.0)}
        assert outcome.results["baseline"]["coherence"]["mean"] == 50.0  # the summaries use the gated score
        assert outcome.results["prompting_baseline"]["coherence"]["mean"] == 50.0
    finally:
        outcome.path.unlink()


def _score(kind: str, score: float | None, status: str = "ok", reason: str | None = None) -> JudgeScore:
    return JudgeScore(score, status, "logprobs", kind, reason, 1.0, "hash", "j")  # type: ignore[arg-type]


def test_re_asking_a_failed_relevance_item_gates_its_coherence_again() -> None:
    raw = _score("coherence", 90.0)
    failed = _score("relevance", None, "failed", "HTTP 500")
    response = {
        "question": "What causes inflation?",
        "text": "Bananas.",
        "trait": _score("trait", 20.0).to_dict(),
        "coherence_raw": raw.to_dict(),
        "relevance": failed.to_dict(),
        "coherence": gate_coherence(raw, failed).to_dict(),
    }
    assert response["coherence"]["score"] == 90.0  # unscored relevance: coherence left as it is
    asked: list[tuple[str, str]] = []

    def relevance(questions: Any, answers: Any) -> list[JudgeScore]:
        asked.extend(zip(questions, answers, strict=True))
        return [_score("relevance", 5.0) for _ in questions]

    def never(questions: Any, answers: Any) -> list[JudgeScore]:
        raise AssertionError("an ok item was asked again")

    scorers = {"trait": never, "coherence_raw": never, "relevance": relevance}
    assert rescore_failed([{"round": 0, "configs": [[1, 0.0]], "responses": [response]}], scorers) == 1
    assert asked == [("What causes inflation?", "Bananas.")]
    assert response["relevance"]["score"] == 5.0
    assert (response["coherence"]["score"], response["coherence"]["uncapped"]) == (50.0, 90.0)


def test_rescore_with_an_unreachable_judge_is_one_line_and_writes_nothing(
    finished: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = finished / "experiments/tiny/steering/test/optimism"
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    roots = ["--traits-root", str(finished / "traits"), "--experiments-root", str(finished / "experiments")]
    dead = "http://127.0.0.1:9/v1"  # nothing listens on port 9: connection refused
    judge = ["--judge-model", "judge-b", "--judge-base-url", dead, "--judge-cache", "off"]
    status = main(["rescore", "--experiment", "tiny", "--traits", "test/optimism", *roots, *judge])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert f"judge at {dead} is unreachable" in err[0] and KEY not in err[0]
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before  # no rescored file of failed scores


def test_rescore_without_a_finished_run_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_trait(tmp_path / "traits", "test/optimism", POSITIVE, NEGATIVE, definition=DEFINITION,
                steering={"questions": QUESTIONS})  # fmt: skip
    (tmp_path / "experiments" / "empty").mkdir(parents=True)
    (tmp_path / "experiments" / "empty" / "config.toml").write_text('model = "gemma-3-270m"\n')
    roots = ["--traits-root", str(tmp_path / "traits"), "--experiments-root", str(tmp_path / "experiments")]
    judge = ["--judge-model", "judge-b", "--judge-base-url", "http://127.0.0.1:9", "--judge-cache", "off"]
    status = main(["rescore", "--experiment", "empty", "--traits", "test/optimism", *roots, *judge])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert err[0].startswith("traitvec: error: ") and "no finished steering evaluation of test/optimism" in err[0]
    assert "results.json does not exist" in err[0]
