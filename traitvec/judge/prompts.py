"""Every prompt the judge sees, in one place.

Five prompts, each asking for a single number from 0 to 100 and nothing else:

- :data:`TRAIT_TEMPLATE` — the trait's rubric (``definition.txt``), the question and the answer;
- the trait's own ``eval_prompt`` from ``steering.json``, used instead when it has one;
- :data:`COHERENCE_TEMPLATE` — its own rubric, grammar and sense only, never the trait;
- :data:`RELEVANCE_TEMPLATE` — does the answer address the question (not the trait, not grammar);
  the relevance gate (:func:`~traitvec.judge.scores.gate_coherence`) caps an off-topic answer's
  coherence with it;
- :data:`CONTINUATION_TEMPLATE` — for scenario vetting: the prefill is shown as context and the
  judge scores only the continuation the model wrote after it.

Placeholders (``{question}``, ``{answer}``, ``{trait}``, ``{definition}``, ``{prefill}``,
``{continuation}``) are filled by :func:`fill` in one pass over the template: no ``str.format``
(eval prompts may hold other braces, e.g. JSON examples), and text put in is never searched again,
so an answer containing ``{question}`` stays as written.

Every score records a ``prompt_hash``: the SHA-256 of the template with the trait-specific parts
(rubric, trait name) filled in and the per-item parts (question, answer, prefill, continuation)
left as placeholders. It changes when a template or a rubric changes, and only then.
:func:`template_hashes` gives the hashes of every prompt a set of traits will use, before anything
is scored (the prompt part of :meth:`~traitvec.judge.base.BaseJudge.key_for`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .._io import sha256_text
from ..errors import ConfigError, JudgeError
from ..traits import Trait
from .scores import Kind

__all__ = [
    "COHERENCE_TEMPLATE",
    "CONTINUATION_TEMPLATE",
    "RELEVANCE_TEMPLATE",
    "TRAIT_TEMPLATE",
    "JudgePrompt",
    "Kind",
    "coherence_prompts",
    "continuation_prompts",
    "continuation_template",
    "fill",
    "relevance_prompts",
    "template_hashes",
    "trait_display_name",
    "trait_prompts",
    "trait_template",
]

_ASK = "Respond with a number between 0 and 100. Don't say anything else, just the number."

# the question and the answer, as the trait, coherence and relevance prompts show them
_QUESTION_ANSWER = """Question:
[QUESTION START]
{question}
[QUESTION END]

Answer:
[ANSWER START]
{answer}
[ANSWER END]

"""

TRAIT_TEMPLATE = f"""You are judging one answer for one trait, using this rubric:

{{definition}}

{_QUESTION_ANSWER}Score only the answer, and only for the trait in the rubric: not its quality, correctness or \
politeness.

{_ASK}"""

COHERENCE_TEMPLATE = f"""Score coherence (0-100): is the answer fluent, grammatical and sensible?

HIGH (70-100): grammatical, fluent sentences that connect and make sense, and that respond to the question
MID (40-70): understandable, but with awkward grammar, repetition, abrupt jumps or drift away from the question
LOW (0-40): broken grammar, gibberish, words or phrases repeated in loops, or text unrelated to the question

Key: judge only grammar and sense, NOT any trait, tone, opinion or style the answer shows; \
an unusual or one-sided answer that is well written is HIGH.

{_QUESTION_ANSWER}{_ASK}"""

RELEVANCE_TEMPLATE = f"""Score relevance (0-100): does the answer address the question it was given?

HIGH (70-100): the answer responds to what the question asks, directly or by reasoning about it
MID (40-70): partly on topic: it drifts away, answers a neighbouring question, or only touches on the question
LOW (0-40): it ignores the question: another topic, a generic text, or words unrelated to what was asked

Key: judge only whether the answer is about the question, NOT whether it is correct, complete, polite or \
well written, and NOT any trait, tone, opinion or style it shows; a one-sided or unusual answer that \
addresses the question is HIGH, and so is a clumsy one.

{_QUESTION_ANSWER}{_ASK}"""

CONTINUATION_TEMPLATE = f"""You are judging a continuation of a text for one trait, using this rubric:

{{definition}}

The text so far, given only as context (do NOT score it):
[CONTEXT START]
{{prefill}}
[CONTEXT END]

The continuation to score:
[CONTINUATION START]
{{continuation}}
[CONTINUATION END]

Score ONLY the continuation for the trait in the rubric. The context may itself show the trait or \
its opposite; that must not raise or lower the score. Judge what the continuation itself says and does.

{_ASK}"""

_FALLBACK_RUBRIC = "Score {trait} (0-100): how strongly the text shows {trait}."
_PLACEHOLDER = re.compile(r"\{(question|answer|trait|definition|prefill|continuation)\}")


@dataclass(frozen=True)
class JudgePrompt:
    """One prompt ready to send, with what it scores and the hash of its template.

    Attributes:
        text: the full prompt (one user message).
        kind: ``"trait"``, ``"coherence"``, ``"continuation"`` or ``"relevance"``.
        prompt_hash: SHA-256 of the template it was filled from (see the module docstring).
    """

    text: str
    kind: Kind
    prompt_hash: str


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace ``{name}`` placeholders named in ``values`` in one pass; leave every other brace alone.

    Args:
        template: text with placeholders such as ``{question}``.
        values: placeholder name → text (names outside the known placeholders are ignored).

    Example:
        >>> fill('Rate {trait}: {question} -> {answer} {"json": 1}', {"trait": "optimism", "question": "Q"})
        'Rate optimism: Q -> {answer} {"json": 1}'
    """
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def trait_display_name(trait: Trait) -> str:
    """The trait's name as the judge reads it: its folder name with ``_`` and ``-`` as spaces."""
    return trait.short_name.replace("_", " ").replace("-", " ")


