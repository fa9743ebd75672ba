"""PNG plots (matplotlib, Agg backend), each written atomically.

- :func:`plot_evaluation`: ``evaluation.png``, vector quality per layer (test AUROC, test Cohen's d, neighbour
  cosine), the depth band shaded, each method's recommended layer marked;
- :func:`plot_steering`: ``trait_coherence.png`` (score against coefficient per layer, with the
  coherence floor the search used), ``heatmap.png`` (trait gain by layer × coefficient) and
  ``projection.png`` (the judge-free projection gain against coefficient, with its interval), drawn
  from a ``results.json`` document. :func:`floor_lines` and :func:`heatmap_cells` are the plain
  data those plots draw.

matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import atomic_path
from ..evaluation import Evaluation, in_depth_band

__all__ = ["HeatmapCell", "floor_lines", "heatmap_cells", "heatmap_limit", "plot_steering"]
__all__ += ["plot_evaluation", "evaluation_figure", "RECOMMENDED_MARKERS"]

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
            if method not in methods:
                methods.append(method)
            best = next(m for m in rows if m.layer == ev.recommended[method])
            marker, k = RECOMMENDED_MARKERS.get(method, "P"), methods.index(method)
            for ax, value in ((axes[0], best.auroc), (axes[1], _finite(best.cohens_d))):
                # later methods' markers are smaller and on top: markers at one point nest, none hides
                size = (420, 110, 40)[min(k, 2)]
                ax.scatter(
                    [best.layer],
                    [value],
                    marker=marker,
                    s=size,
                    color=color,
                    edgecolors="k",
                    zorder=5 + k,
                    clip_on=False,
                )
            handles.append(line)
    _depth_band(axes, evaluations)
    _layer_axes(axes, evaluations)
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
        ax.grid(alpha=0.3)
    axes[0].set_ylim(0.4, 1.05)
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


def _layer_axes(axes: Sequence[Any], evaluations: Sequence[Evaluation]) -> None:
    """One x range for every panel (the captured layers, ±0.5) with integer ticks; a note on a panel with no data."""
    from matplotlib.ticker import MaxNLocator

    layers = sorted({layer for ev in evaluations for layer in ev.layers})
    if not layers:
        return
    for ax in axes:
        ax.set_xlim(layers[0] - 0.5, layers[-1] + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    values = [_finite(m.cohens_d) for ev in evaluations for m in ev.metrics]
    if not any(math.isfinite(v) for v in values):
        n_test = min((ev.n_test_pairs for ev in evaluations), default=0)
        axes[1].text(0.5, 0.6, f"no finite Cohen's d: {n_test} test pair(s)", transform=axes[1].transAxes, ha="center")


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


def plot_steering(
    results: Mapping[str, Any], trait_coherence: PathLike, heatmap: PathLike, projection: PathLike | None = None
) -> list[Path]:
    """Write the steering plots of a ``results.json`` document.

    Args:
        results: the steering results (as written to ``results.json``).
        trait_coherence: where to write trait score and coherence against the coefficient, per layer.
        heatmap: where to write trait gain by layer × coefficient.
        projection: where to write projection gain against the coefficient, per layer (``None``: not drawn).

    Returns:
        The paths written.
    """
    runs = results["runs"]
    layers = sorted({r["layer"] for r in runs}) or list(results["layers"])
    suffix = "  (smoke test: tiny local judge)" if results.get("smoke_test") else ""
    written = [_plot_curves(results, layers, suffix, trait_coherence), _plot_heatmap(results, layers, suffix, heatmap)]
    if projection is not None:
        written.append(_plot_projection(results, layers, suffix, projection))
    return written


def floor_lines(results: Mapping[str, Any]) -> list[tuple[float, str]]:
    """The coherence floors drawn on the coherence panel: the one the search used, and the requested one
    when it differs (``(value, label)``, the effective floor first).

    Example:
        >>> floor_lines({"coherence_floor": {"requested": 70, "effective": 23.3}})
        [(23.3, 'floor used 23.3'), (70, 'requested floor 70')]
    """
    floor = results["coherence_floor"]
    effective, requested = floor["effective"], floor["requested"]
    lines = [(effective, f"floor used {effective:.3g}")]
    if not math.isclose(effective, requested):
        lines.append((requested, f"requested floor {requested:g}"))
    return lines


def _plot_curves(results: Mapping[str, Any], layers: list[int], suffix: str, path: PathLike) -> Path:
    plt = _pyplot()
    base, runs = results["baseline"], results["runs"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for layer in layers:
        rows = sorted((r for r in runs if r["layer"] == layer), key=lambda r: abs(r["coefficient"]))
        xs = [0.0] + [r["coefficient"] for r in rows]
        trait = [base["trait"]["mean"]] + [r["trait"]["mean"] for r in rows]
        coherence = [base["coherence"]["mean"]] + [r["coherence"]["mean"] for r in rows]
        axes[0].plot(xs, [math.nan if v is None else v for v in trait], marker="o", ms=4, label=f"layer {layer}")
        axes[1].plot(xs, [math.nan if v is None else v for v in coherence], marker="o", ms=4, label=f"layer {layer}")
    for (value, label), style in zip(floor_lines(results), ("--", ":"), strict=False):
        axes[1].axhline(value, color="grey", ls=style, lw=1.2, label=label)
    best = results.get("best")
    if best:
        axes[0].scatter(
            [best["coefficient"]],
            [best["trait"]["mean"]],
            s=120,
            facecolors="none",
            edgecolors="k",
            label="in-sample best",
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


@dataclass(frozen=True)
class HeatmapCell:
    """One cell of ``heatmap.png``.

    Attributes:
        row, column: the cell's layer and coefficient indices.
        value: the trait gain coloured (``None``: unscored, drawn grey).
        label: the text written in the cell.
        hatched: True for a run under the coherence floor or failing the fluency guard.
        chosen: ``"in-sample"`` for the in-sample best run, ``"held-out"`` for a run a fold of the
            cross-fitted choice picked (and not the in-sample best), else ``None``.
    """

    row: int
    column: int
    value: float | None
    label: str
    hatched: bool
    chosen: str | None


_VERDICT_LABELS = {
    "below floor": "incoherent",
    "not fluent": "not fluent",
    "too few scored": "too few scored",
    "unscored": "coherence unscored",
}


def heatmap_cells(results: Mapping[str, Any], layers: Sequence[int]) -> tuple[list[float], list[HeatmapCell]]:
    """The coefficients (columns) and the cells of ``heatmap.png``; rows are ``layers``.

    A run without a trait gain (no answer scored on one side) is labelled ``unscored``, never
    ``incoherent``; a run scored under the floor is hatched and labelled ``incoherent``; gains are
    written with one decimal.
    """
    runs = results["runs"]
    coefficients = sorted({r["coefficient"] for r in runs}, key=lambda c: (abs(c), c))
    best = results.get("best") or {}
    held = {
        (f["chosen"]["layer"], f["chosen"]["coefficient"])
        for f in (results.get("held_out") or {}).get("folds", [])
        if f.get("chosen")
    }
    cells = []
    for r in runs:
        gain, verdict = r["trait_gain"], r.get("verdict") or ("coherent" if r["coherent"] else "below floor")
        lines = ["unscored" if gain is None else f"{gain:+.1f}"]
        if verdict != "coherent" and (gain is not None or verdict != "unscored"):
            lines.append(_VERDICT_LABELS[verdict])
        config = (r["layer"], r["coefficient"])
        chosen = "in-sample" if config == (best.get("layer"), best.get("coefficient")) else None
        if chosen is None and config in held:
            chosen = "held-out"
        cells.append(
            HeatmapCell(
                layers.index(r["layer"]),
                coefficients.index(r["coefficient"]),
                gain,
                "\n".join(lines),
                verdict in ("below floor", "not fluent"),
                chosen,
            )
        )
    return coefficients, cells


def heatmap_limit(cells: Sequence[HeatmapCell]) -> float:
    """The colour scale's half-range: the largest |gain| among the cells (at least 1), symmetric around 0."""
    values = [abs(c.value) for c in cells if c.value is not None and math.isfinite(c.value)]
    return max([1.0, *values])


