"""PNG plots of steering results (matplotlib, Agg backend; written atomically)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ._io import atomic_path

__all__ = ["plot_steering"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_steering(results: dict[str, Any], folder: str | Path) -> list[Path]:
    """Write ``trait_coherence.png`` (score against coefficient per layer) and ``heatmap.png``.

    Returns:
        The two paths.
    """
    plt = _pyplot()
    folder = Path(folder)
    base = results["baseline"]
    floor = results["settings"]["coherence_floor"]
    runs = results["runs"]
    layers = sorted({r["layer"] for r in runs}) or list(results["layers"])
    suffix = "  (smoke test: tiny local judge)" if results.get("smoke_test") else ""

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
    first = folder / "trait_coherence.png"
    with atomic_path(first, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)

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
    second = folder / "heatmap.png"
    with atomic_path(second, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return [first, second]
