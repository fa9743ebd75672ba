"""PNG plots (matplotlib, Agg backend), each written atomically.

- :func:`plot_evaluation`: ``evaluation.png``, vector quality per layer (test AUROC, test Cohen's d, neighbour
  cosine), the depth band shaded, each method's recommended layer marked;
- :func:`plot_steering`: ``trait_coherence.png`` (score against coefficient per layer) and ``heatmap.png``
  (trait gain by layer × coefficient), drawn from a ``results.json`` document.

matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._io import atomic_path
from ..evaluation import Evaluation, in_depth_band

__all__ = ["plot_evaluation", "evaluation_figure", "plot_steering", "RECOMMENDED_MARKERS"]

PathLike = str | os.PathLike[str]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: PathLike) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    _pyplot().close(fig)
    return Path(path)


RECOMMENDED_MARKERS = {"mean-diff": "*", "probe": "D", "pca": "s"}
"""Marker of each method's recommended layer in ``evaluation.png`` (other methods: ``P``)."""


def plot_evaluation(evaluations: Sequence[Evaluation], path: PathLike) -> Path:
    """Write ``evaluation.png``: per-layer test AUROC, test Cohen's d and neighbour cosine of every method and position.

    The 20–80% depth band (where the recommended layer is chosen) is shaded; each method's
    recommended layer (chosen on the validation pairs) is marked with that method's marker
    (:data:`RECOMMENDED_MARKERS`); the legend sits below the panels, off the data.

    Returns:
        ``path``.
    """
    return _save(evaluation_figure(evaluations), path)


