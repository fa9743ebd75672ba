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

import logging
from collections.abc import Mapping
from typing import Any

import jinja2

from ..generation import fit_context
from ..models import LoadedModel
from ..prompting import encode_chat
from ..traits import Trait
from .rounds import RoundRunner

__all__ = [
    "instructed_prompt",
    "has_system_role",
    "prompting_instruction",
    "prompting_record",
    "prompting_summary",
    "run_prompting",
]

logger = logging.getLogger(__name__)

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


def run_prompting(trait: Trait, runner: RoundRunner) -> dict[str, Any]:
    """Answer every question unsteered under :func:`prompting_instruction`, judged and read back as
    every round is: ``{"instruction", "system", "responses"}`` (checkpointed in ``progress.json``).

    A prompt longer than the context minus the answer length is cut to its end, with a warning.
    """
    loaded = runner.loaded
    instruction = prompting_instruction(trait)
    system = has_system_role(loaded)
    prompts, cut = [], []
    for index, question in enumerate(runner.questions):
        ids, dropped = fit_context(
            loaded, instructed_prompt(loaded, question, instruction, system=system), runner.max_new_tokens
        )
        prompts.append(ids)
        if dropped:
            cut.append(f"{index} ({dropped} tokens)")
    if cut:
        logger.warning(
            "%s: %d instructed prompt(s) of the prompting baseline are longer than the context minus the answer "
            "length; kept the end of each (question index, tokens cut: %s)",
            trait.name,
            len(cut),
            ", ".join(cut[:10]) + (" …" if len(cut) > 10 else ""),
        )
    return {"instruction": instruction, "system": system, "responses": runner.prompting(prompts)}


def prompting_record(progress: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The prompting baseline checkpointed in a current ``progress.json``; ``None`` when there is
    none or it is malformed (it is then redone)."""
    record = (progress or {}).get("prompting")
    if not isinstance(record, dict) or not isinstance(record.get("instruction"), str):
        return None
    responses = record.get("responses")
    if not isinstance(responses, list) or not responses or not all(isinstance(r, dict) for r in responses):
        return None
    if not all(isinstance(r.get(k), dict) for r in responses for k in ("trait", "coherence")):
        return None
    return record


def prompting_summary(record: Mapping[str, Any], summary: Mapping[str, Any]) -> dict[str, Any]:
    """The ``prompting_baseline`` entry of ``results.json``.

    Args:
        record: :func:`run_prompting`'s record (instruction, placement, responses).
        summary: the prompted answers' summary (trait, coherence, fluency, sign-adjusted
            ``trait_gain`` over the unsteered baseline, verdict), computed as every run's is.

    Returns:
        ``{"instruction", "placement", <the summary>, "responses"}``.
    """
    return {
        "instruction": record["instruction"],
        "placement": "system prompt" if record["system"] else "prepended to the user turn",
        **summary,
        "responses": [dict(r) for r in record["responses"]],
    }
