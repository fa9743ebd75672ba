"""Comparing two models on the same token ids: how far each trait's projection moves from A to B.

Outputs (paths from :class:`~traitvec.stages.layout.OutputLayout`) under
``experiments/{A}/compare/{B}/{name}/compare.json``::

    {"traits": {"cat/trait": {"d", "ci95", "mean_shift", "mean_shift_ci95", "sd_shift", "n_texts",
                              "mean_a", "mean_b", "per_text": [...], "top_tokens": [...]}},
     "experiments", "models", "vectors", "input", "statistics", "inputs_key", ...}

Every text is tokenised once (by A's tokenizer, or chat template for conversations) and those
exact ids run through both models; before anything is computed, B's tokenizer must give the same
ids for every text, else the comparison is refused (naming the first text and token that differ).
Both models are read with the vectors of experiment A (its extraction folders, the evaluation's
recommendation unless overridden), in A's spread units, centred as the monitor centres them.

Per text, the summary mean (the monitor's summary tokens) under A and under B; per trait over
texts (see :data:`STATISTICS`): the mean paired shift ``B − A`` with a t-interval over the
per-text shifts, and Cohen's d (the mean shift over the pooled standard deviation of the two
models' per-text means) with a percentile-bootstrap interval resampling texts (paired).
Per text, the same numbers over its tokens (descriptive: tokens of one text are not independent).
The tokens with the largest ``|shift|`` over all texts are listed with their context.

Texts are read in groups kept in ``.parts/`` (:mod:`traitvec.stages.parts`), so an interrupted
comparison resumes; the inputs key covers both models' :meth:`~traitvec.models.ModelPool.model_key`,
every readout, the input file and the statistics' settings.
"""

from __future__ import annotations

import heapq
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import __version__
from .._io import write_json
from ..errors import ConfigError
from ..experiments import ExperimentConfig
from ..models import LoadedModel, ModelPool
from ..monitor import MonitorText, Reading, chunked, project_texts
from ..stats import mean_ci
from .layout import ComparePaths, OutputLayout
from .monitor import check_name
from .parts import PartStore
from .readouts import ReadoutChoice, ResolvedReadout, resolve_readouts
from .resume import inputs_key, read_if_current
from .texts import InputFile, check_input, monitor_texts

__all__ = ["CompareSettings", "CompareResult", "run_compare", "STATISTICS", "cohens_d_paired_means"]

FORMAT = "traitvec.compare/1"
STATISTICS = (
    "shift = B − A of each text's summary mean, in spread units of A's vectors; mean_shift_ci95: t-interval over "
    "the per-text paired shifts; d: mean shift / pooled SD of the per-text means of A and B (sqrt of the mean "
    "of the two variances); ci95: 95% percentile bootstrap of d resampling texts (pairs kept together)"
)


