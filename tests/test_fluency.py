"""traitvec.fluency: answers read back by the unsteered model, against independent computations."""

from __future__ import annotations

import math

import pytest
import torch
from tiny import ARCHITECTURES, make_model

from traitvec.fluency import MAX_LOGIT_ELEMENTS, AnswerReading, read_answers, repetition_rate
from traitvec.generation import Generation, generate
from traitvec.steering import Steer
from traitvec.vectors import TraitVector

QUESTIONS = ["What causes rain?", "The quick brown fox", "Honestly, I have to admit the plan failed; we"]


def _vector(loaded, seed: int = 0) -> TraitVector:
    g = torch.Generator().manual_seed(seed)
    directions = {}
    for layer in range(loaded.num_layers):
        d = torch.randn(loaded.hidden_size, generator=g)
        directions[layer] = d / d.norm()
    ones = dict.fromkeys(range(loaded.num_layers), 1.0)
    return TraitVector(
        directions=directions,
        method="mean-diff",
        position="prefill-mean",
        model={"name": loaded.name},
        trait="test/trait",
        trait_hash="",
        n_pairs=1,
        raw_norms=ones,
        activation_norms=ones,
        spreads=ones,
    )


def _answers(loaded) -> list[Generation]:
    """Answers of several lengths, some steered hard (so they are less likely under the plain model)."""
    ids = [list(loaded.tokenizer(q)["input_ids"]) for q in QUESTIONS]
    v = torch.randn(loaded.hidden_size, generator=torch.Generator().manual_seed(3))
    rows = [[], [Steer(v / v.norm(), 1, 6.0, scale="absolute")], []]
    return generate(loaded, ids, max_new_tokens=7, steering=rows) + generate(loaded, ids[:2], max_new_tokens=3)


def _reference(loaded, g: Generation, vector: TraitVector, layers: list[int]) -> tuple[float, dict[str, float]]:
    """One answer alone, no padding: log_softmax of a plain forward gathered at the next tokens, and
    the answer's mean hidden state (output_hidden_states: entry layer+1 is layer's output)."""
    answer = list(g.tokens) or list(g.raw_tokens[:1])
    full = torch.tensor([[*g.prompt_ids, *answer]])
    p = len(g.prompt_ids)
    with torch.no_grad():
        out = loaded.model(full, output_hidden_states=True)
    logprobs = out.logits[0].float().log_softmax(-1)[p - 1 : full.shape[1] - 1]
    chosen = logprobs.gather(-1, torch.tensor(answer)[:, None])[:, 0]
    projections = {
        str(layer): float(out.hidden_states[layer + 1][0, p:].float().mean(0) @ vector.direction(layer))
        for layer in layers
    }
    return float(chosen.mean()), projections


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_readings_equal_a_plain_forward_of_each_answer_alone(arch: str) -> None:
    loaded = make_model(arch)
    vector = _vector(loaded)
    answers = _answers(loaded)
    assert len({len(g.prompt_ids) + len(g.tokens) for g in answers}) > 2  # rows really are padded in the batch
    layers = [0, 1]  # the last layer's entry in hidden_states is after the final norm in some models
    readings = read_answers(loaded, answers, vector=vector, layers=layers)
    assert len(readings) == len(answers)
    for g, reading in zip(answers, readings, strict=True):
        mean, projections = _reference(loaded, g, vector, layers)
        assert reading.n_tokens == (len(g.tokens) or 1)
        assert reading.mean_logprob == pytest.approx(mean, abs=1e-5)
        assert reading.perplexity == pytest.approx(math.exp(-mean), rel=1e-5)
        assert reading.repetition == repetition_rate(g.tokens)
        assert reading.projections is not None and set(reading.projections) == {"0", "1"}
        for layer in ("0", "1"):
            assert reading.projections[layer] == pytest.approx(projections[layer], rel=1e-4, abs=1e-4)
    steered, plain = readings[1].mean_logprob, readings[0].mean_logprob
    assert steered is not None and plain is not None and steered != plain


