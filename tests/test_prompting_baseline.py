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


def test_prompting_summary_is_sign_adjusted_against_the_baseline() -> None:
    responses = [{"trait": {"score": 80.0}}, {"trait": {"score": 60.0}}]

    def summarize(rs):
        scores = [r["trait"]["score"] for r in rs]
        return {"trait": {"mean": sum(scores) / len(scores)}, "coherence": {"mean": 90.0}}

    up = prompting_summary("Be formal.", True, responses, {"trait": {"mean": 30.0}}, 1.0, summarize)
    assert up["trait_gain"] == 40.0 and up["placement"] == "system prompt" and up["instruction"] == "Be formal."
    assert up["responses"] == responses and up["coherence"] == {"mean": 90.0}
    down = prompting_summary("Be casual.", False, responses, {"trait": {"mean": 30.0}}, -1.0, summarize)
    assert down["trait_gain"] == -40.0 and down["placement"] == "prepended to the user turn"
    unscored = prompting_summary("x", True, responses, {"trait": {"mean": None}}, 1.0, summarize)
    assert unscored["trait_gain"] is None


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
