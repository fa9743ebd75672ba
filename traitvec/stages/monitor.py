"""The monitor stage: every token of many texts projected on saved trait vectors, on disk.

Outputs (paths from :class:`~traitvec.stages.layout.OutputLayout`) under
``experiments/{E}/monitor/{name}/``::

    projections.json   {"texts": [one object per line: index, line, text, ids, tokens, offsets,
                        special, span, traits: {cat/trait: {per_token, mean, max, last}}],
                        "vectors": {cat/trait: provenance}, "name", "experiment", "model",
                        "input", "summary", "inputs_key", ...}
    report.html        the first ``report_texts`` texts coloured per token (render/html.py)
    ranking.json       with ``rank_by``: texts ranked per trait, top and bottom examples

The readouts come from the experiment's extraction folders (:mod:`traitvec.stages.readouts`); the
texts from an input file, or from answers the model generates to the file's prompts
(:mod:`traitvec.stages.texts`). Texts are read in groups (:func:`traitvec.monitor.chunked`);
each finished group is kept in ``.parts/`` (:mod:`traitvec.stages.parts`), so an interrupted run
resumes at the first unfinished group, and memory does not grow with the number of texts.

The inputs key covers the model (:meth:`~traitvec.models.ModelPool.model_key`), every readout
(vector files' hashes, layer, centre, unit), the input file's hash and form, the generation
settings (with the steering vector's hashes) and the report's size; a current run is skipped
without loading the model.
"""

from __future__ import annotations

import heapq
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .. import __version__
from .._io import sha256_file, write_json, write_text
from ..batching import release_freed_memory
from ..errors import ConfigError
from ..experiments import ExperimentConfig
from ..models import LoadedModel, ModelPool
from ..monitor import DIGITS, MonitorText, chunked, project_texts
from ..render.html import monitor_report_html
from ..steering import Steer
from ..vectors import TraitVector
from .layout import MonitorPaths, OutputLayout
from .parts import PartStore, iter_texts, read_fields, write_texts_json
from .readouts import ReadoutChoice, ResolvedReadout, check_trait_files, resolve_readouts
from .resume import inputs_key, read_if_current
from .texts import InputFile, check_input, generated_texts, monitor_texts

__all__ = ["MonitorSettings", "GenerateSettings", "MonitorResult", "run_monitor", "check_name", "SUMMARY_RULE"]

logger = logging.getLogger(__name__)

