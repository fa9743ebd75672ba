"""The prompting baseline: the same questions answered by the unsteered model told to show the trait.

AxBench found that simply *asking* for a concept beats every rank-1 steering method (0.894 against
0.720), so a steering result means little until it is set beside prompting. This stage asks the
steering questions again, with no steering, under an instruction built from the trait
(:func:`prompting_instruction`): its name and its ``definition.txt`` rubric, and the request to
score HIGH on it — or, for a ``direction: negative`` trait, to show the **opposite** (score LOW),
which is what steering aims at. The answers are judged exactly as the steered ones are (trait,
coherence through the relevance gate, judge-free fluency), always against the *original* question,
and summarised beside the unsteered baseline in ``results.json`` ``prompting_baseline``
(:func:`prompting_summary`).

Where the instruction goes (:func:`instructed_prompt`): the system prompt when the model's chat
template has a system role (it renders a system message — templates that fold it into the first
user turn, like Gemma 3's, count); prepended to the user turn when the template refuses or drops
one (Gemma 2); before ``Question:`` in the plain frame of a model without a chat template.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jinja2

from ..models import LoadedModel
from ..prompting import encode_chat
from ..traits import Trait

__all__ = [
    "instructed_prompt",
    "has_system_role",
    "prompting_instruction",
    "prompting_summary",
    "INSTRUCTION_VERSION",
]

INSTRUCTION_VERSION = 1
"""Bumped whenever :func:`prompting_instruction` changes its wording (part of the staleness key)."""

_SYSTEM_MARK = "\ue000traitvec-system\ue000"


def _label(trait: Trait) -> str:
    return trait.name.rsplit("/", 1)[-1].replace("_", " ").replace("-", " ")


def prompting_instruction(trait: Trait) -> str:
    """The instruction that asks for the trait (or, for ``direction: negative``, its opposite).

    Example:
        >>> print(prompting_instruction(load_trait("styles/formality")).splitlines()[0])
        Answer the question so that your answer shows as much formality as you can.
    """
    label = _label(trait)
    if trait.direction == "negative":
        ask = f"Answer the question so that your answer shows the opposite of {label}: as little {label} as you can."
        aim = "Aim for the LOWEST score on this rubric"
    else:
        ask = f"Answer the question so that your answer shows as much {label} as you can."
        aim = "Aim for the HIGHEST score on this rubric"
    if not trait.definition:
        return f"{ask} Stay on the question and answer it."
    return (
        f"{ask}\n\nYour answer will be scored with this rubric:\n{trait.definition}\n\n{aim}, and stay on the question."
    )


def has_system_role(loaded: LoadedModel) -> bool:
    """Whether a system prompt reaches the model: the plain frame always; a chat template when it
    renders a system message without raising."""
    if not loaded.use_chat_template:
        return True
    messages = [{"role": "system", "content": _SYSTEM_MARK}, {"role": "user", "content": "Hello?"}]
    try:
        text = loaded.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except (jinja2.TemplateError, TypeError, ValueError):
        return False
    return _SYSTEM_MARK in str(text)


def instructed_prompt(loaded: LoadedModel, question: str, instruction: str, *, system: bool) -> list[int]:
    """Token ids of ``question`` with ``instruction`` as the system prompt, or prepended to the user turn.

    Example:
        >>> ids = instructed_prompt(loaded, "why is the sky blue", instruction, system=has_system_role(loaded))
    """
    if system:
        return encode_chat(loaded, question, instruction)
    return encode_chat(loaded, f"{instruction}\n\n{question}")


def prompting_summary(
    instruction: str,
    system: bool,
    responses: Sequence[Mapping[str, Any]],
    baseline: Mapping[str, Any],
    sign: float,
    summarize_responses: Callable[[Sequence[Mapping[str, Any]]], dict[str, Any]],
) -> dict[str, Any]:
    """The ``prompting_baseline`` entry of ``results.json``.

    Args:
        instruction: the instruction given.
        system: whether it went in as the system prompt (else prepended to the user turn).
        responses: the prompted answers, recorded like every steered one.
        baseline: the unsteered baseline's summary (its ``trait`` mean is the reference).
        sign: +1 or −1 (the trait's direction); ``trait_gain`` is sign-adjusted like steering's.
        summarize_responses: the summary every run gets (trait, coherence, fluency, ...).

    Returns:
        ``{"instruction", "placement", "responses", <the run summary>, "trait_gain"}``.
    """
    summary = summarize_responses(responses)
    prompted, base = summary["trait"]["mean"], baseline["trait"]["mean"]
    return {
        "instruction": instruction,
        "placement": "system prompt" if system else "prepended to the user turn",
        **summary,
        "trait_gain": None if prompted is None or base is None else sign * (prompted - base),
        "responses": [dict(r) for r in responses],
    }
