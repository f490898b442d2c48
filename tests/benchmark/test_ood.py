"""Out-of-distribution detection scores, checked by hand and against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sklearn_roc_curve

from ensembles.benchmark.aggregate import summarize_runs
from ensembles.benchmark.ood import (
    detection_auroc,
    detection_scores,
    fpr_at_tpr,
    measure_label,
    ood_table,
    roc_curve,
)
from ensembles.errors import ShapeError


def test_auroc_counts_pairs_and_ties_by_hand() -> None:
    in_scores = np.array([0.1, 0.4, 0.35, 0.8])
    out_scores = np.array([0.9, 0.4, 0.7])
    # 0.9 beats all 4; 0.4 beats 0.1 and 0.35, ties 0.4 (one half), loses to 0.8: 2.5;
    # 0.7 beats 0.1, 0.4, 0.35: 3. Of 4 x 3 = 12 pairs: 9.5.
    assert detection_auroc(in_scores, out_scores) == pytest.approx(9.5 / 12)


def test_a_constant_score_detects_nothing() -> None:
    flat_in, flat_out = np.zeros(5), np.zeros(7)
    assert detection_auroc(flat_in, flat_out) == 0.5
    assert fpr_at_tpr(flat_in, flat_out) == 1.0


def test_a_perfect_detector() -> None:
    assert detection_auroc(np.array([0.0, 0.1]), np.array([0.5, 0.9])) == 1.0
    assert fpr_at_tpr(np.array([0.0, 0.1]), np.array([0.5, 0.9])) == 0.0


def test_fpr_at_95_tpr_by_hand() -> None:
    out_scores = np.arange(1.0, 21.0)  # 20 rows: flagging 19 needs the threshold at 2
    in_scores = np.array([0.0, 1.5, 2.0, 3.0, 25.0])  # 2.0, 3.0 and 25.0 are flagged
    assert fpr_at_tpr(in_scores, out_scores) == pytest.approx(3 / 5)
    # 50%: 10 rows, threshold 11, only 25.0 flagged.
    assert fpr_at_tpr(in_scores, out_scores, tpr=0.5) == pytest.approx(1 / 5)


def test_scores_agree_with_scikit_learn_on_tied_scores() -> None:
    # An independent implementation: ranks here, sorted thresholds there.
    rng = np.random.default_rng(0)
    in_scores = rng.normal(size=200).round(1)
    out_scores = (rng.normal(size=300) + 1).round(1)
    labels = np.r_[np.zeros(200), np.ones(300)]
    scores = np.r_[in_scores, out_scores]
    assert detection_auroc(in_scores, out_scores) == pytest.approx(roc_auc_score(labels, scores))
    fpr, tpr, _ = sklearn_roc_curve(labels, scores)
    expected = fpr[np.argmax(tpr >= 0.95)]
    assert fpr_at_tpr(in_scores, out_scores) == pytest.approx(expected)


def test_roc_curve_runs_from_zero_to_one_and_its_area_is_the_auroc() -> None:
    rng = np.random.default_rng(1)
    in_scores, out_scores = rng.normal(size=50), rng.normal(size=40) + 0.5
    grid = np.linspace(0.0, 1.0, 2001)
    curve = np.asarray(roc_curve(in_scores, out_scores, grid))
    assert curve[0] == 0.0 and curve[-1] == 1.0 and np.all(np.diff(curve) >= 0)
    area = np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(grid))
    # the grid reads the curve at its corners only approximately
    assert area == pytest.approx(detection_auroc(in_scores, out_scores), abs=1e-3)


def test_detection_scores_are_high_when_unsure() -> None:
    measures = {
        "variance": np.array([[0.1, 0.3], [0.0, 0.2]]),
        "agreement": np.array([1.0, 0.6]),
        "max_probability": np.array([0.9, 0.5]),
        "mutual_information": np.array([0.0, 0.4]),
    }
    scores = detection_scores(measures)
    np.testing.assert_allclose(scores["variance"], [0.2, 0.1])  # mean over classes
    np.testing.assert_allclose(scores["agreement"], [0.0, 0.4])
    np.testing.assert_allclose(scores["max_probability"], [0.1, 0.5])
    np.testing.assert_array_equal(scores["mutual_information"], [0.0, 0.4])
    assert measure_label("agreement") == "1−agreement"
    assert measure_label("variance") == "variance"


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ShapeError, match=r"must be non-empty and of shape \(n_samples,\)"):
        detection_auroc(np.zeros((2, 2)), np.zeros(3))
    with pytest.raises(ShapeError, match="got \\(3,\\) and \\(0,\\)"):
        fpr_at_tpr(np.zeros(3), np.zeros(0))


def test_ood_table_pairs_mutual_information_with_each_one_network_entropy() -> None:
    def run(mi: float, best: float, single: float, fpr: float) -> dict:
        detection = {
            "default": {"mutual_information": {"auroc": mi, "fpr95": fpr}},
            "best_member": {"predictive_entropy": {"auroc": best, "fpr95": 0.5}},
            "single_network": {"predictive_entropy": {"auroc": single, "fpr95": 0.4}},
        }
        models = {"mean": {"effective_members": 5.0}}
        return {
            "strategy": "repeat",
            "default_combiner": "mean",
            "models": models,
            "ood": {"detection": detection},
        }

    runs = [run(0.95, 0.90, 0.91, 0.2), run(0.93, 0.92, 0.91, 0.3)]
    results = {"runs": runs, "summary": summarize_runs(runs)}
    auroc = ood_table(results, "auroc").splitlines()
    assert auroc[0] == (
        "| strategy | default | eff. members | mutual_information | best_member entropy | "
        "single_network entropy | MI − best_member | MI − single_network |"
    )
    # MI - best member: +0.05 and +0.01; MI - single network: +0.04 and +0.02.
    assert auroc[2] == (
        "| repeat | mean | 5.0 ± 0.0 | 0.940 ± 0.014 | 0.910 ± 0.014 | 0.910 ± 0.000 | "
        "+0.030 ± 0.020 | +0.030 ± 0.010 |"
    )
    # A lower FPR is better: single network 0.4 against 0.2 and 0.3 is a gain of +0.15.
    assert ood_table(results, "fpr95").splitlines()[2].endswith("| +0.150 ± 0.050 |")
