"""Layer evaluation on train / validation / test pairs, and the methods read in chunks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_capture import planted

import traitvec.activations as activations_module
from traitvec import VectorError
from traitvec.capture import Activations
from traitvec.evaluation import Evaluation, auroc, evaluate, in_depth_band, split_pairs
from traitvec.methods import PCA, MeanDiff, Probe, get_method
from traitvec.stages.search import candidate_layers


def noise(n_pairs: int, n_layers: int, width: int, seed: int) -> Activations:
    generator = torch.Generator().manual_seed(seed)
    both = torch.randn(2 * n_pairs, n_layers, width, generator=generator)
    return Activations(
        positive=both[:n_pairs],
        negative=both[n_pairs:],
        layers=tuple(range(n_layers)),
        position="prefill-mean",
        model={"num_layers": n_layers},
        trait="synthetic/noise",
        trait_hash="noise",
        lines=tuple(range(1, n_pairs + 1)),
    )


def test_reported_metrics_of_the_chosen_layer_are_unbiased_on_pure_noise() -> None:
    """170 pairs of pure noise, 18 layers: the metrics printed for the recommended layer average the truth.

    Choosing the layer and reporting its numbers on the same pairs gives d ≈ 0.34 and AUROC ≈ 0.60
    (REFERENCE §7); here the layer is chosen on validation pairs and the numbers come from test pairs.
    """
    reported_d, reported_auc, chosen_on = [], [], []
    for seed in range(60):
        acts = noise(170, 18, 16, seed)
        ev = evaluate(acts, {"mean-diff": MeanDiff().fit(acts)}, seed=seed)
        layer = ev.recommended["mean-diff"]
        row = next(m for m in ev.for_method("mean-diff") if m.layer == layer)
        reported_d.append(row.cohens_d)
        reported_auc.append(row.auroc)
        chosen_on.append(row.validation.cohens_d)
        assert in_depth_band(layer, 18)
    assert abs(np.mean(reported_d)) < 0.1
    assert abs(np.mean(reported_auc) - 0.5) < 0.03
    assert np.mean(chosen_on) > 0.25  # the selection bias is real: it stays on the validation pairs


def test_the_recommendation_and_candidates_are_the_best_validation_layers_in_the_band() -> None:
    acts = noise(60, 10, 8, 1)
    ev = evaluate(acts, {"mean-diff": MeanDiff().fit(acts), "pca": PCA().fit(acts)})
    for method in ("mean-diff", "pca"):
        rows = ev.for_method(method)
        band = [m for m in rows if in_depth_band(m.layer, 10)]
        by_validation = sorted(band, key=lambda m: -m.validation.cohens_d)
        assert ev.ranked_layers(method) == [m.layer for m in by_validation]
        assert ev.recommended[method] == by_validation[0].layer
        assert ev.best_any_depth[method] == max(rows, key=lambda m: m.validation.cohens_d).layer
        assert candidate_layers(ev, method, 3, 10) == sorted(m.layer for m in by_validation[:3])
    # another model's depth moves the band: for a 40-layer steered model only layers >= 8 qualify
    assert set(ev.ranked_layers("mean-diff", n_layers_model=40)) == {8, 9}
    assert ev.ranked_layers("mean-diff", 2, n_layers_model=40) == ev.ranked_layers("mean-diff", n_layers_model=40)


def test_the_split_is_by_pair_and_recorded() -> None:
    acts = noise(50, 3, 8, 2)
    ev = evaluate(acts, {"mean-diff": MeanDiff().fit(acts)}, validation_fraction=0.2, test_fraction=0.3, seed=5)
    train, val, test = split_pairs(50, 0.2, 0.3, seed=5)
    assert (ev.split.train, ev.split.validation, ev.split.test) == (tuple(train), tuple(val), tuple(test))
    data = ev.to_dict()
    split = data["split"]
    assert (split["n_train_pairs"], split["n_validation_pairs"], split["n_test_pairs"]) == (25, 10, 15)
    assert sorted(split["train"] + split["validation"] + split["test"]) == list(acts.lines)
    assert split["test"] == [acts.lines[i] for i in test]
    assert set(data["selection"]) == {"fit", "choose", "report"} and "validation" in data["selection"]["choose"]
    assert "validation" in data["recommendation_rule"]
    row = data["metrics"][0]
    assert set(row) == {"layer", "method", "accuracy", "auroc", "cohens_d", "validation"}
    # the reported numbers are those of the test pairs on the training direction
    unit = MeanDiff().direction_of(acts, 0, train)[0].double()
    pos, neg = acts.at(0)
    projected = (pos[test].double() @ unit).numpy(), (neg[test].double() @ unit).numpy()
    assert row["auroc"] == pytest.approx(auroc(*projected))


def test_evaluation_round_trips_and_a_tampered_one_is_refused() -> None:
    acts = noise(30, 4, 8, 3)
    ev = evaluate(acts, {"mean-diff": MeanDiff().fit(acts), "probe": Probe().fit(acts)})
    again = Evaluation.from_dict(ev.to_dict())
    assert again.to_dict() == ev.to_dict() and again.ranked_layers("probe") == ev.ranked_layers("probe")
    assert again.lines == ev.lines and again.split == ev.split
    for broken in ({**ev.to_dict(), "metrics": "x"}, {**ev.to_dict(), "split": {}}, {"trait": 1}, []):
        with pytest.raises(VectorError, match="not an evaluation written by traitvec"):
            Evaluation.from_dict(broken)


def test_auroc_from_ranks_equals_the_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        pos = rng.integers(0, 6, size=rng.integers(1, 30)).astype(float)  # many ties
        neg = rng.integers(0, 6, size=rng.integers(1, 30)).astype(float)
        pairwise = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
        assert auroc(pos, neg) == pytest.approx(pairwise, abs=1e-12)
    assert math.isnan(auroc(np.array([]), np.array([1.0])))


# --------------------------------------------------------------------------- methods in chunks


@pytest.mark.parametrize("method", [MeanDiff(), PCA(), Probe()])
def test_methods_read_in_chunks_match_the_in_memory_fit(method, monkeypatch: pytest.MonkeyPatch) -> None:
    acts, _ = planted(n=300, width=16, shared=20.0)
    pos, neg = acts.at(0)
    expected, expected_raw = method.direction(pos, neg)
    monkeypatch.setattr(activations_module, "CHUNK_BYTES", 16 * 16 * 7)  # chunks of 7 pairs
    assert len(list(acts.chunks(0))) == math.ceil(300 / 7)
    unit, raw = method.direction_of(acts, 0)
    assert float(unit @ expected) > 0.9999 and raw == pytest.approx(expected_raw, rel=1e-4)
    vector = method.fit(acts)
    torch.testing.assert_close(vector.direction(0), expected, atol=1e-4, rtol=1e-4)
    both = torch.cat([pos, neg]).double()
    assert vector.position_spreads[0] == pytest.approx(float((both - both.mean(0)).norm(dim=1).mean()), rel=1e-6)


def test_pca_of_more_pairs_than_the_width_uses_the_moment_matrix() -> None:
    acts, direction = planted(n=200, width=8)
    pos, neg = acts.at(0)
    svd_unit, svd_raw = PCA().direction(pos, neg)
    unit, raw = PCA().direction_of(acts, 0)  # 200 pairs > width 8: the 8 × 8 moment matrix
    assert float(unit @ svd_unit) > 0.99999 and raw == pytest.approx(svd_raw, rel=1e-6)
    assert float(unit @ direction) > 0.99
    few = PCA().direction_of(acts, 0, rows=np.arange(6))  # fewer pairs than the width: the SVD
    assert float(few[0] @ PCA().direction(pos[:6], neg[:6])[0]) > 0.99999


def test_the_probe_fits_a_capped_subsample() -> None:
    acts, direction = planted(n=500, width=16)
    probe = Probe(max_pairs=64)
    vector = probe.fit(acts)
    assert vector.extra == {"C": 0.1, "n_fit_pairs": 64}
    assert float(vector.direction(0) @ direction) > 0.95
    assert Probe().fit(acts).extra == {"C": 0.1}
    with pytest.raises(ValueError, match="max_pairs = 1"):
        Probe(max_pairs=1)
    assert get_method("probe").direction_of(acts, 0, rows=[0, 1, 2])[0].shape == (16,)


def test_the_evaluation_plot_reads_without_covering_data(tmp_path) -> None:
    from matplotlib.patches import Polygon, Rectangle

    from traitvec.render.plots import RECOMMENDED_MARKERS, evaluation_figure, plot_evaluation

    acts = noise(40, 8, 8, 4)
    vectors = {"mean-diff": MeanDiff().fit(acts), "pca": PCA().fit(acts)}
    ev = evaluate(acts, vectors)
    fig = evaluation_figure([ev])
    axes = fig.axes
    for ax in axes:
        assert ax.get_ylabel() and ax.get_xlabel() == "layer"
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)  # layers 0, 1, 2, ... never 2.5
        spans = [(p.get_x(), p.get_x() + p.get_width()) for p in ax.patches if isinstance(p, Rectangle)]
        spans += [(min(p.get_xy()[:, 0]), max(p.get_xy()[:, 0])) for p in ax.patches if isinstance(p, Polygon)]
        band = [layer for layer in range(8) if in_depth_band(layer, 8)]
        assert (band[0] - 0.5, band[-1] + 0.5) in spans  # the 20-80% depth band, shaded
    (legend,) = fig.legends
    fig.canvas.draw()
    top_of_legend = legend.get_window_extent().transformed(fig.transFigure.inverted()).y1
    assert all(top_of_legend < ax.get_position().y0 for ax in axes)  # below the panels, off the data
    labels = [t.get_text() for t in legend.get_texts()]
    assert "recommended: mean-diff" in labels and "recommended: pca" in labels
    markers = {c.get_paths()[0].vertices.shape for c in axes[1].collections}  # the two markers differ in shape
    assert len(markers) == 2 and RECOMMENDED_MARKERS["mean-diff"] != RECOMMENDED_MARKERS["pca"]
    assert sorted(float(c.get_offsets()[0][0]) for c in axes[1].collections) == sorted(ev.recommended.values())
    assert plot_evaluation([ev], tmp_path / "evaluation.png").stat().st_size > 10_000


def test_the_evaluation_plot_of_a_tiny_trait_keeps_integer_layers_and_says_why_a_panel_is_empty() -> None:
    from traitvec.render.plots import evaluation_figure

    acts = noise(7, 3, 8, 1)  # 7 pairs: one test pair, so no test Cohen's d at any layer
    ev = evaluate(acts, {"mean-diff": MeanDiff().fit(acts), "pca": PCA().fit(acts)})
    assert ev.n_test_pairs == 1 and all(not math.isfinite(m.cohens_d) for m in ev.metrics)
    fig = evaluation_figure([ev])
    fig.canvas.draw()
    for ax in fig.axes:
        assert ax.get_xlim() == (-0.5, 2.5)  # the captured layers on every panel, the empty one too
        ticks = [t for t in ax.get_xticks() if -0.5 <= t <= 2.5]
        assert ticks == [0.0, 1.0, 2.0]
    assert [t.get_text() for t in fig.axes[1].texts] == ["no finite Cohen's d: 1 test pair(s)"]
    sizes = sorted(float(c.get_sizes()[0]) for c in fig.axes[0].collections)
    assert sizes == [110.0, 420.0]  # two methods recommending one layer: nested markers, neither hidden


def test_too_few_held_out_pairs_are_warned_about_and_enough_are_not() -> None:
    few = noise(20, 2, 8, 1)  # 4 validation and 4 test pairs
    message = evaluate(few, {"mean-diff": MeanDiff().fit(few)}).few_pairs_warning()
    assert message is not None and message.startswith("20 pairs leave 4 validation and 4 test pairs")
    enough = noise(50, 2, 8, 1)  # 10 and 10
    assert evaluate(enough, {"mean-diff": MeanDiff().fit(enough)}).few_pairs_warning() is None
