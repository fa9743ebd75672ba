"""The steering evaluation's numbers and files: keys, resumption, runs, selection, intervals, plots.

Tier 0 tests build recorded rounds by hand (plain data, no model); tier 1 tests steer a tiny
random-init model saved to a folder, judged by the real :class:`JudgeServer` on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import DEFINITION, NEGATIVE, POSITIVE, write_trait
from tiny import make_model

import traitvec as tv
from traitvec.cli import main
from traitvec.judge import JudgeScore
from traitvec.judge.openai import OpenAIJudge
from traitvec.judge.testing import Completion, Fault, JudgeServer, KeywordResponder, ScriptedResponder, prompt_text
from traitvec.models import ModelPool
from traitvec.render.markdown import format_results
from traitvec.render.plots import floor_lines, heatmap_cells, heatmap_limit, plot_steering
from traitvec.render.text import steering_table
from traitvec.stages.layout import OutputLayout
from traitvec.stages.resume import read_if_current
from traitvec.stages.runs import list_runs, progress_problem
from traitvec.stages.search import coherence_verdict, is_coherent, response_summary, search
from traitvec.stages.selection import held_out_estimate, question_folds, selection_record
from traitvec.stages.steer_summary import best_run, run_summaries
from traitvec.stats import mean_ci

KEY = "sk-test-SECRET-steering-7777"

# ---------------------------------------------------------------------------------------------- tier 0


def judged(score: float | None, kind: str = "trait", status: str | None = None) -> dict[str, Any]:
    status = status or ("ok" if score is not None else "failed")
    return JudgeScore(
        score if status == "ok" else None,
        status,
        "logprobs",
        kind,
        None if status == "ok" else "boom",
        0.9,
        "h-" + kind,
        "j",
    ).to_dict()  # type: ignore[arg-type]


def response(
    qi: int,
    layer: int | None,
    coefficient: float,
    trait: float | None,
    coherence: float | None,
    *,
    sample: int = 0,
    projection: float | None = None,
    layers: tuple[int, ...] = (3, 5),
) -> dict[str, Any]:
    projections = None if projection is None else {str(layer_): projection for layer_ in layers}
    return {
        "question": f"q{qi}",
        "question_index": qi,
        "sample": sample,
        "layer": layer if coefficient else None,
        "coefficient": coefficient,
        "text": "an answer",
        "tokens": [1, 2],
        "stopped": True,
        "trait": judged(trait, "trait"),
        "coherence": judged(coherence, "coherence"),
        "projection": None if projections is None or not coefficient else projections[str(layer)],
        "projections": projections,
    }


def test_one_ok_coherence_score_of_ten_is_too_few_to_pass_the_floor() -> None:
    responses = [response(0, 3, 1.0, 50, 95)] + [response(i, 3, 1.0, 50, None) for i in range(1, 10)]
    assert response_summary(responses)["coherence"]["mean"] == 95  # the ok one is high...
    assert coherence_verdict(responses, 70) == "too few scored"  # ...but one of ten says nothing
    assert not is_coherent(responses, 70)
    eight = [response(i, 3, 1.0, 50, 80) for i in range(8)] + [response(i, 3, 1.0, 50, None) for i in (8, 9)]
    assert coherence_verdict(eight, 70) == "coherent" and coherence_verdict(eight, 85) == "below floor"
    assert coherence_verdict(eight, 70, min_scored=0.9) == "too few scored"
    assert coherence_verdict([response(0, 3, 1.0, 50, None)], 0) == "unscored"


def test_a_run_whose_trait_scores_mostly_failed_does_not_count() -> None:
    """Coherence scored on every answer, the trait on 4 of 10: the run's gain rests on 4 answers."""
    responses = [response(i, 3, 1.0, 90 if i < 4 else None, 80) for i in range(10)]
    assert coherence_verdict(responses, 70) == "too few scored" and not is_coherent(responses, 70)
    assert coherence_verdict(responses, 70, min_scored=0.4) == "coherent"


def test_intervals_count_each_question_once_when_sampling() -> None:
    rng = random.Random(3)
    scores = {(q, s): rng.uniform(0, 100) for q in range(4) for s in range(5)}
    responses = [response(q, 3, 1.0, scores[q, s], 90, sample=s) for q in range(4) for s in range(5)]
    summary = response_summary(responses)["trait"]
    per_question = [sum(scores[q, s] for s in range(5)) / 5 for q in range(4)]
    mean, ci = mean_ci(per_question)
    assert summary["n"] == 20 and summary["n_questions"] == 4
    assert summary["mean"] == pytest.approx(mean)
    assert summary["ci95"] == pytest.approx([max(0, ci[0]), min(100, ci[1])])
    naive = mean_ci(scores.values())[1]  # 20 "independent" values: too narrow
    assert naive[1] - naive[0] < summary["ci95"][1] - summary["ci95"][0]


