"""Where every stage writes: one object owns the folder tree and every file name under an experiment.

::

    experiments/{E}/extraction/{category}/{trait}/
        activations/{position}.safetensors (+ .json)
        vectors/{method}-{position}.safetensors (+ .json)
        evaluation.json, evaluation.png, extraction.json, vetting.json
    experiments/{S}/steering/{category}/{trait}/
        runs/{key}/                 one folder per steering run (key: the run's inputs key)
            results.json, results.md, progress.json,
            trait_coherence.png, heatmap.png, projection.png
        results.json, results.md, trait_coherence.png, heatmap.png, projection.png
                                    a copy of the latest finished run (results.json's ``run_folder``
                                    points at its folder)
    experiments/{E}/monitor/{name}/
        projections.json, report.html, ranking.json, .parts/ (an unfinished run's finished groups)
    experiments/{A}/compare/{B}/{name}/
        compare.json, .parts/

Stages ask an :class:`OutputLayout` for paths and never join names themselves. The vector file name
is the one :meth:`TraitVector.save` writes (:func:`traitvec.vectors.vector_path`), so the layout asks
that function rather than spelling the name a second time.

Example:
    >>> layout = OutputLayout("experiments/gemma-3-270m")
    >>> layout.extraction("states/optimism").vector("mean-diff", "prefill-mean").name
    'mean-diff-prefill-mean.safetensors'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..vectors import vector_path

__all__ = ["OutputLayout", "ExtractionPaths", "SteeringPaths", "SteeringRunPaths", "STEERING_FILES"]
__all__ += ["MonitorPaths", "ComparePaths"]


@dataclass(frozen=True)
class ExtractionPaths:
    """The extraction (and vetting) outputs of one trait on one experiment's model."""

    folder: Path

    @property
    def activations_dir(self) -> Path:
        """``activations/``: one safetensors file (and JSON sidecar) per capture position."""
        return self.folder / "activations"

    def activations(self, position: str) -> Path:
        """``activations/{position}.safetensors``."""
        return self.activations_dir / f"{position}.safetensors"

    @property
    def vectors_dir(self) -> Path:
        """``vectors/``: one safetensors file (and JSON sidecar) per method and position."""
        return self.folder / "vectors"

    def vector(self, method: str, position: str) -> Path:
        """``vectors/{method}-{position}.safetensors``."""
        return vector_path(self.vectors_dir, method, position)

    @property
    def evaluation_json(self) -> Path:
        """Per-layer held-out metrics and recommended layers, per position."""
        return self.folder / "evaluation.json"

    @property
    def evaluation_png(self) -> Path:
        """The plot of ``evaluation.json``."""
        return self.folder / "evaluation.png"

    @property
    def extraction_json(self) -> Path:
        """Resolved settings, inputs and timings of the last extraction run."""
        return self.folder / "extraction.json"

    @property
    def vetting_json(self) -> Path:
        """The scenario-vetting report (read by vetted-only extraction)."""
        return self.folder / "vetting.json"


STEERING_FILES = ("results.json", "results.md", "trait_coherence.png", "heatmap.png", "projection.png")
"""The files of a finished steering run, copied from its run folder to the trait's steering folder."""


@dataclass(frozen=True)
class SteeringRunPaths:
    """The outputs of one steering run (one set of inputs) of one trait: ``steering/{trait}/runs/{key}/``."""

    folder: Path

    @property
    def key(self) -> str:
        """The run's inputs key (its folder name)."""
        return self.folder.name

    @property
    def results_json(self) -> Path:
        """Every response, score and run summary."""
        return self.folder / "results.json"

    @property
    def results_md(self) -> Path:
        """The readable summary of ``results.json``."""
        return self.folder / "results.md"

    @property
    def progress_json(self) -> Path:
        """Finished search rounds of an unfinished run (kept while judge items are unscored)."""
        return self.folder / "progress.json"

    @property
    def trait_coherence_png(self) -> Path:
        """Trait score and coherence against the coefficient, per layer."""
        return self.folder / "trait_coherence.png"

    @property
    def heatmap_png(self) -> Path:
        """Trait gain by layer and coefficient."""
        return self.folder / "heatmap.png"

    @property
    def projection_png(self) -> Path:
        """Projection gain (judge-free) against the coefficient, per layer, with its interval."""
        return self.folder / "projection.png"


@dataclass(frozen=True)
class SteeringPaths(SteeringRunPaths):
    """The steering outputs of one trait on the steered experiment's model: ``steering/{trait}/``.

    Its own files (``results.json`` …) are a copy of the latest finished run; every run keeps its
    outputs in :meth:`run` ``(key)``, so runs with other settings never overwrite each other.
    """

    @property
    def runs_dir(self) -> Path:
        """``runs/``: one folder per run key."""
        return self.folder / "runs"

    def run(self, key: str) -> SteeringRunPaths:
        """``runs/{key}/``: the outputs of the run with inputs key ``key``."""
        return SteeringRunPaths(self.runs_dir / key)


@dataclass(frozen=True)
class MonitorPaths:
    """The outputs of one monitor run (``traitvec monitor --name N``) on one experiment's model."""

    folder: Path

    @property
    def projections_json(self) -> Path:
        """Per text: tokens, offsets, special flags, per-token values and summaries per trait; provenance."""
        return self.folder / "projections.json"

    @property
    def report_html(self) -> Path:
        """The self-contained page of ``projections.json``."""
        return self.folder / "report.html"

    @property
    def ranking_json(self) -> Path:
        """Texts ranked by mean (or max) per trait, with the top and bottom examples (``--rank``)."""
        return self.folder / "ranking.json"

    @property
    def parts_dir(self) -> Path:
        """Finished groups of texts of an unfinished run (removed when the run completes)."""
        return self.folder / ".parts"


@dataclass(frozen=True)
class ComparePaths:
    """The outputs of one comparison of experiment A's model with experiment B's on the same token ids."""

    folder: Path

    @property
    def compare_json(self) -> Path:
        """Per trait: the projection shift B − A with Cohen's d, intervals, per text, the largest token shifts."""
        return self.folder / "compare.json"

    @property
    def parts_dir(self) -> Path:
        """Finished groups of texts of an unfinished comparison (removed when it completes)."""
        return self.folder / ".parts"


@dataclass(frozen=True)
class OutputLayout:
    """Every output path under one experiment folder.

    Args:
        experiment_dir: ``experiments/{name}`` (an :class:`~traitvec.experiments.ExperimentConfig`'s ``path``).
    """

    experiment_dir: Path

    def __init__(self, experiment_dir: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "experiment_dir", Path(experiment_dir))

    def extraction(self, trait: str) -> ExtractionPaths:
        """``extraction/{category}/{trait}/`` of trait ``category/trait``."""
        return ExtractionPaths(self.experiment_dir / "extraction" / trait)

    def steering(self, trait: str) -> SteeringPaths:
        """``steering/{category}/{trait}/`` of trait ``category/trait``."""
        return SteeringPaths(self.experiment_dir / "steering" / trait)

    def monitor(self, name: str) -> MonitorPaths:
        """``monitor/{name}/``: one monitor run."""
        return MonitorPaths(self.experiment_dir / "monitor" / name)

    def compare(self, other: str, name: str) -> ComparePaths:
        """``compare/{other}/{name}/``: this experiment's model compared with experiment ``other``'s."""
        return ComparePaths(self.experiment_dir / "compare" / other / name)
