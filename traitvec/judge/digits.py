"""The digit tree: reading ``P(n)`` for every number 0–100 from next-token distributions.

Tokenizers that write numbers digit by digit (SmolLM2 and Gemma: ``"85"`` → ``"8"``, ``"5"``)
cannot give a 0–100 score in one distribution, so :func:`number_distribution` expands a small tree
over digit tokens: ``P(n)`` is the probability of the digit tokens that spell ``n`` followed by an
*end* — any token that is not a digit. For ``"85"``: ``P("8") · P("5" | "8") · P(end | "85")``;
``P(100)`` goes through ``"1"``, ``"0"``, ``"0"``. Tokens whose text is several digits (``"85"`` as
one token) are children like any other, so one expansion serves both kinds of tokenizer. Branches
whose probability falls below ``prune`` are not expanded. The score is ``Σ n·P(n) / Σ P(n)``
(:func:`expected_score`) and the mass ``Σ P(n)``.

Pure arithmetic over a callback: no model here. :class:`~traitvec.judge.local.LocalJudge` supplies
the callback (one batched forward pass per tree level).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import JudgeError

__all__ = ["MAX_LEVELS", "DigitVocab", "NextTokenProbs", "expected_score", "may_extend", "number_distribution"]

# (prompt index, digit tokens generated so far) → probability of each digit token id next.
NextTokenProbs = Callable[[Sequence[tuple[int, tuple[int, ...]]]], Sequence[Mapping[int, float]]]

_SPACE_MARKERS = ("Ġ", "▁", " ", "Ċ", "\t", "\n")


@dataclass(frozen=True)
class DigitVocab:
    """The tokens that can spell a number 0–100.

    Attributes:
        first: token id → digits, for tokens that may start the number (leading whitespace allowed,
            e.g. ``" 8"``).
        cont: token id → digits, for tokens that may continue it (digits only, no whitespace).
        lead: token id → text of whitespace-only tokens, allowed once before the first digit
            (SmolLM2 writes ``"Score: 7"`` as ``":"``, ``" "``, ``"7"``).
    """

    first: Mapping[int, str]
    cont: Mapping[int, str]
    lead: Mapping[int, str] = field(default_factory=dict)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> DigitVocab:
        """Find every token whose text is 1–3 ASCII digits (optionally after whitespace, to start).

        Raises:
            JudgeError: the tokenizer has no digit tokens at all.
        """
        special = {int(i) for i in getattr(tokenizer, "all_special_ids", []) if i is not None}
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        first: dict[int, str] = {}
        cont: dict[int, str] = {}
        lead: dict[int, str] = {}
        for token_id, piece in enumerate(pieces):
            if token_id in special or not piece or len(piece) > 8:
                continue
            if not any("0" <= c <= "9" for c in piece):
                if len(piece) <= 2 and (piece.startswith(_SPACE_MARKERS) or not piece.strip()):
                    text = tokenizer.decode([token_id])
                    if text and not text.strip() and len(text) <= 2:
                        lead[token_id] = text
                continue
            text = tokenizer.decode([token_id])
            core = text.strip()
            if not (core and core.isascii() and core.isdigit() and len(core) <= 3) or text.rstrip() != text:
                continue
            first[token_id] = core
            if text == core and not piece.startswith(_SPACE_MARKERS):
                cont[token_id] = core
        if not first:
            raise JudgeError(f"tokenizer {type(tokenizer).__name__} has no digit tokens; it cannot be a local judge")
        return cls(first, cont, lead)


def _valid(digits: str) -> bool:
    """True for the digits of an integer 0–100 written without leading zeros."""
    return len(digits) <= 3 and (digits == "0" or not digits.startswith("0")) and int(digits) <= 100


def number_distribution(
    next_token_probs: NextTokenProbs,
    vocab: DigitVocab,
    n_prompts: int,
    *,
    prune: float = 1e-3,
) -> list[dict[int, float]]:
    """``P(n)`` for n = 0..100 for each prompt, by a breadth-first tree over digit tokens.

    ``P(n)`` is the probability that the continuation spells ``n`` with digit tokens and then
    ends (the next token is not a digit): the product of the digit tokens' probabilities times
    ``1 − Σ P(digit token | digits so far)``. Different tokenizations of the same number add up. One
    whitespace-only token (``vocab.lead``) may come before the first digit.
    Nodes whose path probability is below ``prune`` are not expanded (their mass is lost, which can
    only lower the reported mass).

    Args:
        next_token_probs: called once per tree level with ``(prompt index, digit token ids so far)``
            pairs; returns, for each, the probability of each token id of ``vocab`` (a mapping; ids
            left out count as 0).
        vocab: the digit tokens (:meth:`DigitVocab.from_tokenizer`).
        n_prompts: number of prompts.
        prune: smallest path probability worth a forward pass.

    Returns:
        One ``{n: P(n)}`` per prompt (only numbers with some probability appear).

    Example:
        >>> vocab = DigitVocab(first={8: "8", 5: "5"}, cont={8: "8", 5: "5"})
        >>> table = {(): {8: 0.5, 5: 0.5}, (8,): {5: 0.5}, (5,): {}, (8, 5): {}}
        >>> number_distribution(lambda reqs: [table[s] for _, s in reqs], vocab, 1)
        [{8: 0.25, 5: 0.5, 85: 0.25}]
    """
    dists: list[dict[int, float]] = [defaultdict(float) for _ in range(n_prompts)]
    frontier: list[tuple[int, tuple[int, ...], str, float]] = [(i, (), "", 1.0) for i in range(n_prompts)]
    while frontier:
        probs = next_token_probs([(i, suffix) for i, suffix, _, _ in frontier])
        if len(probs) != len(frontier):
            raise ValueError(f"next_token_probs returned {len(probs)} distributions for {len(frontier)} requests")
        following: list[tuple[int, tuple[int, ...], str, float]] = []
        for (i, suffix, digits, path), table in zip(frontier, probs, strict=True):
            if digits:
                continuing = sum(table.get(t, 0.0) for t in vocab.cont)
                end = min(1.0, max(0.0, 1.0 - continuing))
                dists[i][int(digits)] += path * end
            candidates = vocab.cont if suffix else vocab.first
            if not suffix:
                for token_id in vocab.lead:  # a space before the number: then digits only
                    q = table.get(token_id, 0.0)
                    if q > 0.0 and q >= prune:
                        following.append((i, (token_id,), "", q))
            for token_id, text in candidates.items():
                q = table.get(token_id, 0.0)
                if q <= 0.0:
                    continue
                spelled = digits + text
                if path * q < prune or not _valid(spelled):
                    continue
                following.append((i, (*suffix, token_id), spelled, path * q))
        frontier = following
    return [dict(d) for d in dists]


def expected_score(distribution: Mapping[int, float]) -> tuple[float | None, float]:
    """``(Σ n·P(n) / Σ P(n), Σ P(n))``; the score is None when the mass is 0."""
    mass = sum(distribution.values())
    if mass <= 0:
        return None, 0.0
    return sum(n * p for n, p in distribution.items()) / mass, mass


def may_extend(suffix: tuple[int, ...], vocab: DigitVocab) -> bool:
    """Whether a node spelling ``suffix`` can still grow into a longer number 0–100."""
    digits = "".join(vocab.first.get(t, "") if n == 0 else vocab.cont.get(t, "") for n, t in enumerate(suffix))
    if not digits:
        return True  # a leading space: digits follow
    return any(_valid(digits + text) for text in set(vocab.cont.values()))


MAX_LEVELS = 4  # tree levels after the prompt: a leading space, then up to three digit tokens
