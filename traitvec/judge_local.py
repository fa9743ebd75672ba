""":class:`LocalJudge`: judge scores from an in-process Hugging Face model — a smoke test.

The model reads the same prompt as the API judge (through its chat template when it has one) and
the score is read from its next-token distributions, with no sampling.

Tokenizers that write numbers digit by digit (SmolLM2 and Gemma: ``"85"`` → ``"8"``, ``"5"``)
cannot give a 0–100 score in one distribution, so :func:`number_distribution` expands a small tree
over digit tokens: ``P(n)`` is the probability of the digit tokens that spell ``n`` followed by an
*end* — any token that is not a digit. For ``"85"``: ``P("8") · P("5" | "8") · P(end | "85")``;
``P(100)`` goes through ``"1"``, ``"0"``, ``"0"``. Tokens whose text is several digits (``"85"`` as
one token) are children like any other, so one expansion serves both kinds of tokenizer. Branches
whose probability falls below ``prune`` are not expanded. The score is ``Σ n·P(n) / Σ P(n)`` and
the mass ``Σ P(n)``; below ``min_mass`` the judge abstains.

Forward passes are batched: the prompts of a batch go through the model once, left-padded with
explicit position ids, keeping the KV cache; each tree level is then one more pass that appends
all its digit-token nodes to that cache at once, each masked to see only its prompt and its own
ancestors (tree attention), so a score costs about one prompt pass and no cache is ever copied.

A 135M-parameter judge cannot rate traits reliably: scores from it are a smoke test of the
pipeline, not a measurement (``smoke_test`` is True and :func:`~traitvec.judge.make_judge` says so
loudly).
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from ._io import sha256_text
from .errors import JudgeError
from .judge import JudgeScore
from .judge_cache import ScoreCache, cache_key, default_cache_path
from .judge_prompts import COHERENCE_TEMPLATE, JudgePrompt, coherence_prompts, continuation_prompts, trait_prompts
from .models import LoadedModel
from .traits import Trait

__all__ = ["DigitVocab", "LocalJudge", "NextTokenProbs", "expected_score", "number_distribution"]

logger = logging.getLogger(__name__)

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


class LocalJudge:
    """A judge that reads scores from an in-process model's next-token distributions (a smoke test).

    Args:
        loaded: the model (e.g. ``load_model("smollm2-135m-instruct")``).
        min_mass: abstain when the probability of writing a number 0–100 is below this.
        batch_size: prompts per forward pass.
        prune: tree branches less likely than this are not expanded.
        cache_path: SQLite score cache (keyed by the model's fingerprint); ``False`` (default) for
            none, ``None`` for the default file.
        answer_prefix: text put at the start of the model's reply, so that the next tokens are the
            number (small chat models otherwise open with ``"The"`` or ``"["``).
        vocab: the tokens that spell numbers (default: every digit token of the tokenizer).
        show_progress: show a progress bar over batches (tqdm).

    Example:
        >>> judge = LocalJudge(load_model("smollm2-135m-instruct"))
        >>> judge.score_coherence(["What is rain?"], ["Rain is water falling from clouds."])[0].mode
        'local'
    """

    smoke_test = True
    mode: Literal["local"] = "local"

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        min_mass: float = 0.25,
        batch_size: int = 8,
        prune: float = 1e-3,
        cache_path: str | os.PathLike[str] | Literal[False] | None = False,
        answer_prefix: str = "Score:",
        vocab: DigitVocab | None = None,
        show_progress: bool = False,
    ) -> None:
        if not 0.0 <= min_mass <= 1.0:
            raise JudgeError(f"LocalJudge min_mass={min_mass!r} is invalid; expected a number in [0, 1]")
        if batch_size < 1:
            raise JudgeError(f"LocalJudge batch_size={batch_size!r} is invalid; expected a positive integer")
        self.loaded = loaded
        self.name = f"local:{loaded.name}"
        self.min_mass = float(min_mass)
        self.batch_size = int(batch_size)
        self.prune = float(prune)
        self.answer_prefix = answer_prefix
        self.cache_path: Path | None = (
            None if cache_path is False else Path(cache_path) if cache_path is not None else default_cache_path()
        )
        self._cache: ScoreCache | None = None
        self._vocab: DigitVocab | None = vocab
        self.show_progress = show_progress
        self._lock = threading.RLock()
        self._usage = dict.fromkeys(("requests", "cache_hits", "prompt_tokens", "completion_tokens", "retries",
                                     "failures", "abstentions", "ok", "forward_passes"), 0)  # fmt: skip
        self._hashes: dict[str, str] = {}

    # ------------------------------------------------------------------ public

    def score_trait(self, trait: Trait, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """Score each answer for ``trait`` (see :meth:`traitvec.judge.Judge.score_trait`)."""
        prompts = trait_prompts(trait, questions, answers)
        self._note(f"trait:{trait.name}", prompts)
        return self.score_prompts(prompts)

    def score_coherence(self, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """Score each answer for coherence."""
        return self.score_prompts(coherence_prompts(questions, answers))

    def score_continuations(
        self, trait: Trait, prefills: Sequence[str], continuations: Sequence[str]
    ) -> list[JudgeScore]:
        """Score only each continuation for ``trait``, its prefill shown as context."""
        prompts = continuation_prompts(trait, prefills, continuations)
        self._note(f"continuation:{trait.name}", prompts)
        return self.score_prompts(prompts)

    async def ascore_trait(self, trait: Trait, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """:meth:`score_trait` in a worker thread."""
        return await asyncio.to_thread(self.score_trait, trait, questions, answers)

    async def ascore_coherence(self, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """:meth:`score_coherence` in a worker thread."""
        return await asyncio.to_thread(self.score_coherence, questions, answers)

    async def ascore_continuations(
        self, trait: Trait, prefills: Sequence[str], continuations: Sequence[str]
    ) -> list[JudgeScore]:
        """:meth:`score_continuations` in a worker thread."""
        return await asyncio.to_thread(self.score_continuations, trait, prefills, continuations)

    def score_prompts(self, prompts: Sequence[JudgePrompt]) -> list[JudgeScore]:
        """Score ready-made prompts, in order (batched forward passes, cache first)."""
        results: list[JudgeScore | None] = [None] * len(prompts)
        cache = self._cache_db()
        todo: list[int] = []
        for index, prompt in enumerate(prompts):
            hit = cache.get(self._key(prompt)) if cache is not None else None
            if hit is not None:
                results[index] = JudgeScore(hit.score, hit.status, "local", prompt.kind, hit.reason, hit.mass,  # type: ignore[arg-type]
                                            prompt.prompt_hash, self.name, True)  # fmt: skip
                self._count(cache_hits=1)
            else:
                todo.append(index)
        starts: Iterable[int] = range(0, len(todo), self.batch_size)
        if self.show_progress and len(todo) > self.batch_size:
            from tqdm.auto import tqdm  # type: ignore[import-untyped]

            starts = tqdm(starts, desc=f"local judge ({prompts[0].kind})", unit="batch")
        with self._lock:
            for start in starts:
                chunk = todo[start : start + self.batch_size]
                dists = self.distributions([prompts[i].text for i in chunk])
                for index, dist in zip(chunk, dists, strict=True):
                    results[index] = self._score(prompts[index], dist)
        done = [r for r in results if r is not None]
        assert len(done) == len(prompts)
        return done

    def distributions(self, texts: Sequence[str]) -> list[dict[int, float]]:
        """``{n: P(n)}`` for each judge prompt (see :func:`number_distribution`)."""
        if not texts:
            return []
        with self._lock, torch.inference_mode():
            vocab = self._digit_vocab()
            root = self._root(texts, vocab)
            return number_distribution(lambda requests: self._next_probs(root, vocab, requests), vocab, len(texts),
                                       prune=self.prune)  # fmt: skip

    def usage(self) -> dict[str, Any]:
        """Totals since the judge was made: forward passes, prompt tokens, cache hits, outcomes."""
        with self._lock:
            return dict(self._usage)

    def describe(self) -> dict[str, Any]:
        """Name, mode, model fingerprint, settings, prompt hashes and the smoke-test flag."""
        with self._lock:
            hashes = {"coherence": sha256_text(COHERENCE_TEMPLATE), **self._hashes}
        return {
            "class": type(self).__name__,
            "name": self.name,
            "mode": "local",
            "model": self.loaded.name,
            "fingerprint": self.loaded.fingerprint,
            "base_url_host": None,
            "min_mass": self.min_mass,
            "prune": self.prune,
            "answer_prefix": self.answer_prefix,
            "batch_size": self.batch_size,
            "cache": str(self.cache_path) if self.cache_path else None,
            "prompt_hashes": hashes,
            "smoke_test": True,
        }

    def __repr__(self) -> str:
        return f"LocalJudge(model={self.loaded.name!r}, batch_size={self.batch_size}, smoke_test=True)"

    # ------------------------------------------------------------------ internals

    def _note(self, label: str, prompts: Sequence[JudgePrompt]) -> None:
        if prompts:
            with self._lock:
                self._hashes[label] = prompts[0].prompt_hash

    def _count(self, **amounts: int) -> None:
        with self._lock:
            for key, amount in amounts.items():
                self._usage[key] += amount

    def _key(self, prompt: JudgePrompt) -> str:
        params = {"mode": "local", "min_mass": self.min_mass, "prune": self.prune, "prefix": self.answer_prefix}
        return cache_key(f"{self.name}@{self.loaded.fingerprint}", prompt.text, params)

    def _cache_db(self) -> ScoreCache | None:
        if self.cache_path is None:
            return None
        with self._lock:
            if self._cache is None:
                self._cache = ScoreCache(self.cache_path)
            return self._cache

    def _score(self, prompt: JudgePrompt, dist: Mapping[int, float]) -> JudgeScore:
        score, mass = expected_score(dist)
        if score is None or mass < self.min_mass:
            reason = f"only {mass:.3f} of the probability is on writing a number 0-100 (threshold {self.min_mass:g})"
            result = JudgeScore(None, "abstained", "local", prompt.kind, reason, mass, prompt.prompt_hash, self.name)
            self._count(abstentions=1)
        else:
            result = JudgeScore(score, "ok", "local", prompt.kind, None, mass, prompt.prompt_hash, self.name)
            self._count(ok=1)
        cache = self._cache_db()
        if cache is not None:
            cache.put(self._key(prompt), judge=self.name, kind=result.kind, prompt_hash=result.prompt_hash,
                      score=result.score, status=result.status, mode="local", mass=result.mass,
                      reason=result.reason)  # fmt: skip
        return result

    def _digit_vocab(self) -> DigitVocab:
        if self._vocab is None:
            self._vocab = DigitVocab.from_tokenizer(self.loaded.tokenizer)
        return self._vocab

    def _encode(self, text: str) -> list[int]:
        tokenizer = self.loaded.tokenizer
        if self.loaded.use_chat_template:
            rendered = tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
            return list(tokenizer(rendered + self.answer_prefix, add_special_tokens=False)["input_ids"])
        return list(tokenizer(f"{text}\n\n{self.answer_prefix}")["input_ids"])

    def _forward(self, keep: int = 1, **inputs: Any) -> Any:
        model = self.loaded.model
        cache = inputs.pop("cache", None)
        parameters = inspect.signature(model.forward).parameters
        if cache is not None:
            inputs["cache" if "cache" in parameters else "past_key_values"] = cache
        if "logits_to_keep" in parameters:
            inputs["logits_to_keep"] = keep  # only the last ``keep`` positions' distributions are read
        self._count(forward_passes=1)
        return model(**inputs, use_cache=True)

    def _root(self, texts: Sequence[str], vocab: DigitVocab) -> _Root:
        """One left-padded forward pass over the prompts, keeping the cache."""
        encoded = [self._encode(t) for t in texts]
        device = self.loaded.device
        width = max(len(ids) for ids in encoded)
        pad = self.loaded.tokenizer.pad_token_id
        input_ids = torch.full((len(encoded), width), int(pad), dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._forward(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                            position_ids=positions.to(device))  # fmt: skip
        self._count(prompt_tokens=int(mask.sum()), requests=len(encoded))
        probs = torch.softmax(out.logits[:, -1, :].float(), dim=-1).cpu()
        cache = out.cache if hasattr(out, "cache") else out.past_key_values
        window = _sliding_window(self.loaded.model.config)
        # each level appends at most one slot per digit token to a row, and numbers 0-100 take at most
        # 4 levels (a leading space, then up to 3 digits): the cache must hold that within the window
        room = _MAX_LEVELS * len(set(vocab.first) | set(vocab.cont) | set(vocab.lead))
        tree = window is None or width + room < window
        return _Root(probs=probs, cache=cache, mask=mask.to(device), lengths=mask.sum(-1).to(device),
                     kv_length=width, tree=tree)  # fmt: skip

    def _next_probs(
        self, root: _Root, vocab: DigitVocab, requests: Sequence[tuple[int, tuple[int, ...]]]
    ) -> list[dict[int, float]]:
        """Distributions after each (prompt, digit tokens) request: one tree level in one forward pass.

        Tree attention: every node of the level is appended to its prompt's row of the shared KV
        cache as one more position, and a 4D mask lets it see only its prompt's real tokens, its
        own ancestors (appended at earlier levels) and itself. Siblings share a position id and
        never see each other, so each node's distribution is exactly that of its prompt followed by
        its digit tokens, and no cache is ever copied per node.
        """
        if not root.tree:
            return self._next_probs_copying(root, vocab, requests)
        ids = sorted(set(vocab.first) | set(vocab.cont) | set(vocab.lead))
        index = torch.tensor(ids, dtype=torch.long)
        out: list[dict[int, float] | None] = [None] * len(requests)
        per_row: dict[int, list[int]] = defaultdict(list)
        for k, (row, suffix) in enumerate(requests):
            if not suffix:
                out[k] = dict(zip(ids, root.probs[row, index].tolist(), strict=True))
            else:
                per_row[row].append(k)
        if per_row:
            device = root.mask.device
            rows = root.mask.shape[0]
            width = max(len(ks) for ks in per_row.values())
            past = root.kv_length
            dtype = self.loaded.model.dtype
            tokens = torch.full((rows, width), int(self.loaded.tokenizer.pad_token_id), dtype=torch.long)
            positions = torch.zeros((rows, width), dtype=torch.long)
            allowed = torch.zeros((rows, width, past + width), dtype=torch.bool)
            allowed[:, :, : root.mask.shape[1]] = root.mask.bool().cpu()[:, None, :]
            for j in range(width):
                allowed[:, j, past + j] = True  # every query sees itself (unused slots see only that)
            for row, ks in per_row.items():
                for j, k in enumerate(ks):
                    suffix = requests[k][1]
                    tokens[row, j] = suffix[-1]
                    positions[row, j] = int(root.lengths[row]) + len(suffix) - 1
                    for depth in range(1, len(suffix)):
                        allowed[row, j, root.slots[(row, suffix[:depth])]] = True
                    root.slots[(row, suffix)] = past + j
            mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
            result = self._forward(keep=width, input_ids=tokens.to(device), attention_mask=mask[:, None].to(device),
                                   position_ids=positions.to(device), cache=root.cache)  # fmt: skip
            root.cache = result.cache if hasattr(result, "cache") else result.past_key_values
            root.kv_length = past + width
            probs = torch.softmax(result.logits[:, -width:, :].float(), dim=-1)[:, :, index].cpu()
            for row, ks in per_row.items():
                for j, k in enumerate(ks):
                    out[k] = dict(zip(ids, probs[row, j].tolist(), strict=True))
        return [o if o is not None else {} for o in out]

    def _next_probs_copying(
        self, root: _Root, vocab: DigitVocab, requests: Sequence[tuple[int, tuple[int, ...]]]
    ) -> list[dict[int, float]]:
        """As :meth:`_next_probs`, one new token per node on a copy of its parent's cache: for sliding-window
        models whose cache would drop prompt tokens once the tree's nodes are appended."""
        ids = sorted(set(vocab.first) | set(vocab.cont) | set(vocab.lead))
        index = torch.tensor(ids, dtype=torch.long)
        out: list[dict[int, float] | None] = [None] * len(requests)
        groups: dict[int, tuple[Any, list[tuple[int, int]]]] = {}
        for k, (row, suffix) in enumerate(requests):
            if not suffix:
                out[k] = dict(zip(ids, root.probs[row, index].tolist(), strict=True))
                continue
            parent = (root.cache, row) if len(suffix) == 1 else root.nodes[(row, suffix[:-1])]
            groups.setdefault(id(parent[0]), (parent[0], []))[1].append((k, parent[1]))
        nodes: dict[tuple[int, tuple[int, ...]], tuple[Any, int]] = {}
        device = root.mask.device
        chunk = max(self.batch_size, 16)
        for parent_cache, members in groups.values():
            for start in range(0, len(members), chunk):
                part = members[start : start + chunk]
                prompts = torch.tensor([requests[k][0] for k, _ in part], dtype=torch.long, device=device)
                depth = len(requests[part[0][0]][1])
                tokens = torch.tensor([[requests[k][1][-1]] for k, _ in part], dtype=torch.long, device=device)
                cache = _select_rows(parent_cache, torch.tensor([r for _, r in part], dtype=torch.long, device=device))
                mask = torch.cat([root.mask[prompts], torch.ones((len(part), depth), dtype=root.mask.dtype,
                                                                  device=device)], dim=1)  # fmt: skip
                positions = (root.lengths[prompts] + depth - 1)[:, None]
                result = self._forward(input_ids=tokens, attention_mask=mask, position_ids=positions, cache=cache)
                cache = result.cache if hasattr(result, "cache") else result.past_key_values
                probs = torch.softmax(result.logits[:, -1, :].float(), dim=-1).cpu()
                for j, (k, _) in enumerate(part):
                    out[k] = dict(zip(ids, probs[j, index].tolist(), strict=True))
                    if _may_extend(requests[k][1], vocab):
                        nodes[requests[k]] = (cache, j)
        root.nodes = nodes  # only the latest level's caches are kept
        return [o if o is not None else {} for o in out]


def _may_extend(suffix: tuple[int, ...], vocab: DigitVocab) -> bool:
    """Whether a node spelling ``suffix`` can still grow into a longer number 0–100."""
    digits = "".join(vocab.first.get(t, "") if n == 0 else vocab.cont.get(t, "") for n, t in enumerate(suffix))
    if not digits:
        return True  # a leading space: digits follow
    return any(_valid(digits + text) for text in set(vocab.cont.values()))


def _select_rows(cache: Any, rows: torch.Tensor) -> Any:
    """A cache holding ``rows`` of ``cache``, leaving ``cache`` itself untouched."""
    layers = getattr(cache, "layers", None)
    if isinstance(layers, list):
        selected = copy.copy(cache)  # layer tensors are replaced, never written in place, so shallow is safe
        selected.layers = [copy.copy(layer) for layer in layers]
    else:
        selected = copy.deepcopy(cache)
    selected.batch_select_indices(rows)
    return selected


_MAX_LEVELS = 4  # tree levels after the prompt: a leading space, then up to three digit tokens


def _sliding_window(config: Any) -> int | None:
    """The smallest attention window of the model's layers, or None when every layer sees everything."""
    config = getattr(config, "text_config", None) or config
    window = getattr(config, "sliding_window", None)
    if not window or getattr(config, "use_sliding_window", True) is False:
        return None
    types = getattr(config, "layer_types", None)
    if types is not None and not any("sliding" in str(t) for t in types):
        return None
    return int(window)


@dataclass
class _Root:
    probs: torch.Tensor  # [batch, vocab] next-token probabilities after each prompt
    cache: Any  # the model's KV cache for the batch
    mask: torch.Tensor  # [batch, width] attention mask (left padding)
    lengths: torch.Tensor  # [batch] real tokens per prompt
    kv_length: int  # positions in the cache: the padded prompts, then every tree node appended so far
    tree: bool = True  # tree attention on the shared cache; False: per-node cache copies (sliding windows)
    slots: dict[tuple[int, tuple[int, ...]], int] = field(default_factory=dict)  # node → its cache position
    nodes: dict[tuple[int, tuple[int, ...]], tuple[Any, int]] = field(default_factory=dict)  # node → (cache, row)