def trait_template(trait: Trait) -> str:
    """The trait prompt for ``trait`` with its rubric or name filled in, ``{question}``/``{answer}`` kept.

    The trait's own ``eval_prompt`` wins when ``steering.json`` has one; otherwise the rubric from
    ``definition.txt`` goes into :data:`TRAIT_TEMPLATE`.

    Raises:
        JudgeError: the trait has neither ``definition.txt`` nor an ``eval_prompt``.
    """
    if trait.eval_prompt:
        return fill(trait.eval_prompt, {"trait": trait_display_name(trait)})
    if trait.definition:
        return fill(TRAIT_TEMPLATE, {"definition": trait.definition})
    raise JudgeError(
        f"{trait.path}: trait {trait.name} has no definition.txt and no eval_prompt in steering.json, so the "
        "judge has no rubric; write definition.txt ('Score X (0-100).' / HIGH / MID / LOW / 'Key:')"
    )


def continuation_template(trait: Trait) -> str:
    """The continuation prompt for ``trait``: its rubric, or a one-line rubric naming the trait."""
    rubric = trait.definition or fill(_FALLBACK_RUBRIC, {"trait": trait_display_name(trait)})
    return fill(CONTINUATION_TEMPLATE, {"definition": rubric})


def trait_prompts(trait: Trait, questions: Sequence[str], answers: Sequence[str]) -> list[JudgePrompt]:
    """One trait prompt per (question, answer) pair.

    Example:
        >>> prompts = trait_prompts(trait, trait.questions[:2], answers)
        >>> prompts[0].kind
        'trait'
    """
    pairs = _pairs("questions", questions, "answers", answers)
    template = trait_template(trait)
    digest = sha256_text(template)
    return [JudgePrompt(fill(template, {"question": q, "answer": a}), "trait", digest) for q, a in pairs]


def coherence_prompts(questions: Sequence[str], answers: Sequence[str]) -> list[JudgePrompt]:
    """One coherence prompt per (question, answer) pair."""
    pairs = _pairs("questions", questions, "answers", answers)
    digest = sha256_text(COHERENCE_TEMPLATE)
    return [JudgePrompt(fill(COHERENCE_TEMPLATE, {"question": q, "answer": a}), "coherence", digest) for q, a in pairs]


def relevance_prompts(questions: Sequence[str], answers: Sequence[str]) -> list[JudgePrompt]:
    """One relevance prompt per (question, answer) pair: does the answer address the question."""
    pairs = _pairs("questions", questions, "answers", answers)
    digest = sha256_text(RELEVANCE_TEMPLATE)
    return [JudgePrompt(fill(RELEVANCE_TEMPLATE, {"question": q, "answer": a}), "relevance", digest) for q, a in pairs]


def template_hashes(traits: Sequence[Trait]) -> dict[str, str | None]:
    """The ``prompt_hash`` of every prompt these traits will be judged with, computed up front.

    Keys: ``coherence``, ``relevance``, and per trait ``trait:{name}`` (``None`` when the trait has
    no rubric, so trait scoring would raise) and ``continuation:{name}``. Nothing is scored and the
    result does not depend on what the judge scored before.

    Example:
        >>> sorted(template_hashes([trait]))
        ['coherence', 'continuation:states/optimism', 'relevance', 'trait:states/optimism']
    """
    hashes: dict[str, str | None] = {
        "coherence": sha256_text(COHERENCE_TEMPLATE),
        "relevance": sha256_text(RELEVANCE_TEMPLATE),
    }
    for trait in traits:
        try:
            hashes[f"trait:{trait.name}"] = sha256_text(trait_template(trait))
        except JudgeError:
            hashes[f"trait:{trait.name}"] = None
        hashes[f"continuation:{trait.name}"] = sha256_text(continuation_template(trait))
    return hashes


def continuation_prompts(trait: Trait, prefills: Sequence[str], continuations: Sequence[str]) -> list[JudgePrompt]:
    """One continuation prompt per (prefill, continuation) pair: only the continuation is scored."""
    pairs = _pairs("prefills", prefills, "continuations", continuations)
    template = continuation_template(trait)
    digest = sha256_text(template)
    return [JudgePrompt(fill(template, {"prefill": p, "continuation": c}), "continuation", digest) for p, c in pairs]


def _pairs(a_name: str, a: Sequence[str], b_name: str, b: Sequence[str]) -> list[tuple[str, str]]:
    """Check two parallel lists of strings and zip them."""
    if isinstance(a, str) or isinstance(b, str):
        raise ConfigError(f"{a_name} and {b_name} must be lists of strings, not a single string; wrap it: [text]")
    if len(a) != len(b):
        raise ConfigError(
            f"{len(a)} {a_name} but {len(b)} {b_name}; the judge scores them in pairs, so pass lists of equal length"
        )
    for name, items in ((a_name, a), (b_name, b)):
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise ConfigError(f"{name}[{index}] is {type(item).__name__}, not str; the judge scores text")
    return list(zip(a, b, strict=True))
