""":class:`LocalJudge`: judge scores from an in-process Hugging Face model — a smoke test.

The model reads the same prompt as the API judge (through its chat template when it has one) and
the score is read from its next-token distributions, with no sampling: ``P(n)`` for every number
0–100 comes from a small tree over digit tokens (:mod:`traitvec.judge.digits`), the score is
``Σ n·P(n) / Σ P(n)`` and the mass ``Σ P(n)``; below ``min_mass`` the judge abstains.

Forward passes are batched: the prompts of a batch go through the model once, left-padded with
explicit position ids (:func:`traitvec.batching.pad_batch`), keeping the KV cache; each tree level
is then one more pass that appends all its digit-token nodes to that cache at once, each masked to
see only its prompt and its own ancestors (tree attention), so a score costs about one prompt pass
and no cache is ever copied.

Scores are cached in the same SQLite file as the API judge's (``cache_dir()/judge-cache.sqlite``
by default), keyed by the model's fingerprint, dtype and chat-template use, the scoring settings and
the full prompt: scoring the same answers again makes no forward pass.

A 135M-parameter judge cannot rate traits reliably: scores from it are a smoke test of the
pipeline, not a measurement (``smoke_test`` is True and :func:`~traitvec.judge.make_judge` says so
loudly).
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from .._io import sha256_text
from ..batching import pad_batch
from ..errors import JudgeError
from ..models import LoadedModel
from ._deferred import DeferredModel
from .base import BaseJudge
from .cache import cache_key, default_cache_path
from .digits import MAX_LEVELS, DigitVocab, expected_score, may_extend, number_distribution
from .prompts import JudgePrompt
from .scores import JudgeScore

__all__ = ["LocalJudge"]

logger = logging.getLogger(__name__)

Request = tuple[int, tuple[int, ...]]  # (prompt index, digit tokens generated so far)


class LocalJudge(BaseJudge):
    """A judge that reads scores from an in-process model's next-token distributions (a smoke test).

    Args:
        loaded: the model (e.g. ``load_model("smollm2-135m-instruct")``), or a
            :class:`~traitvec.judge._deferred.DeferredModel` that loads when the judge first scores.
        min_mass: abstain when the probability of writing a number 0–100 is below this.
        batch_size: prompts per forward pass.
        prune: tree branches less likely than this are not expanded.
        cache_path: SQLite score cache (keyed by the model's fingerprint); ``None`` (default) for
            the default file ``cache_dir()/judge-cache.sqlite``, ``False`` for none.
        answer_prefix: text put at the start of the model's reply, so that the next tokens are the
            number (small chat models otherwise open with ``"The"`` or ``"["``).
        vocab: the tokens that spell numbers (default: every digit token of the tokenizer).
        show_progress: show a progress bar over batches (tqdm).

    :meth:`usage` counts forward passes (``forward_passes``), prompt tokens, cache hits and outcomes.

    Example:
        >>> judge = LocalJudge(load_model("smollm2-135m-instruct"))
        >>> judge.score_coherence(["What is rain?"], ["Rain is water falling from clouds."])[0].mode
        'local'
    """

    smoke_test = True
    extra_usage = ("forward_passes",)
    mode: Literal["local"] = "local"

    def __init__(
        self,
        loaded: LoadedModel | DeferredModel,
        *,
        min_mass: float = 0.25,
        batch_size: int = 8,
        prune: float = 1e-3,
        cache_path: str | os.PathLike[str] | Literal[False] | None = None,
        answer_prefix: str = "Score:",
        vocab: DigitVocab | None = None,
        show_progress: bool = False,
    ) -> None:
        if not 0.0 <= min_mass <= 1.0:
            raise JudgeError(f"LocalJudge min_mass={min_mass!r} is invalid; expected a number in [0, 1]")
        if batch_size < 1:
            raise JudgeError(f"LocalJudge batch_size={batch_size!r} is invalid; expected a positive integer")
        path = None if cache_path is False else Path(cache_path) if cache_path is not None else default_cache_path()
        super().__init__(f"local:{loaded.name}", cache_path=path)
        self._model = loaded if isinstance(loaded, DeferredModel) else DeferredModel.of(loaded)
        self.fingerprint: str = str(self._model.identity["fingerprint"])
        self.min_mass = float(min_mass)
        self.batch_size = int(batch_size)
        self.prune = float(prune)
        self.answer_prefix = answer_prefix
        self._vocab: DigitVocab | None = vocab
        self._custom_vocab = None if vocab is None else _vocab_digest(vocab)
        self.show_progress = show_progress

    # ------------------------------------------------------------------ public

    @property
    def loaded(self) -> LoadedModel:
        """The judge's model (loaded now when it was deferred)."""
        return self._model.get()

    def score_prompts(self, prompts: Sequence[JudgePrompt]) -> list[JudgeScore]:
        """Score ready-made prompts, in order (batched forward passes, cache first)."""
        results: list[JudgeScore | None] = [None] * len(prompts)
        todo: list[int] = []
        for index, prompt in enumerate(prompts):
            hit = self._cached(prompt, self._key(prompt)) if self.cache_path is not None else None
            if hit is None:
                todo.append(index)
            else:
                results[index] = hit
        starts: Iterable[int] = range(0, len(todo), self.batch_size)
        if self.show_progress and len(todo) > self.batch_size:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"local judge ({prompts[0].kind})", unit="batch")
        with self._lock:
            for start in starts:
                chunk = todo[start : start + self.batch_size]
                dists = self.distributions([prompts[i].text for i in chunk])
                for index, dist in zip(chunk, dists, strict=True):
                    results[index] = self._score(prompts[index], dist)
        done = [r for r in results if r is not None]
        if len(done) != len(prompts):
            raise AssertionError(f"{len(prompts) - len(done)} of {len(prompts)} prompts were left unscored")
        return done

    async def ascore_prompts(self, prompts: Sequence[JudgePrompt]) -> list[JudgeScore]:
        """:meth:`score_prompts` in a worker thread."""
        return await asyncio.to_thread(self.score_prompts, prompts)

    def distributions(self, texts: Sequence[str]) -> list[dict[int, float]]:
        """``{n: P(n)}`` for each judge prompt (see :func:`~traitvec.judge.digits.number_distribution`)."""
        if not texts:
            return []
        with self._lock, torch.inference_mode():
            vocab = self._digit_vocab()
            root = self._root(texts, vocab)
            return number_distribution(lambda requests: self._next_probs(root, vocab, requests), vocab, len(texts),
                                       prune=self.prune)  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """Name, mode, model fingerprint, settings, prompt hashes and the smoke-test flag."""
        return {
            "class": type(self).__name__,
            "name": self.name,
            "mode": "local",
            "model": self._model.name,
            "fingerprint": self.fingerprint,
            "base_url_host": None,
            "min_mass": self.min_mass,
            "prune": self.prune,
            "answer_prefix": self.answer_prefix,
            "batch_size": self.batch_size,
            "cache": str(self.cache_path) if self.cache_path else None,
            "prompt_hashes": self.prompt_hashes(),
            "smoke_test": True,
        }

    def __repr__(self) -> str:
        return f"LocalJudge(model={self._model.name!r}, batch_size={self.batch_size}, smoke_test=True)"

    # ------------------------------------------------------------------ internals

    def _key_settings(self) -> dict[str, Any]:
        """What changes this judge's scores: the model and how it reads prompts, and the scoring settings."""
        return {"mode": "local", "host": None, **self._params()}

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"mode": "local", "min_mass": self.min_mass, "prune": self.prune,
                                  "prefix": self.answer_prefix}  # fmt: skip
        identity = self._model.identity
        params.update(model=self.fingerprint, dtype=identity["dtype"], chat_template=identity["chat_template"])
        if self._custom_vocab is not None:
            params["vocab"] = self._custom_vocab
        return params

    def _key(self, prompt: JudgePrompt) -> str:
        return cache_key(f"{self.name}@{self.fingerprint}", prompt.text, self._params())

    def _score(self, prompt: JudgePrompt, dist: Mapping[int, float]) -> JudgeScore:
        score, mass = expected_score(dist)
        if score is None or mass < self.min_mass:
            reason = f"only {mass:.3f} of the probability is on writing a number 0-100 (threshold {self.min_mass:g})"
            result = JudgeScore(None, "abstained", "local", prompt.kind, reason, mass, prompt.prompt_hash, self.name)
            self._count(abstentions=1)
        else:
            result = JudgeScore(score, "ok", "local", prompt.kind, None, mass, prompt.prompt_hash, self.name)
            self._count(ok=1)
        self._store(self._key(prompt), result)
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
        device = self.loaded.device
        batch = pad_batch([self._encode(t) for t in texts], int(self.loaded.tokenizer.pad_token_id), side="left")
        mask = batch.attention_mask.to(device)
        out = self._forward(input_ids=batch.input_ids.to(device), attention_mask=mask,
                            position_ids=batch.position_ids.to(device))  # fmt: skip
        self._count(prompt_tokens=sum(batch.lengths), requests=len(batch.lengths))
        probs = torch.softmax(out.logits[:, -1, :].float(), dim=-1).cpu()
        cache = out.cache if hasattr(out, "cache") else out.past_key_values
        window = _sliding_window(self.loaded.model.config)
        # each level appends at most one slot per digit token to a row, and numbers 0-100 take at most
        # MAX_LEVELS levels (a leading space, then up to 3 digits): the cache must hold that within the window
        room = MAX_LEVELS * len(set(vocab.first) | set(vocab.cont) | set(vocab.lead))
        tree = window is None or batch.width + room < window
        lengths = torch.tensor(batch.lengths, dtype=torch.long, device=device)
        return _Root(probs=probs, cache=cache, mask=mask, lengths=lengths, kv_length=batch.width, tree=tree)

    def _next_probs(self, root: _Root, vocab: DigitVocab, requests: Sequence[Request]) -> list[dict[int, float]]:
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
            model: Any = self.loaded.model  # a transformers model: its dtype is a property torch's stubs do not know
            dtype: torch.dtype = model.dtype
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
        self, root: _Root, vocab: DigitVocab, requests: Sequence[Request]
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
                    if may_extend(requests[k][1], vocab):
                        nodes[requests[k]] = (cache, j)
        root.nodes = nodes  # only the latest level's caches are kept
        return [o if o is not None else {} for o in out]


def _vocab_digest(vocab: DigitVocab) -> str:
    """A hash of a hand-given digit vocabulary (it changes which numbers the judge can write)."""
    parts = [sorted(vocab.first.items()), sorted(vocab.cont.items()), sorted(vocab.lead.items())]
    return sha256_text(json.dumps(parts))


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