FORMAT = "traitvec.monitor/1"
SUMMARY_RULE = (
    "mean, max and last over the non-special tokens of span: the final assistant answer of a conversation, "
    "the generated answer with generation, else the whole text"
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class MonitorSettings:
    """How to monitor.

    Attributes:
        choice: method / position / layers overrides (default: the evaluation's recommendation).
        rank_by: ``"mean"`` or ``"max"`` to rank the texts per trait (ranking.json); ``None``: no ranking.
        top: examples kept at each end of a ranking.
        report_texts: texts shown in report.html (all of them are in projections.json).
        max_batch_tokens: padded tokens per batch (default: the experiment's, else 1024 on CPU).
    """

    choice: ReadoutChoice = field(default_factory=ReadoutChoice)
    rank_by: Literal["mean", "max"] | None = None
    top: int = 10
    report_texts: int = 200
    max_batch_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.rank_by not in (None, "mean", "max"):
            raise ConfigError(
                f"MonitorSettings.rank_by = {self.rank_by!r} is not one of mean, max", setting="MonitorSettings.rank_by"
            )
        for name in ("top", "report_texts"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(
                    f"MonitorSettings.{name} = {value!r}; expected a positive integer",
                    setting=f"MonitorSettings.{name}",
                )


@dataclass(frozen=True)
class GenerateSettings:
    """Answer the input's prompts first, then monitor prompt + answer.

    Attributes:
        max_new_tokens: answer length (greedy).
        steer: ``cat/trait`` to steer with (its vector from the same experiment), or ``None``.
        coefficient: steering strength in spread units.
        layer: steered layer (default: the first monitored layer of that trait, else its recommended one).
    """

    max_new_tokens: int = 64
    steer: str | None = None
    coefficient: float = 0.0
    layer: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ConfigError(
                f"GenerateSettings.max_new_tokens = {self.max_new_tokens!r}; expected a positive integer",
                setting="GenerateSettings.max_new_tokens",
            )
        if self.steer is None and (self.coefficient or self.layer is not None):
            raise ConfigError(
                "GenerateSettings.coefficient is set but GenerateSettings.steer names no trait; name the trait "
                "to steer with",
                setting="GenerateSettings.steer",
            )


@dataclass(frozen=True)
class MonitorResult:
    """What a monitor run produced.

    Attributes:
        paths: its output paths.
        texts: number of texts read.
        recomputed: False when every output was current.
        vectors: the provenance of every readout, by name.
        ranking: the ranking.json document (with ``rank_by``), else ``None``.
    """

    paths: MonitorPaths
    texts: int
    recomputed: bool
    vectors: dict[str, Any]
    ranking: dict[str, Any] | None


def check_name(name: str, setting: str = "run_monitor(name=)") -> str:
    """A run name must be a plain folder name (letters, digits, ``._-``)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{setting} = {name!r}; a run name is a plain folder name (letters, digits, ._-), e.g. my-texts",
            setting=setting,
        )
    return name


def run_monitor(
    experiment: ExperimentConfig,
    traits: Sequence[str],
    input: str | os.PathLike[str],
    *,
    name: str | None = None,
    settings: MonitorSettings | None = None,
    generate: GenerateSettings | None = None,
    traits_root: str | os.PathLike[str] | None = None,
    pool: ModelPool | None = None,
    force: bool = False,
    show_progress: bool = False,
) -> MonitorResult:
    """Project every token of the input's texts on each trait's saved vector.

    Args:
        experiment: the experiment whose model reads the texts and whose vectors are used.
        traits: ``cat/trait`` names, each extracted on ``experiment``.
        input: a .txt (one text per line) or .jsonl file (``{"text"}`` / ``{"messages"}`` rows), or
            with ``generate`` a file of prompts.
        name: the run's folder under ``monitor/`` (default: the input file's stem).
        settings: readout overrides, ranking and report options.
        generate: answer the prompts first (optionally steered) and monitor prompt + answer.
        traits_root: where the trait folders are; when given, each vector is checked against its
            trait's current files (a vector extracted from other data is reported, not refused).
        pool: loads the model (once) when something must be computed.
        force: recompute even when the outputs are current.
        show_progress: progress bars.

    Example:
        >>> result = run_monitor(load_experiment("gemma-3-270m"), ["styles/formality"], "emails.txt")
        >>> result.paths.projections_json
        PosixPath('experiments/gemma-3-270m/monitor/emails/projections.json')
    """
    settings = settings or MonitorSettings()
    pool = pool or ModelPool()
    source = check_input(input, prompts=generate is not None)
    paths = OutputLayout(experiment.path).monitor(check_name(name or source.path.stem))
    layout = OutputLayout(experiment.path)
    resolved = resolve_readouts(layout, traits, settings.choice)
    if traits_root is not None:
        check_trait_files(resolved, traits_root)
    steer = _steer_vector(layout, generate, settings.choice, resolved)
    key = inputs_key(_key_inputs(pool, experiment, resolved, source, generate, steer, settings))
    vectors = {r.readout.name: r.provenance for r in resolved}
    fields = None if force else read_fields(paths.projections_json)
    recomputed = fields is None or fields.get("inputs_key") != key
    if recomputed:
        loaded = pool.get(experiment)
        for r in resolved:
            r.vector.check_model(loaded)
        fields = _project(loaded, experiment, resolved, source, generate, steer, settings, paths, key, show_progress)
    assert fields is not None
    texts = int(fields.get("input", {}).get("texts_read", 0))
    if recomputed or not paths.report_html.is_file():
        _write_report(paths, settings.report_texts)
    ranking = _ranking(paths, key, resolved, settings, force) if settings.rank_by else None
    return MonitorResult(paths, texts, recomputed, vectors, ranking)


def _steer_vector(
    layout: OutputLayout,
    generate: GenerateSettings | None,
    choice: ReadoutChoice,
    resolved: Sequence[ResolvedReadout],
) -> Steer | None:
    if generate is None or generate.steer is None:
        return None
    own = [r for r in resolved if r.provenance["trait"] == generate.steer]
    if own:
        vector, layer = own[0].vector, own[0].readout.layer
    else:
        other = resolve_readouts(layout, [generate.steer], ReadoutChoice(choice.method, choice.position))[0]
        vector, layer = other.vector, other.readout.layer
    return Steer(vector, generate.layer if generate.layer is not None else layer, generate.coefficient)


def _key_inputs(
    pool: ModelPool,
    experiment: ExperimentConfig,
    resolved: Sequence[ResolvedReadout],
    source: InputFile,
    generate: GenerateSettings | None,
    steer: Steer | None,
    settings: MonitorSettings,
) -> dict[str, Any]:
    generation = None
    if generate is not None:
        generation = asdict(generate)
        if steer is not None and isinstance(steer.vector, TraitVector):
            generation["vector"] = steer.describe()
            generation["vector_trait_hash"] = steer.vector.trait_hash
            generation["vector_created"] = steer.vector.created
    return {
        "format": FORMAT,
        "model": pool.model_key(experiment),
        "readouts": [r.key for r in resolved],
        "input": {"sha256": source.sha256, "kind": source.kind, "prompts": source.prompts},
        "generate": generation,
        "report_texts": settings.report_texts,
        "digits": DIGITS,
    }


def _texts(
    loaded: LoadedModel, source: InputFile, generate: GenerateSettings | None, steer: Steer | None
) -> Iterator[MonitorText]:
    if generate is None:
        return monitor_texts(loaded, source)
    return generated_texts(
        loaded, source, max_new_tokens=generate.max_new_tokens, steering=[steer] if steer is not None else ()
    )


def _project(
    loaded: LoadedModel,
    experiment: ExperimentConfig,
    resolved: Sequence[ResolvedReadout],
    source: InputFile,
    generate: GenerateSettings | None,
    steer: Steer | None,
    settings: MonitorSettings,
    paths: MonitorPaths,
    key: str,
    show_progress: bool,
) -> dict[str, Any]:
    """Read every group (skipping finished ones), then assemble projections.json; returns its fields."""
    started = time.perf_counter()
    store = PartStore(paths.parts_dir, key)
    store.clear_stale()
    readouts = [r.readout for r in resolved]
    budget = settings.max_batch_tokens or experiment.max_batch_tokens
    groups = tokens = 0
    for group, texts in enumerate(chunked(_texts(loaded, source, generate, steer))):
        tokens += sum(len(t.ids) for t in texts)
        groups += 1
        if store.done(group):
            continue
        store.write(group, [r.to_dict() for r in project_texts(loaded, texts, readouts, max_batch_tokens=budget)])
        release_freed_memory()  # private memory stays flat over any number of groups (benchmarks/monitor.py)
        if show_progress:
            logger.info("monitor %s: %d groups, %d tokens", paths.folder.name, groups, tokens)
    fields = {
        "vectors": {r.readout.name: r.provenance for r in resolved},
        "name": paths.folder.name,
        "experiment": experiment.name,
        "model": loaded.describe(),
        "input": {**source.describe(), "texts_read": source.rows, "tokens": tokens},
        "generate": None if generate is None else {**asdict(generate), "steer_vector": steer and steer.describe()},
        "summary": SUMMARY_RULE,
        "digits": DIGITS,
        "format": FORMAT,
        "inputs_key": key,
        "traitvec_version": __version__,
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_texts_json(paths.projections_json, store.entries(groups), fields)
    store.remove()
    return fields


def _write_report(paths: MonitorPaths, limit: int) -> None:
    """report.html from the first ``limit`` texts of projections.json."""
    fields = read_fields(paths.projections_json) or {}
    shown = [t for _, t in zip(range(limit), iter_texts(paths.projections_json), strict=False)]
    total = int(fields.get("input", {}).get("texts_read", len(shown)))
    run = {
        "name": fields.get("name"),
        "experiment": fields.get("experiment"),
        "model": {k: fields.get("model", {}).get(k) for k in ("name", "fingerprint", "dtype", "chat_template")},
        "input": fields.get("input"),
        "shown": f"the first {len(shown)} of {total} texts (all are in projections.json)",
        "summary": fields.get("summary"),
        "inputs_key": fields.get("inputs_key"),
    }
    document = {"texts": shown, "vectors": fields.get("vectors", {}), **run}
    write_text(paths.report_html, monitor_report_html(document))


def _ranking(
    paths: MonitorPaths, key: str, resolved: Sequence[ResolvedReadout], settings: MonitorSettings, force: bool
) -> dict[str, Any]:
    """ranking.json: per trait, every text's score (``rank_by``) in descending order, with the ends shown."""
    assert settings.rank_by is not None
    rank_key = inputs_key({"projections": key, "rank_by": settings.rank_by, "top": settings.top})
    current = read_if_current(paths.ranking_json, rank_key, force=force)
    if current is not None:
        return current
    names = [r.readout.name for r in resolved]
    scores: dict[str, list[tuple[float, int, int]]] = {n: [] for n in names}
    top: dict[str, list[tuple[float, int, dict[str, Any]]]] = {n: [] for n in names}
    bottom: dict[str, list[tuple[float, int, dict[str, Any]]]] = {n: [] for n in names}
    unscored: dict[str, int] = dict.fromkeys(names, 0)
    for text in iter_texts(paths.projections_json):
        for name in names:
            values = text["traits"][name]
            score = values[settings.rank_by]
            if score is None:
                unscored[name] += 1
                continue
            index = int(text["index"])
            scores[name].append((score, index, int(text["line"])))
            example = {
                "index": index,
                "line": text["line"],
                "score": score,
                "mean": values["mean"],
                "max": values["max"],
            }
            example["text"] = text["text"]
            _keep(top[name], (score, -index, example), settings.top)
            _keep(bottom[name], (-score, -index, example), settings.top)
    traits = {}
    for name in names:
        ranked = sorted(scores[name], key=lambda s: (-s[0], s[1]))
        traits[name] = {
            "ranked": [{"index": i, "line": line, "score": s} for s, i, line in ranked],
            "top": [e for *_, e in sorted(top[name], key=lambda t: (-t[0], -t[1]))],
            "bottom": [e for *_, e in sorted(bottom[name], key=lambda t: (-t[0], -t[1]))],
            "unscored": unscored[name],
        }
    document = {
        "rank_by": settings.rank_by,
        "top": settings.top,
        "rule": f"texts in descending order of their {settings.rank_by} value ({SUMMARY_RULE}); ties by index",
        "projections": str(paths.projections_json),
        "projections_sha256": sha256_file(paths.projections_json),
        "traits": traits,
        "inputs_key": rank_key,
    }
    write_json(paths.ranking_json, document)
    return document


def _keep(heap: list[tuple[float, int, dict[str, Any]]], item: tuple[float, int, dict[str, Any]], n: int) -> None:
    """Keep the ``n`` largest items (by score, then earliest index) in a min-heap."""
    if len(heap) < n:
        heapq.heappush(heap, item)
    elif item[:2] > heap[0][:2]:
        heapq.heapreplace(heap, item)