def _plot_heatmap(results: Mapping[str, Any], layers: list[int], suffix: str, path: PathLike) -> Path:
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    coefficients, cells = heatmap_cells(results, layers)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(coefficients) + 2.5), max(2.8, 0.8 * len(layers) + 1.8)))
    grid = [[math.nan] * len(coefficients) for _ in layers]
    for c in cells:
        if c.value is not None:
            grid[c.row][c.column] = c.value
    limit = heatmap_limit(cells)
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="#d9d9d9")
    image = ax.imshow(grid, cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
    ran = {(c.row, c.column) for c in cells}
    for row in range(len(layers)):
        for column in range(len(coefficients)):
            if (row, column) not in ran:  # no run at this layer and coefficient (the search never went there)
                ax.add_patch(Rectangle((column - 0.5, row - 0.5), 1, 1, facecolor="white", edgecolor="#eeeeee"))
                ax.text(column, row, "not run", ha="center", va="center", fontsize=6, color="#aaaaaa")
    for c in cells:
        if c.hatched:
            ax.add_patch(Rectangle((c.column - 0.5, c.row - 0.5), 1, 1, fill=False, hatch="///", lw=0, alpha=0.5))
        if c.chosen:
            style = "-" if c.chosen == "in-sample" else "--"
            ax.add_patch(Rectangle((c.column - 0.46, c.row - 0.46), 0.92, 0.92, fill=False, lw=2.2, ls=style))
        dark = c.value is not None and abs(c.value) > 0.6 * limit
        ax.text(c.column, c.row, c.label, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.set_xticks(range(len(coefficients)), [f"{c:+.2g}" for c in coefficients], fontsize=8)
    ax.set_yticks(range(len(layers)), [str(layer) for layer in layers])
    ax.set_xlabel("coefficient (spread units)")
    ax.set_ylabel("layer")
    fig.colorbar(image, ax=ax, label="trait gain over baseline (in-sample)")
    ax.set_title(f"{results['trait']}: trait gain by layer × coefficient{_own_line(suffix)}", fontsize=10)
    fig.text(
        0.01,
        0.01,
        "solid box: in-sample best; dashed: chosen by a cross-fitting fold; hatched: incoherent or not fluent;\n"
        "too few scored: under the minimum share of answers scored, not counted; grey: unscored; white: not run",
        fontsize=7,
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return _save(fig, path)


def _plot_projection(results: Mapping[str, Any], layers: list[int], suffix: str, path: PathLike) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for layer in layers:
        rows = sorted((r for r in results["runs"] if r["layer"] == layer), key=lambda r: abs(r["coefficient"]))
        xs = [0.0] + [r["coefficient"] for r in rows]
        ys = [0.0] + [math.nan if r["projection_gain"] is None else r["projection_gain"] for r in rows]
        low = [0.0] + [_half(r, 0) for r in rows]
        high = [0.0] + [_half(r, 1) for r in rows]
        ax.errorbar(xs, ys, yerr=[low, high], marker="o", ms=4, capsize=3, label=f"layer {layer}")
    ax.axhline(0, color="grey", lw=1)
    ax.set_xlabel("coefficient (spread units)")
    ax.set_ylabel("projection gain (spread units)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(
        f"{results['trait']}: projection gain toward the trait's direction\n(answers read back by the unsteered "
        f"model; judge-free; 95% CI across questions){_own_line(suffix)}",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, path)


def _own_line(suffix: str) -> str:
    """A title's suffix (the smoke-test warning) on a line of its own, so a long title is never cut off."""
    return f"\n{suffix.strip()}" if suffix else ""


def _half(run: Mapping[str, Any], side: int) -> float:
    """The distance from a run's projection gain to one end of its interval (0 when there is none)."""
    gain, ci = run["projection_gain"], run.get("projection_gain_ci95")
    if gain is None or not ci:
        return 0.0
    return float(gain - ci[0]) if side == 0 else float(ci[1] - gain)
