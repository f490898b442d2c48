"""HistGradientBoosting beside the ensembles: native table input, its fit rows, its scores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ensembles.benchmark.gradient_boosting import (
    HGB,
    category_codes,
    hgb_baseline,
    native_features,
)
from ensembles.benchmark.report import markdown_report
from ensembles.benchmark.runner import BenchmarkRequest, run_benchmark
from ensembles.cli.benchmark import main
from ensembles.data import load_builtin, load_csv, split_dataset
from ensembles.metrics import classification_metrics
from tests.conftest import tiny_request
from tests.tabular_toys import AGE, LABEL, PLAN, STATE, VALUE, write_mixed_csv

TINY = ["--members", "2", "--epochs", "2", "--hidden-sizes", "8", "--repeats", "1"]
TINY += ["--timing-repeats", "2", "--quiet"]


def test_category_codes_follow_the_fit_rows_by_frequency() -> None:
    fit = np.array(["b", "a", "b", None, "c", "a", "b"], dtype=object)
    cells = np.array(["a", "b", "c", "d", None], dtype=object)
    # b (3 rows) gets 0, a (2 rows) 1; c is beyond the 2 most frequent, d was never fitted
    # on, None is missing: all three are NaN, which the model takes as missing.
    codes = category_codes(fit, cells, max_levels=2)
    np.testing.assert_array_equal(codes, [1.0, 0.0, np.nan, np.nan, np.nan])
    # Equal counts are ordered by name.
    tied = np.array(["y", "x"], dtype=object)
    np.testing.assert_array_equal(category_codes(tied, tied, 5), [1.0, 0.0])


def test_a_table_goes_in_as_its_raw_columns_with_categories(tmp_path: Path) -> None:
    data = load_csv(write_mixed_csv(tmp_path / "mixed.csv"), LABEL)
    splits = split_dataset(data, 0)
    X_fit, X_test, categorical = native_features(splits.train, splits.test, 255)
    names = data.tabular.column_names
    assert X_fit.shape == (len(splits.train.y), len(names))
    assert X_test.shape == (len(splits.test.y), len(names))
    assert categorical.tolist() == [name == STATE for name in names]
    # Numeric and boolean columns are the cells themselves, missing ones NaN (not the
    # median fill and indicator the members take).
    for name in (AGE, PLAN):
        column = names.index(name)
        np.testing.assert_array_equal(X_test[:, column], splits.test.table[name])
        assert np.isnan(X_test[:, column]).any()
    # A state is coded by its frequency on the fit rows; a missing one is NaN.
    state = splits.train.table[STATE]
    counts = {level: int(np.sum(state == level)) for level in set(state) - {None}}
    levels = sorted(counts, key=lambda level: (-counts[level], level))
    expected = [np.nan if c is None else levels.index(c) for c in splits.test.table[STATE]]
    np.testing.assert_array_equal(X_test[:, names.index(STATE)], expected)


def test_plain_matrices_go_in_as_they_are() -> None:
    splits = split_dataset(load_builtin("wine"), 0)
    X_fit, X_test, categorical = native_features(splits.train, splits.test, 255)
    assert categorical is None
    np.testing.assert_array_equal(X_fit, splits.train.X)
    np.testing.assert_array_equal(X_test, splits.test.X)


def test_the_classifier_is_fitted_on_training_and_validation_rows() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    splits = split_dataset(load_builtin("breast_cancer"), 3)
    scores = hgb_baseline(splits, seed=3, timing_repeats=1)
    got = scores["models"][HGB]
    X = np.vstack([splits.train.X, splits.validation.X])
    y = np.concatenate([splits.train.y, splits.validation.y])
    with threadpool_limits(1, user_api="openmp"):
        model = HistGradientBoostingClassifier(random_state=3).fit(X, y)
        expected = classification_metrics(model.predict_proba(splits.test.X), splits.test.y)
    assert {"roc_auc", "average_precision"} <= set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
    assert got["train_seconds"] == got["fit_seconds"] > 0
    assert got["infer_us_per_row"] > 0
    # Its uncertainty is its predictive entropy, as for a single network.
    assert math.isfinite(got["auroc_variance"]) and math.isnan(got["auroc_mi"])
    assert len(scores["calibration"][HGB]["count"]) == 15


def test_the_regressor_gets_a_constant_out_of_fold_variance() -> None:
    splits = split_dataset(load_builtin("diabetes"), 0)
    got = hgb_baseline(splits, seed=0, level=0.9, timing_repeats=1)["models"][HGB]
    variance, mse = got["residual_variance"], got["rmse"] ** 2
    # A Gaussian with one variance: the NLL follows from RMSE and variance.
    expected = 0.5 * (math.log(2 * math.pi * variance) + mse / variance)
    assert got["gaussian_nll"] == pytest.approx(expected, rel=1e-9)
    assert 0.0 <= got["coverage"] <= 1.0 and 0.0 <= got["quantile_coverage"] <= 1.0
    assert got["mae"] <= got["rmse"]
    # A constant variance ranks no row above another.
    assert math.isnan(got["spearman"]) and math.isnan(got["selective_rmse"])
    assert got["train_seconds"] > got["fit_seconds"] > 0


def _small(tmp_path: Path, **changes: object) -> BenchmarkRequest:
    train = tiny_request(tmp_path, members=2, epochs=2, **changes)
    return BenchmarkRequest(
        train=train,
        strategies=("bagging",),
        repeats=1,
        shift_strengths=(0.0, 1.0),
        timing_repeats=2,
        progress=False,
    )


def test_a_classification_benchmark_scores_it(tmp_path: Path) -> None:
    results = run_benchmark(_small(tmp_path, dataset="breast_cancer"))
    models = results["summary"]["bagging"]["models"]
    for key in ("accuracy", "nll", "ece", "roc_auc", "average_precision", "train_seconds"):
        assert models[HGB][key]["n"] == 1 and math.isfinite(models[HGB][key]["mean"]), key
    report = markdown_report(results)
    assert f"| any | {HGB} (baseline) |" in report
    assert f"| {HGB} mean ± std |" in report
    assert "| bagging | roc_auc | mean |" in report


def test_a_regression_benchmark_scores_it(tmp_path: Path) -> None:
    results = run_benchmark(_small(tmp_path, dataset="diabetes"))
    model = results["runs"][0]["models"][HGB]
    for key in ("rmse", "mae", "gaussian_nll", "coverage", "quantile_coverage"):
        assert math.isfinite(model[key]), key
    report = markdown_report(results)
    assert "| bagging | rmse | mean |" in report and "out-of-fold residual" in report


def test_a_mixed_csv_benchmark_scores_it_natively(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = write_mixed_csv(tmp_path / "churn.csv")
    output = tmp_path / "report"
    argv = ["--csv", str(csv), "--target", LABEL, "--strategies", "repeat"]
    assert main([*argv, "--shift-strengths", "0", "1", "--output", str(output), *TINY]) == 0
    out = capsys.readouterr().out
    assert f"| any | {HGB} (baseline) |" in out and "## Covariate shift" in out
    results = json.loads((output / "results.json").read_text())
    run = results["runs"][0]
    for key in ("accuracy", "nll", "ece", "roc_auc", "average_precision"):
        assert 0.0 <= run["models"][HGB][key] < math.inf, key
    assert all(math.isfinite(v) for v in run["shift"]["models"]["default"]["nll"])


def test_a_mixed_regression_csv(tmp_path: Path) -> None:
    csv = write_mixed_csv(tmp_path / "values.csv", task="regression")
    results = run_benchmark(_small(tmp_path, dataset=None, csv=csv, target=VALUE))
    model = results["runs"][0]["models"][HGB]
    assert results["task"] == "regression" and math.isfinite(model["rmse"])