def _rounds(baseline: list[dict[str, Any]], *runs: tuple[int, float, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rounds = [{"round": 0, "configs": [[3, 0.0]], "responses": baseline}]
    for number, (layer, coefficient, responses) in enumerate(runs, start=1):
        rounds.append({"round": number, "configs": [[layer, coefficient]], "responses": responses})
    return rounds


def test_gains_are_paired_by_question_and_sign_adjusted_for_negative_traits() -> None:
    baseline = [response(q, None, 0.0, 40 + q, 90, projection=1.0 + q) for q in range(3)]
    steered = [response(q, 3, -2.0, 20 + 2 * q, 90, projection=0.5 + q) for q in range(3)]
    rounds = _rounds(baseline, (3, -2.0, steered))
    (up,) = run_summaries(rounds, lambda layer: 2.0, +1.0, 50)
    (down,) = run_summaries(rounds, lambda layer: 2.0, -1.0, 50)
    per_question = [(20 + 2 * q) - (40 + q) for q in range(3)]  # -20, -19, -18
    assert up["trait_gain"] == pytest.approx(-19) and down["trait_gain"] == pytest.approx(19)
    assert down["trait_gain_ci95"] == pytest.approx([-x for x in reversed(mean_ci(per_question)[1])])
    # The projection fell by 0.5 (a quarter of the spread) on every question: for a negative trait
    # that is movement in the steered direction, a positive gain, as the trait gain is.
    assert down["projection_gain"] == pytest.approx(0.25) and up["projection_gain"] == pytest.approx(-0.25)
    assert down["verdict"] == "coherent" and down["n_questions_paired"] == 3


def _noise_rounds(rng: random.Random, n_questions: int = 20, n_runs: int = 12) -> list[dict[str, Any]]:
    """A baseline and ``n_runs`` runs whose trait scores are pure noise: steering changes nothing."""

    def answers(layer: int | None, coefficient: float) -> list[dict[str, Any]]:
        return [response(q, layer, coefficient, rng.gauss(50, 20), 90) for q in range(n_questions)]

    return _rounds(
        answers(None, 0.0),
        *[(3 + i % 2, 0.5 * (1 + i // 2), answers(3 + i % 2, 0.5 * (1 + i // 2))) for i in range(n_runs)],
    )


def test_cross_fitted_choice_is_unbiased_where_the_in_sample_best_is_optimistic() -> None:
    rng = random.Random(12345)
    in_sample, held_out = [], []
    for replicate in range(150):
        rounds = _noise_rounds(rng)
        runs = run_summaries(rounds, lambda layer: 1.0, 1.0, 50)
        in_sample.append(best_run(runs)["trait_gain"])
        estimate = held_out_estimate(rounds, selection_record(20, replicate), 1.0, 50)
        assert estimate["n_questions"] == 20  # every question held out exactly once
        held_out.append(estimate["trait_gain"])
    assert sum(in_sample) / len(in_sample) > 6  # the max of 12 noisy gains: optimistic
    assert abs(sum(held_out) / len(held_out)) < 2  # truth 0 (one replicate's s.e. is about 6)


def test_held_out_estimate_pools_the_test_half_of_each_fold() -> None:
    baseline = [response(q, None, 0.0, 50, 90) for q in range(6)]
    strong = [response(q, 3, 1.0, 60 if q in (0, 1, 3) else 50, 90) for q in range(6)]  # +10 on 0, 1, 3 only
    weak = [response(q, 3, 0.5, 52, 80) for q in range(6)]  # +2 everywhere
    rounds = _rounds(baseline, (3, 0.5, weak), (3, 1.0, strong))
    selection = {"folds": [{"tune": [0, 1, 3], "test": [2, 4, 5]}, {"tune": [2, 4, 5], "test": [0, 1, 3]}]}
    estimate = held_out_estimate(rounds, selection, 1.0, 50)
    first, second = estimate["folds"]
    assert first["chosen"] == {"layer": 3, "coefficient": 1.0, "round": 2}  # tune gain 10 > 2
    assert first["tune_gain"] == pytest.approx(10) and first["test_gain"] == pytest.approx(0)
    assert second["chosen"] == {"layer": 3, "coefficient": 0.5, "round": 1}  # tune gain 2 > 0
    assert second["tune_gain"] == pytest.approx(2) and second["test_gain"] == pytest.approx(2)
    pooled = [0.0, 0.0, 0.0, 2.0, 2.0, 2.0]
    assert estimate["trait_gain"] == pytest.approx(1.0)  # the in-sample best (strong) claims +5
    assert best_run(run_summaries(rounds, lambda layer: 1.0, 1.0, 50))["trait_gain"] == pytest.approx(5)
    assert estimate["ci95"] == pytest.approx(list(mean_ci(pooled)[1]))
    assert estimate["n_questions"] == 6 and estimate["coherence"] == pytest.approx((3 * 90 + 3 * 80) / 6)
    # A fold whose tune half has no coherent run holds out nothing, and says so.
    none = held_out_estimate(rounds, selection, 1.0, 95)
    assert none["trait_gain"] is None and none["n_questions"] == 0 and "no run was coherent" in none["note"]


def test_question_folds_partition_the_questions_and_depend_on_the_seed() -> None:
    folds = question_folds(7, 0)
    assert sorted(folds[0]["tune"] + folds[0]["test"]) == list(range(7))
    assert folds[1] == {"tune": folds[0]["test"], "test": folds[0]["tune"]}
    assert question_folds(7, 0) == folds and question_folds(7, 1) != folds
    assert question_folds(1, 0) == [] and len(folds[0]["tune"]) == 4


def test_a_resumed_search_redoes_rounds_that_no_longer_follow_from_rescored_items() -> None:
    baseline = [response(q, None, 0.0, 50, 90) for q in range(3)]
    # Round 1 at +0.5 was recorded while the judge failed on its coherence: "unscored", so the
    # search halved to 0.25 for round 2. Its items were then re-scored (coherent): round 2 must be
    # redone at 1.0, not replayed.
    round1 = [response(q, 3, 0.5, 60, 90) for q in range(3)]
    recorded = {"round": 2, "configs": [[3, 0.25]], "responses": [response(q, 3, 0.25, 55, 90) for q in range(3)]}
    rounds = _rounds(baseline, (3, 0.5, round1)) + [recorded]
    asked: list[list[tuple[int, float]]] = []

    def run_round(configs: list[tuple[int, float]], number: int) -> dict[str, Any]:
        asked.append(configs)
        return {
            "round": number,
            "configs": [list(c) for c in configs],
            "responses": [response(q, 3, configs[0][1], 70, 90) for q in range(3)],
        }

    checkpoints: list[int] = []
    search(
        rounds,
        [3],
        start=0.5,
        sign=1.0,
        floor=50,
        steps=2,
        run_round=run_round,
        checkpoint=lambda done: checkpoints.append(len(done)),
    )
    assert asked == [[(3, 1.0)]] and [r["configs"] for r in rounds] == [[[3, 0.0]], [[3, 0.5]], [[3, 1.0]]]
    assert checkpoints == [2, 3]  # the stale round was dropped (and checkpointed) before redoing it


def _results_doc(runs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    doc = {
        "trait": "test/optimism",
        "steer_model": {"name": "tiny"},
        "layers": [3, 5],
        "baseline": {"trait": {"mean": 40.0}, "coherence": {"mean": 30.0}},
        "coherence_floor": {"requested": 70.0, "effective": 20.0, "note": "under"},
        "runs": runs,
        "best": best_run(runs),
        "held_out": {"folds": []},
    }
    return {**doc, **extra}


def _run(layer: int, coefficient: float, gain: float | None, verdict: str, projection: float = 0.1) -> dict[str, Any]:
    return {
        "layer": layer,
        "coefficient": coefficient,
        "trait_gain": gain,
        "verdict": verdict,
        "coherent": verdict == "coherent",
        "trait": {"mean": None if gain is None else 40 + gain},
        "coherence": {"mean": 50.0},
        "projection_gain": projection,
        "projection_gain_ci95": [projection - 0.05, projection + 0.05],
    }


def test_the_coherence_panel_draws_the_floor_the_search_used() -> None:
    assert floor_lines(_results_doc([])) == [(20.0, "floor used 20"), (70.0, "requested floor 70")]
    same = _results_doc([], coherence_floor={"requested": 70.0, "effective": 70.0, "note": None})
    assert floor_lines(same) == [(70.0, "floor used 70")]


def test_heatmap_scale_fits_the_data_and_unscored_cells_are_not_incoherent(tmp_path: Path) -> None:
    runs = [
        _run(3, 0.5, 2.25, "coherent"),
        _run(3, 1.0, -3.5, "below floor"),
        _run(5, 0.5, None, "unscored"),
        _run(5, 1.0, 1.0, "too few scored"),
    ]
    doc = _results_doc(runs, held_out={"folds": [{"chosen": {"layer": 3, "coefficient": 1.0}}]})
    coefficients, cells = heatmap_cells(doc, [3, 5])
    by_place = {(c.row, c.column): c for c in cells}
    assert coefficients == [0.5, 1.0] and heatmap_limit(cells) == 3.5
    assert by_place[0, 0].label == "+2.2" and by_place[0, 0].chosen == "in-sample"  # one decimal; the best
    assert by_place[0, 1].label == "-3.5\nincoherent" and by_place[0, 1].hatched and by_place[0, 1].chosen == "held-out"
    assert by_place[1, 0].label == "unscored" and not by_place[1, 0].hatched and by_place[1, 0].value is None
    assert by_place[1, 1].label == "+1.0\ntoo few scored" and not by_place[1, 1].hatched
    assert not any("incoh" in c.label for c in cells if c.value is None)
    written = plot_steering(doc, tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png")
    assert [p.read_bytes()[:8] for p in written] == [b"\x89PNG\r\n\x1a\n"] * 3


def test_results_md_leads_with_held_out_and_flags_an_indistinguishable_best() -> None:
    runs = [_run(3, 0.5, 2.0, "coherent")]
    runs[0]["trait_gain_ci95"] = [-1.0, 5.0]
    runs[0]["trait"] = {"mean": 42.0, "ci95": [38.0, 46.0], "n": 3, "n_failed": 0, "n_abstained": 0}
    runs[0]["coherence"]["mean"] = 50.0
    doc = _results_doc(runs, **_md_fields())
    doc["held_out"] = {
        "trait_gain": 1.5,
        "ci95": [-2.0, 5.0],
        "n_questions": 4,
        "coherence": 48.0,
        "folds": [{"chosen": {"layer": 3, "coefficient": 0.5}}, {"chosen": None}],
        "note": "",
    }
    text = format_results(doc)
    held = text.index("**Held-out gain: +1.5**")
    assert held < text.index("| layer |") < text.index("**In-sample best")
    assert "not distinguishable from baseline" in text[held : text.index("\n", held)]
    assert "**Not distinguishable from baseline**: its gain's 95% interval [-1.0, +5.0] contains 0" in text
    runs[0]["trait_gain_ci95"] = [0.5, 3.5]
    assert "Not distinguishable" not in format_results(doc)
    table = steering_table([("test/optimism", doc)])
    header, _, row = table.splitlines()
    assert re.split(r"\s{2,}", header)[:3] == ["trait", "held-out gain [95% CI]", "in-sample best: layer"]
    assert re.split(r"\s{2,}", row)[:3] == ["test/optimism", "+1.5 [-2.0, +5.0]", "3"]


def _md_fields() -> dict[str, Any]:
    base = {"trait": {"mean": 40.0, "n": 3, "n_failed": 0, "n_abstained": 0}, "coherence": {"mean": 30.0}}
    return {
        "baseline": base,
        "vector": {"method": "mean-diff", "position": "prefill-mean", "extracted_on": {"name": "tiny"}},
        "direction": "positive",
        "judge": {"name": "j"},
        "settings": {"samples": 1, "min_scored": 0.8},
        "questions": ["a", "b", "c"],
        "responses": [],
        "scoring": {"n_items": 6, "n_failed": 0, "n_abstained": 0, "failed_fraction": 0.0, "last_error": None},
    }


def test_results_md_of_a_failed_judge_never_advises_lowering_the_floor() -> None:
    runs = [_run(3, 0.5, None, "unscored")]
    runs[0]["trait"] = {"mean": None, "ci95": None, "n": 3, "n_failed": 3, "n_abstained": 0}
    doc = _results_doc(runs, **_md_fields())
    doc["baseline"]["trait"]["n_failed"] = 3
    doc["scoring"] = {
        "n_items": 12,
        "n_failed": 12,
        "n_abstained": 0,
        "failed_fraction": 1.0,
        "last_error": "connection error (ConnectError)",
    }
    doc["status"] = "judge failed"
    text = format_results(doc)
    assert "**The judge failed** on 12 of 12 items (last error: connection error (ConnectError))" in text
    assert "lower the coherence floor" not in text and "| unscored |" in text


def test_read_if_current_warns_naming_a_corrupt_or_misshapen_file(tmp_path: Path, caplog) -> None:
    path = tmp_path / "progress.json"
    path.write_bytes(b"\x00\xff\xfe garbage \x89")
    with caplog.at_level(logging.WARNING, logger="traitvec"):
        assert read_if_current(path, "k") is None
    assert f"{path} is not " in caplog.text and "UTF-8" in caplog.text and "recomputing" in caplog.text
    caplog.clear()
    path.write_text(json.dumps({"inputs_key": "k", "rounds": "not a list"}))
    with caplog.at_level(logging.WARNING, logger="traitvec"):
        assert read_if_current(path, "k", validate=progress_problem) is None
    assert f"{path} has the expected inputs key but a wrong structure ('rounds' is not a non-empty list)" in caplog.text
    path.write_text(json.dumps({"inputs_key": "other", "rounds": "not a list"}))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="traitvec"):
        assert read_if_current(path, "k", validate=progress_problem) is None  # another key: stale, no warning
    assert caplog.text == ""


# ---------------------------------------------------------------------------------------------- tier 1

QUESTIONS = ["What causes inflation?", "How do glaciers form?", "Why do startups fail?"]
EXTRACTION = tv.ExtractionSettings(positions=("prefill-mean",), methods=("mean-diff",))


class NoiseResponder:
    """Scores that are pure (but repeatable) noise: a hash of the prompt, 0–100."""

    def __call__(self, request: dict[str, Any]) -> Completion:
        value = int(hashlib.sha256(prompt_text(request).encode()).hexdigest()[:8], 16) % 101
        return Completion.from_probs({str(value): 0.9, "The": 0.05, "I": 0.05})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two traits, two tiny models of one shape (folders ``model-a``, ``model-b``), and experiment ``tiny``
    (model A) whose extraction is done once; each test steers its own experiment (``--steer-experiment``)."""
    root = tmp_path_factory.mktemp("steering")
    for name in ("test/optimism", "test/hope"):
        write_trait(root / "traits", name, POSITIVE, NEGATIVE, definition=DEFINITION, steering={"questions": QUESTIONS})
    for letter, seed in (("a", 0), ("b", 1)):
        model = make_model("llama", layers=4, hidden=32, seed=seed, chat=True)
        model.model.save_pretrained(root / f"model-{letter}")
        model.tokenizer.save_pretrained(root / f"model-{letter}")
    experiment(root, "tiny")
    tv.run_pipeline(
        "tiny",
        ["test/optimism", "test/hope"],
        extraction=EXTRACTION,
        steering=None,
        traits_root=root / "traits",
        experiments_root=root / "experiments",
    )
    return root


def experiment(root: Path, name: str, model: str = "a") -> str:
    folder = root / "experiments" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text(f'model = "{root / f"model-{model}"}"\ndtype = "float32"\ndevice = "cpu"\n')
    return name


def judge_for(server: JudgeServer, cache: Path | None = None) -> OpenAIJudge:
    return OpenAIJudge(
        "test-judge", base_url=server.base_url, api_key=KEY, cache_path=cache or False, max_retries=0, concurrency=1
    )


def steer(
    root: Path,
    steer_experiment: str,
    judge: Any,
    traits: tuple[str, ...] = ("test/optimism",),
    *,
    own: bool = False,
    batch_traits: bool = True,
    **settings: Any,
) -> list[tv.TraitRun]:
    """Extract on ``tiny`` and steer ``steer_experiment`` (with ``own``: extract on it and steer it, one experiment)."""
    options = {"n_layers": 1, "questions": 3, "search_steps": 2, "max_new_tokens": 6, **settings}
    return tv.run_pipeline(
        steer_experiment if own else "tiny",
        list(traits),
        steer_experiment=None if own else steer_experiment,
        extraction=EXTRACTION,
        steering=tv.SteeringSettings(**options),
        judge=lambda: judge,
        traits_root=root / "traits",
        experiments_root=root / "experiments",
        batch_traits=batch_traits,
    )


class Interrupting:
    """A real judge that raises KeyboardInterrupt (as a user's Ctrl-C would) at its ``after + 1``-th trait call."""

    def __init__(self, judge: OpenAIJudge, after: int) -> None:
        self.judge, self.after, self.calls = judge, after, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.judge, name)

    def score_trait(self, trait: tv.Trait, questions: Any, answers: Any) -> list[JudgeScore]:
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return self.judge.score_trait(trait, questions, answers)


class PassesChecks:
    """A judge that answers the one preflight check and plays ``inner`` for every score request."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, request: dict[str, Any]) -> Any:
        from traitvec.judge._preflight import CHECK_PROMPT

        if request["messages"][-1]["content"] == CHECK_PROMPT:
            return KeywordResponder()(request)
        return self.inner(request)


def scored(server: JudgeServer) -> int:
    """Requests that asked for a score (each run_pipeline also sends its judge's one preflight check)."""
    from traitvec.judge._preflight import CHECK_PROMPT

    return sum(r["messages"][-1]["content"] != CHECK_PROMPT for r in list(server.requests))


def steering_dir(root: Path, steer_experiment: str, trait: str = "test/optimism") -> Path:
    return root / "experiments" / steer_experiment / "steering" / trait


def test_another_steer_experiment_is_current_on_rerun_and_progress_carries_its_model(world: Path) -> None:
    name = experiment(world, "steer-other")
    with JudgeServer(KeywordResponder()) as server:
        with pytest.raises(KeyboardInterrupt):
            steer(world, name, Interrupting(judge_for(server), after=1))
        (progress,) = steering_dir(world, name).glob("runs/*/progress.json")
        recorded = json.loads(progress.read_text())
        assert recorded["steer_model"] == ModelPool().model_key(tv.load_experiment(name, world / "experiments"))
        assert len(recorded["rounds"]) == 1  # the baseline
        (first,) = steer(world, name, judge_for(server))
        requests = scored(server)
        (again,) = steer(world, name, judge_for(server))  # a new judge, no cache: a rerun would ask again
        assert scored(server) == requests
    assert again.steering == first.steering and first.steering["status"] == "complete"
    assert first.steering["steer_model_key"] == recorded["steer_model"]
    settings = first.steering["settings"]  # resolved: the vector's position and the layers searched
    assert settings["position"] == first.steering["vector"]["position"] == "prefill-mean"
    assert settings["layers"] == first.steering["layers"] and len(settings["layers"]) == 1
    hashes = {r[kind]["prompt_hash"] for r in first.steering["responses"] for kind in ("trait", "coherence")}
    assert sorted(hashes) == sorted(h for kind in ("trait", "coherence") for h in first.steering["prompt_hashes"][kind])
    assert set(first.steering["prompt_hashes"]) == {"trait", "coherence", "relevance"}


def test_the_judge_key_covers_mode_host_and_min_mass_and_not_what_was_scored_before(trait_root: Path) -> None:
    from traitvec.stages.steer import judge_key

    write_trait(trait_root, "test/calm", POSITIVE, NEGATIVE, definition=DEFINITION.replace("optimism", "calm"))
    trait, other = tv.load_trait("test/optimism", trait_root), tv.load_trait("test/calm", trait_root)
    with JudgeServer(KeywordResponder()) as server, JudgeServer(KeywordResponder()) as elsewhere:
        judge = judge_for(server)
        key = judge_key(judge, trait)
        judge.score_trait(other, ["q"], ["a calm answer"])  # another trait scored first changes nothing
        assert judge_key(judge, trait) == key == judge_key(judge_for(server), trait)
        variants = [
            OpenAIJudge("test-judge", base_url=elsewhere.base_url, api_key=KEY, cache_path=False),
            OpenAIJudge("test-judge", base_url=server.base_url, api_key=KEY, cache_path=False, min_mass=0.6),
            OpenAIJudge("test-judge", base_url=server.base_url, api_key=KEY, cache_path=False, logprobs=False),
            OpenAIJudge("other-judge", base_url=server.base_url, api_key=KEY, cache_path=False),
        ]
        keys = [judge_key(v, trait) for v in variants]
    assert all(k != key for k in keys) and len({json.dumps(k, sort_keys=True) for k in keys}) == 4
    assert KEY not in json.dumps(key)


def test_a_resumed_run_never_mixes_two_models_answers(world: Path, caplog) -> None:
    name = experiment(world, "steer-swap", model="a")
    with JudgeServer(KeywordResponder()) as server:
        with pytest.raises(KeyboardInterrupt):
            steer(world, name, Interrupting(judge_for(server), after=2))  # baseline and round 1 on model A
        experiment(world, name, model="b")  # the same experiment now names another model
        before = scored(server)
        with caplog.at_level(logging.INFO, logger="traitvec"):
            (run,) = steer(world, name, judge_for(server))
        # every round of model B (baseline, two search rounds, the prompting baseline) generated and judged anew
        assert scored(server) - before == (3 + 1) * 3 * 3  # rounds × questions × (trait, coherence, relevance)
    assert "resuming" not in caplog.text
    assert run.steering["steer_model"]["name"] == str(world / "model-b")
    assert len(list(steering_dir(world, name).glob("runs/*"))) == 2  # A's unfinished run is kept apart


def test_two_traits_resume_in_the_second_and_are_current_alone_or_in_another_order(world: Path, caplog) -> None:
    name = experiment(world, "steer-two")
    traits = ("test/optimism", "test/hope")
    with JudgeServer(KeywordResponder()) as server:
        with pytest.raises(KeyboardInterrupt):
            # the 1st trait done (3 rounds and the prompting baseline), the 2nd: 2 rounds
            # one trait after another (batched, both would be half done): the counts below assume it
            steer(world, name, Interrupting(judge_for(server), after=3 + 1 + 2), traits=traits, batch_traits=False)
        assert (steering_dir(world, name, "test/optimism") / "results.json").is_file()
        before = scored(server)
        with caplog.at_level(logging.INFO, logger="traitvec"):
            both = steer(world, name, judge_for(server), traits=traits)
        assert "test/hope: resuming after 1 finished rounds" in caplog.text
        assert scored(server) - before == 2 * 3 * 3  # only the second trait's last round and prompting
        before = scored(server)
        (alone,) = steer(world, name, judge_for(server), traits=("test/hope",))
        reversed_ = steer(world, name, judge_for(server), traits=tuple(reversed(traits)))
        assert scored(server) == before  # current alone, and in the other order
    assert alone.steering == both[1].steering == reversed_[0].steering


def test_an_interrupt_stops_every_batched_trait_and_a_rerun_resumes_each(world: Path, caplog) -> None:
    import threading

    name = experiment(world, "steer-batched")
    traits = ("test/optimism", "test/hope")
    threads = threading.active_count()
    with JudgeServer(KeywordResponder()) as server:
        with pytest.raises(KeyboardInterrupt):
            # batched: both baselines (trait calls 1, 2), then the first search round of each (3, then 4 raises)
            steer(world, name, Interrupting(judge_for(server), after=3), traits=traits)
        assert threading.active_count() == threads + 1  # only the judge server's: no trait left waiting
        assert not any((steering_dir(world, name, t) / "results.json").exists() for t in traits)
        # which rounds each trait checkpointed depends on how its thread interleaved with the other's
        done = {}
        for t in traits:
            found = list(steering_dir(world, name, t).glob("runs/*/progress.json"))
            done[t] = len(json.loads(found[0].read_text())["rounds"]) if found else 0
        assert sum(done.values()) >= 2  # three judge calls finished before the interrupt
        caplog.clear()  # only the rerun's records: the interrupted run's are kept if INFO was already on
        with caplog.at_level(logging.INFO, logger="traitvec"):
            both = steer(world, name, judge_for(server), traits=traits)
        for t, rounds in done.items():  # a checkpointed round is never generated again
            if rounds:
                assert f"{t}: resuming after {rounds - 1} finished rounds" in caplog.text or rounds == 1
                assert f"{t}: baseline on" not in caplog.text
        before = scored(server)
        alone = [steer(world, name, judge_for(server), traits=(t,))[0] for t in traits]
        assert scored(server) == before  # each is current alone
    assert [run.steering for run in alone] == [run.steering for run in both]


def test_failed_judge_items_make_a_run_not_current_and_only_they_are_asked_again(world: Path) -> None:
    name = experiment(world, "steer-fail")  # extracts and steers: the model is loaded before steering is keyed
    cache = world / "fail-cache.sqlite"
    # The first three requests fail (HTTP 422, not retried): the baseline's three trait items.
    with JudgeServer(PassesChecks(ScriptedResponder([Fault.server_error(422)] * 3))) as server:
        (first,) = steer(world, name, judge_for(server, cache), coherence_floor=0, own=True)
        assert first.steering["scoring"]["n_failed"] == 3 and first.steering["status"] == "some judge items failed"
        assert first.steering["scoring"]["last_error"].startswith("HTTP 422")
        run = steering_dir(world, name) / first.steering["run_folder"]
        assert (run / "progress.json").is_file()  # kept: the rerun re-asks from it
        before = scored(server)
        (second,) = steer(world, name, judge_for(server, cache), coherence_floor=0, own=True)
        assert scored(server) - before == 3  # exactly the failed items
        assert second.steering["scoring"]["n_failed"] == 0 and second.steering["status"] == "complete"
        assert not (run / "progress.json").exists()
        before = scored(server)
        (third,) = steer(world, name, judge_for(server, cache), coherence_floor=0, own=True)
        assert scored(server) == before and third.steering == second.steering
    ours = [(r["round"], r["question_index"], r["text"]) for r in second.steering["responses"]]
    assert ours == [(r["round"], r["question_index"], r["text"]) for r in first.steering["responses"]]


def test_a_dead_judge_exits_nonzero_with_one_line_and_shows_unscored(world: Path, monkeypatch, capsys) -> None:
    name = experiment(world, "steer-dead")
    with JudgeServer(PassesChecks(ScriptedResponder([], then=Fault.server_error(422)))) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        status = main(
            [
                "run",
                "--experiment",
                "tiny",
                "--steer-experiment",
                name,
                "--traits",
                "test/optimism",
                "--traits-root",
                str(world / "traits"),
                "--experiments-root",
                str(world / "experiments"),
                "--position",
                "prefill-mean",
                "--methods",
                "mean-diff",
                "--judge-model",
                "test-judge",
                "--judge-cache",
                "off",
                "--n-layers",
                "1",
                "--questions",
                "3",
                "--search-steps",
                "1",
                "--max-new-tokens",
                "6",
            ]
        )
    err = capsys.readouterr().err
    assert status == 1
    lines = [line for line in err.splitlines() if "the judge failed" in line]
    # baseline, one search round and the prompting baseline: 3 questions × 2 judged kinds each
    assert len(lines) == 1 and lines[0].startswith("traitvec: error: the judge failed on 27 of 27 steering items")
    assert "HTTP 422" in lines[0] and KEY not in err
    folder = steering_dir(world, name)
    markdown = (folder / "results.md").read_text()
    assert "**The judge failed** on 27 of 27 items" in markdown and "lower the coherence floor" not in markdown
    results = json.loads((folder / "results.json").read_text())
    assert {r["verdict"] for r in results["runs"]} == {"unscored"} and results["best"] is None
    _, cells = heatmap_cells(results, results["layers"])
    assert [c.label for c in cells] == ["unscored"]


def test_runs_with_other_settings_keep_their_own_folders_and_are_listed(world: Path, capsys) -> None:
    name = experiment(world, "steer-runs")
    with JudgeServer(NoiseResponder()) as server:
        (long,) = steer(world, name, judge_for(server), coherence_floor=0)
        (quick,) = steer(world, name, judge_for(server), coherence_floor=0, questions=2)
        folder = steering_dir(world, name)
        mirrored = json.loads((folder / "results.json").read_text())
        assert mirrored == quick.steering and mirrored["run_folder"] == f"runs/{quick.steering['inputs_key']}"
        kept = json.loads((folder / long.steering["run_folder"] / "results.json").read_text())
        assert kept == long.steering and len(kept["questions"]) == 3  # the quick run did not wipe it
        assert (folder / "heatmap.png").read_bytes() == (
            folder / quick.steering["run_folder"] / "heatmap.png"
        ).read_bytes()
        runs = list_runs(OutputLayout(world / "experiments" / name), "test/optimism")
        assert [(r.key, r.latest, r.n_questions) for r in runs] == [
            (long.steering["inputs_key"], False, 3),
            (quick.steering["inputs_key"], True, 2),
        ]
        assert (
            main(["results", "test/optimism", "--experiment", name, "--experiments-root", str(world / "experiments")])
            == 0
        )
        out = capsys.readouterr().out
        assert long.steering["inputs_key"] in out and quick.steering["inputs_key"] in out
        (row,) = [line for line in out.splitlines() if line.startswith("*")]
        assert quick.steering["inputs_key"] in row
        before = scored(server)
        (back,) = steer(world, name, judge_for(server), coherence_floor=0)  # the long run again: current
        assert scored(server) == before and back.steering == long.steering
        assert json.loads((folder / "results.json").read_text())["run_folder"] == long.steering["run_folder"]
    # The held-out estimate, recomputed here from the recorded responses and the recorded split.
    results = long.steering
    trait = {(r["round"], r["question_index"]): r["trait"]["score"] for r in results["responses"]}
    pooled = []
    for fold in results["held_out"]["folds"]:
        assert sorted(fold["tune"] + fold["test"]) == [0, 1, 2]
        chosen = fold["chosen"]
        pooled += [trait[chosen["round"], q] - trait[0, q] for q in fold["test"]]
    assert results["selection"]["folds"] == [
        {"tune": f["tune"], "test": f["test"]} for f in results["held_out"]["folds"]
    ]
    assert results["held_out"]["trait_gain"] == pytest.approx(sum(pooled) / len(pooled))
    assert results["held_out"]["n_questions"] == 3


def test_corrupt_or_misshapen_steering_files_are_recomputed_with_a_warning(world: Path, caplog) -> None:
    name = experiment(world, "steer-corrupt")
    cache = world / "corrupt-cache.sqlite"
    with JudgeServer(KeywordResponder()) as server:
        (first,) = steer(world, name, judge_for(server, cache))
        results = steering_dir(world, name) / first.steering["run_folder"] / "results.json"
        for damage in (b"\x89PNG\x00\xff binary garbage", json.dumps({**first.steering, "runs": "x"}).encode()):
            results.write_bytes(damage)
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="traitvec"):
                (again,) = steer(world, name, judge_for(server, cache))
            assert str(results) in caplog.text and "recomputing" in caplog.text
            assert json.loads(results.read_text())["runs"] == first.steering["runs"] == again.steering["runs"]
        progress = results.with_name("progress.json")
        progress.write_text(json.dumps({"inputs_key": first.steering["inputs_key"], "rounds": [{"round": 7}]}))
        results.unlink()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="traitvec"):
            (fresh,) = steer(world, name, judge_for(server, cache))
    assert f"{progress} has the expected inputs key but a wrong structure (rounds[0] is not round 0)" in caplog.text
    assert fresh.steering["runs"] == first.steering["runs"] and not progress.exists()


def test_vetted_only_refuses_vetting_made_on_another_model(world: Path) -> None:
    name = experiment(world, "vet-swap", model="a")
    where = {"traits_root": world / "traits", "experiments_root": world / "experiments"}
    with JudgeServer(KeywordResponder()) as server:
        (vetted,) = tv.run_pipeline(
            name,
            ["test/optimism"],
            steering=None,
            vetting=tv.VetSettings(tokens=16),
            judge=lambda: judge_for(server),
            extraction=EXTRACTION,
            **where,
        )
    assert vetted.vetting["model_key"] == ModelPool().model_key(tv.load_experiment(name, world / "experiments"))
    try:  # the same model: the model check passes (too few passing pairs is another, later error)
        tv.run_pipeline(name, ["test/optimism"], steering=None, vetted_only=True, extraction=EXTRACTION, **where)
    except tv.ConfigError as err:
        assert "pairs passed vetting" in str(err)
    experiment(world, name, model="b")
    with pytest.raises(tv.ConfigError, match=r"vetting.json was vetted on another model .*model-a") as info:
        tv.run_pipeline(name, ["test/optimism"], steering=None, vetted_only=True, extraction=EXTRACTION, **where)
    assert info.value.setting == "run_pipeline(vetting=)"
