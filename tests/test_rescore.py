"""traitvec rescore: re-judging saved steering answers with another judge, no model loaded."""

from __future__ import annotations

import pytest

from traitvec.stages.rescore import compare_judges, pearson


def test_pearson() -> None:
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [6, 4, 2]) == pytest.approx(-1.0)
    assert pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert pearson([1, 2], [1, 2]) is None  # too few pairs
    assert pearson([1, 1, 1], [1, 2, 3]) is None  # a constant side
    with pytest.raises(ValueError, match="paired"):
        pearson([1, 2, 3], [1, 2])


def _doc(trait_means, coherence_means, scores):
    def summary(i):
        return {"trait": {"mean": trait_means[i]}, "coherence": {"mean": coherence_means[i]}}

    return {
        "baseline": summary(0),
        "runs": [{"layer": 6, "coefficient": c, "round": k + 1, **summary(k + 1)} for k, c in enumerate((0.5, 1.0))],
        "prompting_baseline": {**summary(3), "responses": [{"trait": {"score": scores[-1]}, "coherence": None}]},
        "responses": [{"trait": {"score": s}, "coherence": {"score": 50.0}} for s in scores[:-1]],
    }


def test_compare_judges_per_run_differences_and_correlations() -> None:
    old = _doc([10.0, 20.0, 30.0, 40.0], [90.0, 80.0, 70.0, 60.0], [10.0, 20.0, 30.0, None, 50.0])
    new = _doc([15.0, 30.0, 50.0, None], [90.0, 80.0, 70.0, 60.0], [12.0, 25.0, 31.0, 44.0, 60.0])
    comparison = compare_judges(old, new)
    rows = {r["run"]: r for r in comparison["runs"]}
    assert list(rows) == ["baseline", "L6 x +0.5 (round 1)", "L6 x +1 (round 2)", "prompted"]
    assert rows["L6 x +1 (round 2)"]["trait"] == {"old": 30.0, "new": 50.0, "difference": 20.0}
    assert rows["prompted"]["trait"] == {"old": 40.0, "new": None, "difference": None}
    assert comparison["mean_difference"]["trait"]["mean"] == pytest.approx((5 + 10 + 20) / 3)
    assert comparison["mean_difference"]["trait"]["n"] == 3
    assert comparison["mean_difference"]["coherence"]["mean"] == 0.0
    runs, responses = comparison["correlation"]["runs"], comparison["correlation"]["responses"]
    assert runs["trait"] == pytest.approx(pearson([10, 20, 30], [15, 30, 50])) and runs["n_trait"] == 3
    assert runs["coherence"] == pytest.approx(1.0)
    assert responses["n_trait"] == 4  # the unscored old response is left out
    assert responses["trait"] == pytest.approx(pearson([10, 20, 30, 50], [12, 25, 31, 60]))
    assert responses["coherence"] is None and responses["n_coherence"] == 4  # every coherence is 50: constant