def evaluation_figure(evaluations: Sequence[Evaluation]) -> Any:
    """The matplotlib figure :func:`plot_evaluation` writes (for inspection and tests)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    handles: list[Any] = []
    methods: list[str] = []
    for ev in evaluations:
        for method in ev.recommended:
            rows = ev.for_method(method)
            layers = [m.layer for m in rows]
            (line,) = axes[0].plot(layers, [m.auroc for m in rows], marker="o", ms=3, label=f"{method} / {ev.position}")
            color = line.get_color()
            axes[1].plot(layers, [_finite(m.cohens_d) for m in rows], marker="o", ms=3, color=color)
            cos = ev.neighbour_cosines.get(method, {})
            axes[2].plot(list(cos), list(cos.values()), marker="o", ms=3, color=color)
            best = next(m for m in rows if m.layer == ev.recommended[method])
            marker = RECOMMENDED_MARKERS.get(method, "P")
            for ax, value in ((axes[0], best.auroc), (axes[1], _finite(best.cohens_d))):
                ax.scatter([best.layer], [value], marker=marker, s=150, color=color, edgecolors="k", zorder=5)
            handles.append(line)
            if method not in methods:
                methods.append(method)
    _depth_band(axes, evaluations)
    handles += [
        Line2D(
            [],
            [],
            ls="",
            marker=RECOMMENDED_MARKERS.get(m, "P"),
            ms=10,
            color="grey",
            mec="k",
            label=f"recommended: {m}",
        )
        for m in methods
    ]
    handles.append(Patch(color="0.85", label="20-80% depth: where the layer is chosen"))
    titles = ("AUROC (test pairs)", "Cohen's d (test pairs)", "cosine with the next layer")
    ylabels = ("AUROC", "Cohen's d", "cosine(layer, layer + 1)")
    for ax, title, ylabel in zip(axes, titles, ylabels, strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("layer")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylim(0.4, 1.02)
    axes[0].axhline(0.5, color="grey", lw=0.8, ls=":")
    axes[1].axhline(0.0, color="grey", lw=0.8, ls=":")
    name = evaluations[0].trait if evaluations else ""
    fig.suptitle(
        f"{name}: vector quality per layer (layer chosen on validation pairs, metrics on test pairs)", fontsize=11
    )
    columns = min(len(handles), 5) or 1
    fig.legend(handles=handles, loc="lower center", ncol=columns, fontsize=8, frameon=False)
    rows_of_legend = math.ceil(len(handles) / columns)
    fig.tight_layout(rect=(0, 0.06 + 0.045 * rows_of_legend, 1, 1))
    return fig


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.nan


def _depth_band(axes: Sequence[Any], evaluations: Sequence[Evaluation]) -> None:
    """Shade the layers within the depth band of the evaluated model."""
    depths = {ev.n_layers_model for ev in evaluations}
    for depth in depths:
        band = [layer for layer in range(depth) if in_depth_band(layer, depth)]
        if band:
            for ax in axes:
                ax.axvspan(band[0] - 0.5, band[-1] + 0.5, color="0.85", alpha=0.6, lw=0, zorder=0)


def plot_steering(results: Mapping[str, Any], trait_coherence: PathLike, heatmap: PathLike) -> list[Path]:
    """Write the two steering plots of a ``results.json`` document.

    Args:
        results: the steering results (as written to ``results.json``).
        trait_coherence: where to write trait score and coherence against the coefficient, per layer.
        heatmap: where to write trait gain by layer × coefficient.

    Returns:
        The two paths.
    """
    runs = results["runs"]
    layers = sorted({r["layer"] for r in runs}) or list(results["layers"])
    suffix = "  (smoke test: tiny local judge)" if results.get("smoke_test") else ""
    return [_plot_curves(results, layers, suffix, trait_coherence), _plot_heatmap(results, layers, suffix, heatmap)]


def _plot_curves(results: Mapping[str, Any], layers: list[int], suffix: str, path: PathLike) -> Path:
    plt = _pyplot()
    base, runs = results["baseline"], results["runs"]
    floor = results["settings"]["coherence_floor"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for layer in layers:
        rows = sorted((r for r in runs if r["layer"] == layer), key=lambda r: abs(r["coefficient"]))
        xs = [0.0] + [r["coefficient"] for r in rows]
        trait = [base["trait"]["mean"]] + [r["trait"]["mean"] for r in rows]
        coherence = [base["coherence"]["mean"]] + [r["coherence"]["mean"] for r in rows]
        axes[0].plot(xs, [math.nan if v is None else v for v in trait], marker="o", ms=4, label=f"layer {layer}")
        axes[1].plot(xs, [math.nan if v is None else v for v in coherence], marker="o", ms=4, label=f"layer {layer}")
    axes[1].axhline(floor, color="grey", ls="--", lw=1, label=f"floor {floor:g}")
    best = results.get("best")
    if best:
        axes[0].scatter(
            [best["coefficient"]], [best["trait"]["mean"]], s=120, facecolors="none", edgecolors="k", label="best"
        )
    for ax, title in zip(axes, ("trait score", "coherence"), strict=True):
        ax.set_xlabel("coefficient (spread units)")
        ax.set_ylabel(title)
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{results['trait']}: steering {results['steer_model']['name']}{suffix}", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def _plot_heatmap(results: Mapping[str, Any], layers: list[int], suffix: str, path: PathLike) -> Path:
    plt = _pyplot()
    runs = results["runs"]
    coefficients = sorted({r["coefficient"] for r in runs}, key=abs)
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(coefficients) + 2), max(2.5, 0.6 * len(layers) + 1.5)))
    grid = [[math.nan] * len(coefficients) for _ in layers]
    for r in runs:
        if r["trait_gain"] is not None:
            grid[layers.index(r["layer"])][coefficients.index(r["coefficient"])] = r["trait_gain"]
    image = ax.imshow(grid, cmap="RdBu_r", vmin=-50, vmax=50, aspect="auto")
    for r in runs:
        i, j = layers.index(r["layer"]), coefficients.index(r["coefficient"])
        label = "-" if r["trait_gain"] is None else f"{r['trait_gain']:+.0f}"
        ax.text(j, i, label + ("" if r["coherent"] else "\n(incoh.)"), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(coefficients)), [f"{c:+.2g}" for c in coefficients], fontsize=8)
    ax.set_yticks(range(len(layers)), [str(layer) for layer in layers])
    ax.set_xlabel("coefficient (spread units)")
    ax.set_ylabel("layer")
    fig.colorbar(image, ax=ax, label="trait gain over baseline")
    ax.set_title(f"{results['trait']}: trait gain by layer × coefficient{suffix}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