def test_batch_size_and_head_rows_do_not_change_readings(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = make_model("llama")
    vector = _vector(loaded)
    answers = _answers(loaded)
    together = read_answers(loaded, answers, vector=vector, layers=[1])
    alone = read_answers(loaded, answers, vector=vector, layers=[1], max_batch_tokens=1)  # one row per batch
    monkeypatch.setattr("traitvec.fluency.MAX_LOGIT_ELEMENTS", 8 * 400)  # at most one row fits under the head cap
    capped = read_answers(loaded, answers, vector=vector, layers=[1])
    assert MAX_LOGIT_ELEMENTS == 2**26
    for a, b, c in zip(together, alone, capped, strict=True):
        assert a.mean_logprob == pytest.approx(b.mean_logprob, abs=1e-5) == pytest.approx(c.mean_logprob, abs=1e-5)
        assert a.projections and b.projections and c.projections
        assert a.projections["1"] == pytest.approx(b.projections["1"], abs=1e-4)
        assert a.projections["1"] == pytest.approx(c.projections["1"], abs=1e-4)


def test_readings_without_a_vector_have_no_projections_and_register_no_hooks() -> None:
    loaded = make_model("gpt2")
    answers = _answers(loaded)[:2]
    before = [len(m._forward_hooks) for m in loaded.layers]
    readings = read_answers(loaded, answers)
    assert [len(m._forward_hooks) for m in loaded.layers] == before
    assert all(r.projections is None and r.mean_logprob is not None for r in readings)
    assert readings[0].fluency() == {
        "mean_logprob": readings[0].mean_logprob,
        "perplexity": readings[0].perplexity,
        "repetition": readings[0].repetition,
    }


def test_an_empty_answer_is_read_by_its_end_token_and_nothing_is_none() -> None:
    loaded = make_model("llama")
    eos = loaded.tokenizer.eos_token_id
    prompt = tuple(loaded.tokenizer("What causes rain?")["input_ids"])
    empty = Generation(prompt, (), (eos,), "", True)
    nothing = Generation(prompt, (), (), "", True)  # a stop string took every token
    readings = read_answers(loaded, [empty, nothing], vector=_vector(loaded), layers=[0])
    with torch.no_grad():
        logits = loaded.model(torch.tensor([prompt])).logits[0, -1].float().log_softmax(-1)
    assert readings[0].n_tokens == 1
    assert readings[0].mean_logprob == pytest.approx(float(logits[eos]), abs=1e-5)
    assert readings[0].repetition == 0.0
    assert readings[1] == AnswerReading(0, None, None, None, None)


def test_repetition_rate_counts_3grams_that_repeat_an_earlier_one() -> None:
    assert repetition_rate([1, 2, 3, 1, 2, 3]) == 0.25  # (1,2,3) (2,3,1) (3,1,2) (1,2,3)
    assert repetition_rate([5] * 10) == 7 / 8  # eight 3-grams, all the same
    assert repetition_rate([1, 2, 3, 4, 5, 6]) == 0.0
    assert repetition_rate([1, 2]) == 0.0  # no 3-gram at all
    assert repetition_rate([1, 2, 1, 2, 1], n=2) == 0.5  # (1,2) (2,1) (1,2) (2,1)


def _responses(*pairs: tuple[float | None, float | None]) -> list[dict]:
    return [{"fluency": {"mean_logprob": lp, "perplexity": None, "repetition": rep}} for lp, rep in pairs]


def test_fluency_summary_means_intervals_and_run_perplexity() -> None:
    from traitvec.stages.fluency_guard import fluency_summary

    summary = fluency_summary([*_responses((-1.0, 0.0), (-2.0, 0.5), (None, None)), {"fluency": None}, {}])
    assert summary["n"] == 2  # unread answers are not averaged in
    assert summary["mean_logprob"]["mean"] == pytest.approx(-1.5)
    assert summary["repetition"]["mean"] == pytest.approx(0.25)
    assert summary["perplexity"]["mean"] == pytest.approx(math.exp(1.5))  # exp(-mean log-prob), not a mean of ppl
    low, high = summary["mean_logprob"]["ci95"]
    assert summary["perplexity"]["ci95"] == pytest.approx([math.exp(-high), math.exp(-low)])
    assert fluency_summary([])["mean_logprob"] == {"mean": None, "ci95": None}


def test_fluency_guard_limits_and_failures() -> None:
    from traitvec.stages.fluency_guard import fluency_limits, fluency_summary

    baseline = fluency_summary(_responses((-0.8, 0.30), (-0.9, 0.46)))  # mean -0.85, repetition 0.38
    limits = fluency_limits(baseline, margin=1.5, ceiling=0.5)
    assert limits.min_mean_logprob == pytest.approx(-2.35)
    assert limits.max_repetition == pytest.approx(0.53)  # the baseline loops: 0.38 + 0.15 is above 0.5
    assert limits.failure(fluency_summary(_responses((-1.6, 0.2), (-1.6, 0.4)))) is None
    salad = limits.failure(fluency_summary(_responses((-4.0, 0.0), (-5.0, 0.1))))
    assert salad == "mean log-prob -4.50 is more than 1.5 under the baseline's -0.85"
    loops = limits.failure(fluency_summary(_responses((-1.0, 0.9), (-1.0, 0.8))))
    assert loops == "repetition 0.85 is above the ceiling 0.53"
    calm = fluency_limits(fluency_summary(_responses((-0.8, 0.0))), margin=1.5, ceiling=0.5)
    assert calm.max_repetition == 0.5
    off = fluency_limits(baseline, margin=None, ceiling=None)
    assert off.failure(fluency_summary(_responses((-9.0, 1.0)))) is None
    assert limits.failure(fluency_summary([])) is None  # nothing read: the judge's checks still apply
    assert limits.to_dict()["baseline_repetition"] == pytest.approx(0.38)


def _judged(qi: int, layer: int | None, coefficient: float, coherence: float, repetition: float) -> dict:
    def score(kind: str, value: float) -> dict:
        return {"score": value, "status": "ok", "mode": "logprobs", "kind": kind, "reason": None, "mass": 0.9,
                "prompt_hash": "h", "judge": "blind", "cached": False}  # fmt: skip

    return {"question": f"q{qi}", "question_index": qi, "sample": 0, "layer": layer, "coefficient": coefficient,
            "text": "x", "trait": score("trait", 50.0 + 10 * abs(coefficient)),
            "coherence": score("coherence", coherence),
            "fluency": {"mean_logprob": -1.0, "perplexity": math.e, "repetition": repetition},
            "projection": None, "projections": None}  # fmt: skip


def test_the_search_calls_a_degenerate_run_incoherent_even_when_the_judge_is_blind() -> None:
    """A blind judge rates every run 90; from coefficient 2 up the answers loop (repetition 0.9)."""
    from traitvec.stages.fluency_guard import fluency_limits, fluency_summary
    from traitvec.stages.search import search
    from traitvec.stages.steer_summary import best_run, run_summaries

    def run_round(configs, number):
        responses = [
            _judged(qi, layer, c, 90.0, 0.9 if abs(c) >= 2 else 0.1) for layer, c in configs for qi in range(4)
        ]
        return {"round": number, "configs": [list(c) for c in configs], "responses": responses}

    def searched(fluency):
        rounds = [
            {"round": 0, "configs": [[3, 0.0]], "responses": [_judged(q, None, 0.0, 90.0, 0.1) for q in range(4)]}
        ]
        search(rounds, [3], start=0.5, sign=1.0, floor=70.0, steps=5, run_round=run_round,
               checkpoint=lambda done: None, fluency=fluency)  # fmt: skip
        return rounds

    blind = searched(None)
    assert [r["configs"][0][1] for r in blind[1:]] == [0.5, 1.0, 2.0, 4.0, 8.0]  # doubles into the loops
    baseline = blind[0]["responses"]
    limits = fluency_limits(fluency_summary(baseline), margin=1.5, ceiling=0.5)
    guarded = searched(limits)
    coefficients = [r["configs"][0][1] for r in guarded[1:]]
    assert coefficients[:3] == [0.5, 1.0, 2.0] and coefficients[3] == pytest.approx(math.sqrt(2))  # bisects back
    runs = run_summaries(guarded, lambda layer: 1.0, 1.0, 70.0, fluency=limits)
    verdicts = {r["coefficient"]: r["verdict"] for r in runs}
    assert verdicts[2.0] == "not fluent" and verdicts[1.0] == "coherent"
    assert runs[2]["fluency"]["repetition"]["mean"] == pytest.approx(0.9)
    best = best_run(runs)
    assert best is not None and abs(best["coefficient"]) < 2  # never a looping run, whatever its trait score
    assert best_run(run_summaries(blind, lambda layer: 1.0, 1.0, 70.0))["coefficient"] == 8.0  # unguarded: the loop


def test_fluency_settings_are_validated_and_reach_the_command_line(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    from traitvec import ConfigError, SteeringSettings
    from traitvec.cli import build_parser, main
    from traitvec.commands.settings import steering_settings

    assert SteeringSettings().fluency_margin == 1.5 and SteeringSettings().repetition_ceiling == 0.5
    assert SteeringSettings(fluency_margin=None, repetition_ceiling=None).prompting_baseline is True
    for kwargs, setting in (
        ({"fluency_margin": -0.5}, "SteeringSettings.fluency_margin"),
        ({"repetition_ceiling": 0.0}, "SteeringSettings.repetition_ceiling"),
        ({"repetition_ceiling": 1.5}, "SteeringSettings.repetition_ceiling"),
    ):
        with pytest.raises(ConfigError) as info:
            SteeringSettings(**kwargs)
        assert info.value.setting == setting and str(info.value).startswith(f"{setting} = ")
    base = ["run", "--experiment", "e", "--traits", "a/b"]
    args = build_parser().parse_args([*base, "--fluency-margin", "off", "--repetition-ceiling", "0.7",
                                      "--no-prompting-baseline"])  # fmt: skip
    settings = steering_settings(args)
    assert (settings.fluency_margin, settings.repetition_ceiling, settings.prompting_baseline) == (None, 0.7, False)
    defaults = steering_settings(build_parser().parse_args(base))
    assert (defaults.fluency_margin, defaults.repetition_ceiling, defaults.prompting_baseline) == (1.5, 0.5, True)
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "config.toml").write_text('model = "gemma-3-270m"\n')
    trait = tmp_path / "traits" / "a" / "b"
    trait.mkdir(parents=True)
    (trait / "positive.txt").write_text("I love it\n")
    (trait / "negative.txt").write_text("I hate it\n")
    where = ["--experiments-root", str(tmp_path), "--traits-root", str(tmp_path / "traits")]
    with pytest.raises(SystemExit) as exit_info:  # checked with every number flag, before anything loads
        main([*base, *where, "--repetition-ceiling", "2"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert "--repetition-ceiling 2: use a number from 0 to 1" in line and "Settings." not in line
    with pytest.raises(SystemExit) as exit_info:
        main([*base, *where, "--fluency-margin", "lots"])
    assert exit_info.value.code == 2 and "--fluency-margin lots: use a number of at least 0" in capsys.readouterr().err