@dataclass(frozen=True)
class CompareSettings:
    """How to compare.

    Attributes:
        choice: method / position / layers overrides for A's vectors.
        top_tokens: how many of the largest token shifts to list per trait.
        bootstrap: bootstrap resamples of d's interval.
        seed: the bootstrap's seed.
        max_batch_tokens: padded tokens per batch (default: A's experiment setting, else 1024 on CPU).
    """

    choice: ReadoutChoice = field(default_factory=ReadoutChoice)
    top_tokens: int = 20
    bootstrap: int = 2000
    seed: int = 0
    max_batch_tokens: int | None = None

    def __post_init__(self) -> None:
        for name in ("top_tokens", "bootstrap"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(
                    f"CompareSettings.{name} = {value!r}; expected a positive integer",
                    setting=f"CompareSettings.{name}",
                )


@dataclass(frozen=True)
class CompareResult:
    """What a comparison produced: its paths, the number of texts, whether it ran, and compare.json."""

    paths: ComparePaths
    texts: int
    recomputed: bool
    document: dict[str, Any]


def run_compare(
    a: ExperimentConfig,
    b: ExperimentConfig,
    traits: Sequence[str],
    input: str | os.PathLike[str],
    *,
    name: str | None = None,
    settings: CompareSettings | None = None,
    pool: ModelPool | None = None,
    force: bool = False,
) -> CompareResult:
    """The projection shift from A's model to B's on the same token ids, per trait.

    Args:
        a: the reference experiment (its vectors are used; the outputs go under it).
        b: the other experiment (e.g. the fine-tune, or the instruct sibling).
        traits: ``cat/trait`` names extracted on ``a``.
        input: a .txt or .jsonl file of texts (as for the monitor).
        name: the comparison's folder under ``compare/{b}/`` (default: the input file's stem).
        settings: vector overrides and statistics settings.
        pool: loads the models (once each) when something must be computed.
        force: recompute even when compare.json is current.

    Raises:
        ConfigError: the two tokenizers give different ids for some text (or any monitor error).
        VectorError: a vector does not fit B's width.

    Example:
        >>> result = run_compare(load_experiment("base"), load_experiment("tuned"), ["styles/formality"], "t.txt")
        >>> result.document["traits"]["styles/formality"]["d"]
    """
    settings = settings or CompareSettings()
    pool = pool or ModelPool()
    source = check_input(input)
    paths = OutputLayout(a.path).compare(b.name, check_name(name or source.path.stem, "run_compare(name=)"))
    resolved = resolve_readouts(OutputLayout(a.path), traits, settings.choice)
    key = inputs_key(
        {
            "format": FORMAT,
            "a": pool.model_key(a),
            "b": pool.model_key(b),
            "readouts": [r.key for r in resolved],
            "input": {"sha256": source.sha256, "kind": source.kind},
            "statistics": [settings.top_tokens, settings.bootstrap, settings.seed],
        }
    )
    current = read_if_current(paths.compare_json, key, force=force)
    if current is not None:
        return CompareResult(paths, int(current.get("input", {}).get("texts", 0)), False, current)
    loaded_a, loaded_b = pool.get(a), pool.get(b)
    for r in resolved:
        r.vector.check_model(loaded_a)
        r.vector.check_model(loaded_b)
    _check_same_ids(loaded_a, loaded_b, source, a.name, b.name)
    entries = _read_groups(loaded_a, loaded_b, source, resolved, settings, paths, key, a.max_batch_tokens)
    names = [r.readout.name for r in resolved]
    document = {
        "traits": {n: _trait_summary(n, entries, settings) for n in names},
        "experiments": {"a": a.name, "b": b.name},
        "models": {"a": loaded_a.describe(), "b": loaded_b.describe()},
        "vectors": {r.readout.name: r.provenance for r in resolved},
        "input": source.describe(),
        "statistics": STATISTICS,
        "format": FORMAT,
        "inputs_key": key,
        "traitvec_version": __version__,
    }
    write_json(paths.compare_json, document)
    PartStore(paths.parts_dir, key).remove()
    return CompareResult(paths, source.rows, True, document)


def _check_same_ids(loaded_a: LoadedModel, loaded_b: LoadedModel, source: InputFile, a: str, b: str) -> None:
    """Refuse when B's tokenizer (or chat template) gives other token ids than A's for any text."""
    if loaded_a is loaded_b:
        return
    for x, y in zip(monitor_texts(loaded_a, source), monitor_texts(loaded_b, source), strict=True):
        if x.ids == y.ids and x.tokens == y.tokens:
            continue
        k = next((i for i, (p, q) in enumerate(zip(x.ids, y.ids, strict=False)) if p != q), min(len(x.ids), len(y.ids)))
        shown = [f"{t.tokens[k]!r} (id {t.ids[k]})" if k < len(t.ids) else "the end of the text" for t in (x, y)]
        raise ConfigError(
            f"run_compare(experiments=): the tokenizers of {a} and {b} give different token ids for text "
            f"{x.source.get('index')} (line {x.source.get('line')} of {source.path}): token {k} is {shown[0]} for "
            f"{a} and {shown[1]} for {b}; a comparison runs the same ids through both models, so it needs models "
            "that share a tokenizer (and chat template)",
            setting="run_compare(experiments=)",
        )


def _read_groups(
    loaded_a: LoadedModel,
    loaded_b: LoadedModel,
    source: InputFile,
    resolved: Sequence[ResolvedReadout],
    settings: CompareSettings,
    paths: ComparePaths,
    key: str,
    budget: int | None,
) -> list[dict[str, Any]]:
    """Per text, per trait: both models' means and the text's largest token shifts (groups resumed from .parts)."""
    store = PartStore(paths.parts_dir, key)
    store.clear_stale()
    readouts = [r.readout for r in resolved]
    budget = settings.max_batch_tokens or budget
    groups = 0
    for group, texts in enumerate(chunked(monitor_texts(loaded_a, source))):
        groups += 1
        if store.done(group):
            continue
        read_a = project_texts(loaded_a, texts, readouts, max_batch_tokens=budget)
        read_b = project_texts(loaded_b, texts, readouts, max_batch_tokens=budget)
        store.write(
            group, [_text_entry(t, x, y, settings.top_tokens) for t, x, y in zip(texts, read_a, read_b, strict=True)]
        )
    return list(store.entries(groups))


def _text_entry(text: MonitorText, a: Reading, b: Reading, top: int) -> dict[str, Any]:
    where = text.summarised
    traits: dict[str, Any] = {}
    for name in a.names:
        if not where:
            traits[name] = None
            continue
        va, vb = a.per_token(name)[where].astype(np.float64), b.per_token(name)[where].astype(np.float64)
        shift = vb - va
        mean, ci = mean_ci(shift.tolist())
        order = np.argsort(-np.abs(shift), kind="stable")[:top]
        traits[name] = {
            "a": float(va.mean()),
            "b": float(vb.mean()),
            "shift": mean,
            "shift_ci95": list(ci) if ci else None,
            "d": _d(shift.mean(), va, vb),
            "tokens": [_token(text, where[i], float(va[i]), float(vb[i])) for i in order],
        }
    return {**dict(text.source), "text": text.text[:200], "traits": traits}


def _token(text: MonitorText, position: int, a: float, b: float) -> dict[str, Any]:
    context = _context(text, position)
    return {"position": position, "token": text.tokens[position], "a": a, "b": b, "shift": b - a, "context": context}


def _context(text: MonitorText, position: int, width: int = 24) -> str:
    if text.offsets is None:
        return "".join(text.tokens[max(0, position - 4) : position + 5])
    start, end = text.offsets[position]
    return text.text[max(0, start - width) : start] + "[" + text.text[start:end] + "]" + text.text[end : end + width]


def _d(mean_shift: float, a: np.ndarray, b: np.ndarray) -> float | None:
    """Mean shift over the pooled SD of ``a`` and ``b`` (0 when nothing moved; None when undefined)."""
    if len(a) < 2:
        return None
    pooled = math.sqrt((float(np.var(a, ddof=1)) + float(np.var(b, ddof=1))) / 2)
    if pooled == 0.0:
        return 0.0 if mean_shift == 0.0 else None
    return float(mean_shift) / pooled


def cohens_d_paired_means(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cohen's d of ``b − a`` over texts: the mean paired shift over the pooled SD of ``a`` and ``b``.

    Example:
        >>> cohens_d_paired_means(np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0]))
        1.0
    """
    return _d(float(np.mean(b - a)), a, b) if len(a) else None


def _trait_summary(name: str, entries: Sequence[dict[str, Any]], settings: CompareSettings) -> dict[str, Any]:
    rows = [(e, e["traits"][name]) for e in entries if e["traits"].get(name) is not None]
    a = np.array([t["a"] for _, t in rows], dtype=np.float64)
    b = np.array([t["b"] for _, t in rows], dtype=np.float64)
    shift = b - a
    mean, ci = mean_ci(shift.tolist())
    d = cohens_d_paired_means(a, b)
    per_text = [
        {"index": e.get("index"), "line": e.get("line"), **{k: t[k] for k in ("a", "b", "shift", "shift_ci95", "d")}}
        for e, t in rows
    ]
    tokens: list[tuple[float, int, int, dict[str, Any]]] = []  # (|shift|, -text, -position, token): earliest wins ties
    for order, (e, t) in enumerate(rows):
        for token in t["tokens"]:
            where = {"index": e.get("index"), "line": e.get("line"), **token}
            item = (abs(token["shift"]), -order, -int(token["position"]), where)
            if len(tokens) < settings.top_tokens:
                heapq.heappush(tokens, item)
            elif item[:3] > tokens[0][:3]:
                heapq.heapreplace(tokens, item)
    return {
        "d": d,
        "ci95": _bootstrap_d(a, b, settings),
        "mean_shift": mean,
        "mean_shift_ci95": list(ci) if ci else None,
        "sd_shift": float(np.std(shift, ddof=1)) if len(shift) > 1 else None,
        "n_texts": len(rows),
        "mean_a": float(a.mean()) if len(a) else None,
        "mean_b": float(b.mean()) if len(b) else None,
        "per_text": per_text,
        "top_tokens": [t[3] for t in sorted(tokens, key=lambda t: (-t[0], -t[1], -t[2]))],
    }


def _bootstrap_d(a: np.ndarray, b: np.ndarray, settings: CompareSettings) -> list[float] | None:
    """95% percentile interval of d over ``settings.bootstrap`` paired resamples of the texts."""
    n = len(a)
    if n < 3:
        return None
    rng = np.random.default_rng(settings.seed)
    values: list[float] = []
    for start in range(0, settings.bootstrap, 256):
        draws = rng.integers(0, n, size=(min(256, settings.bootstrap - start), n))
        xa, xb = a[draws], b[draws]
        pooled = np.sqrt((xa.var(axis=1, ddof=1) + xb.var(axis=1, ddof=1)) / 2)
        diff = (xb - xa).mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(pooled > 0, diff / np.where(pooled > 0, pooled, 1.0), np.where(diff == 0, 0.0, np.nan))
        values.extend(float(v) for v in d if math.isfinite(v))
    if not values:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return [float(low), float(high)]
