"""The prompting baseline's pieces: the instruction, where it goes, and its summary."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from tiny import make_model

from traitvec.prompting import encode_chat
from traitvec.stages.baseline import (
    has_system_role,
    instructed_prompt,
    prompting_instruction,
    prompting_record,
    prompting_summary,
)
from traitvec.traits import load_trait

ROOT = Path(__file__).resolve().parents[1] / "datasets" / "traits"

REFUSES_SYSTEM = (  # Gemma 2's template: a system message raises
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
DROPS_SYSTEM = (  # a template that silently skips system messages
    "{% for m in messages %}{% if m['role'] != 'system' %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def formality():
    return load_trait("styles/formality", root=ROOT)


def test_the_instruction_asks_for_the_trait_with_its_rubric(formality) -> None:
    text = prompting_instruction(formality)
    assert text.startswith("Answer the question so that your answer shows as much formality as you can.")
    assert formality.definition in text
    assert "HIGHEST score" in text and "LOWEST" not in text and "opposite" not in text


def test_a_negative_trait_asks_for_the_opposite(formality) -> None:
    down = dataclasses.replace(formality, direction="negative")
    text = prompting_instruction(down)
    assert "the opposite of formality: as little formality as you can" in text
    assert "LOWEST score" in text and "HIGHEST" not in text
    bare = dataclasses.replace(formality, definition=None, name="alignment/sycophancy")
    assert prompting_instruction(bare) == (
        "Answer the question so that your answer shows as much sycophancy as you can. Stay on the question and "
        "answer it."
    )


def test_system_role_detection() -> None:
    chat = make_model("llama", chat=True)
    assert has_system_role(chat) is True
    assert has_system_role(make_model("llama")) is True  # the plain frame puts it before "Question:"
    chat.tokenizer.chat_template = REFUSES_SYSTEM
    assert has_system_role(chat) is False
    chat.tokenizer.chat_template = DROPS_SYSTEM
    assert has_system_role(chat) is False


def test_the_instruction_goes_in_the_system_prompt_or_the_user_turn() -> None:
    chat = make_model("llama", chat=True)
    decode = chat.tokenizer.decode
    as_system = instructed_prompt(chat, "why is the sky blue", "Be formal.", system=True)
    assert as_system == encode_chat(chat, "why is the sky blue", "Be formal.")
    assert decode(as_system) == "<|system|>Be formal.<|end|><|user|>why is the sky blue<|end|><|assistant|>"
    in_user = instructed_prompt(chat, "why is the sky blue", "Be formal.", system=False)
    assert decode(in_user) == "<|user|>Be formal.\n\nwhy is the sky blue<|end|><|assistant|>"
    plain = make_model("llama")
    text = plain.tokenizer.decode(instructed_prompt(plain, "why is the sky blue", "Be formal.", system=True))
    assert text == "<bos>Be formal.\n\nQuestion: why is the sky blue\nAnswer:"


def _score(kind: str, value: float | None) -> dict:
    status = "ok" if value is not None else "failed"
    return {"score": value, "status": status, "mode": "logprobs", "kind": kind, "reason": None, "mass": 0.9,
            "prompt_hash": "h", "judge": "j", "cached": False}  # fmt: skip


def _answer(qi: int, trait: float | None, coherence: float, logprob: float = -1.0, repetition: float = 0.1) -> dict:
    return {"question": f"q{qi}", "question_index": qi, "sample": 0, "layer": None, "coefficient": 0.0,
            "text": "a", "trait": _score("trait", trait), "coherence": _score("coherence", coherence),
            "fluency": {"mean_logprob": logprob, "perplexity": None, "repetition": repetition}}  # fmt: skip


def test_the_prompted_summary_is_paired_by_question_sign_adjusted_and_guarded() -> None:
    from traitvec.stages.fluency_guard import fluency_limits, fluency_summary
    from traitvec.stages.steer_summary import prompted_summary

    baseline = [_answer(0, 20.0, 90.0), _answer(1, 40.0, 90.0), _answer(2, 30.0, 90.0)]
    prompted = [_answer(0, 80.0, 85.0), _answer(1, 60.0, 85.0), _answer(2, None, 85.0)]  # q2 unscored: not paired
    assert prompted_summary(prompted, baseline, 1.0, 70.0)["verdict"] == "too few scored"  # 2 of 3 trait scores
    up = prompted_summary(prompted, baseline, 1.0, 70.0, min_scored=0.6)
    assert up["trait_gain"] == pytest.approx(40.0) and up["n_questions_paired"] == 2  # (60 + 20) / 2
    assert up["trait"]["mean"] == pytest.approx(70.0) and up["verdict"] == "coherent" and up["coherent"]
    assert up["fluency"]["mean_logprob"]["mean"] == pytest.approx(-1.0)
    down = prompted_summary(prompted, baseline, -1.0, 70.0)
    assert down["trait_gain"] == pytest.approx(-40.0)  # a negative trait: moving it up is a loss
    limits = fluency_limits(fluency_summary(baseline), margin=0.5, ceiling=0.5)
    salad = [_answer(q, 90.0, 95.0, logprob=-6.0) for q in range(3)]
    assert prompted_summary(salad, baseline, 1.0, 70.0, fluency=limits)["verdict"] == "not fluent"
    assert prompted_summary(prompted, baseline, 1.0, 88.0, min_scored=0.6)["verdict"] == "below floor"


def test_prompting_summary_and_record() -> None:
    record = {"instruction": "Be formal.", "system": True, "responses": [{"text": "Good day."}]}
    entry = prompting_summary(record, {"trait": {"mean": 71.5}, "trait_gain": 40.0})
    assert entry == {
        "instruction": "Be formal.",
        "placement": "system prompt",
        "trait": {"mean": 71.5},
        "trait_gain": 40.0,
        "responses": [{"text": "Good day."}],
    }
    assert prompting_summary({**record, "system": False}, {})["placement"] == "prepended to the user turn"
    ok = {"instruction": "x", "system": True, "responses": [{"trait": {}, "coherence": {}}]}
    assert prompting_record({"prompting": ok}) == ok
    assert prompting_record(None) is None and prompting_record({}) is None
    assert prompting_record({"prompting": {**ok, "responses": []}}) is None
    assert prompting_record({"prompting": {**ok, "responses": [{"trait": {}}]}}) is None  # no coherence: redone


def _results(steered_gain, prompted_gain):
    summary = {"trait": {"mean": 60.0}, "coherence": {"mean": 80.0}}
    return {
        "best": {"layer": 6, "coefficient": 1.0, **summary, "trait_gain": steered_gain, "projection_gain": 0.5},
        "baseline": {"trait": {"mean": 30.0}, "coherence": {"mean": 85.0}},
        "prompting_baseline": {"trait": {"mean": 71.5}, "coherence": {"mean": 88.25}, "trait_gain": prompted_gain},
        "smoke_test": False,
    }


def test_the_steering_table_shows_steered_beside_prompted_and_says_when_prompting_wins() -> None:
    from traitvec.render.text import steering_table

    text = steering_table(
        [
            ("styles/formality", _results(30.0, 41.5)),
            ("states/optimism", _results(30.0, 12.0)),
            ("alignment/refusal", {**_results(None, 5.0), "best": None}),
            ("missing/trait", None),
        ]
    )
    lines = text.splitlines()
    assert "prompted trait  prompted coherence" in lines[0]
    assert lines[2].split() == [
        "styles/formality", "-", "6", "1.00", "30.0", "60.0", "80.0", "71.5", "88.2", "0.50", "no"
    ]  # fmt: skip
    assert lines[5].split()[0] == "missing/trait" and set(lines[5].split()[1:-1]) == {"-"}
    notes = lines[7:]
    assert notes == [
        "styles/formality: prompting beats steering (trait gain +41.5 prompted vs +30.0 steered)",
        "alignment/refusal: prompting beats steering (trait gain +5.0 prompted vs no coherent run)",
    ]
    assert "\n\n" not in steering_table([("states/optimism", _results(30.0, 12.0))])
    held = {**_results(30.0, 12.0), "held_out": {"trait_gain": 4.0, "ci95": [-1.0, 9.0]}}  # the headline counts
    assert steering_table([("states/optimism", held)]).splitlines()[-1] == (
        "states/optimism: prompting beats steering (trait gain +12.0 prompted vs +4.0 steered (held-out))"
    )
