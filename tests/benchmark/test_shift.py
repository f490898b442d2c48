"""Covariate shift: the noisy rows, their metrics, and a trained version as the noise grows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ensembles.benchmark.served import ServedModel
from ensembles.benchmark.shift import (
    SHIFT_METRICS,
    noisy_rows,
    shift_metrics,
    shift_scores,
    shifted_cells,
)
from ensembles.heldout import HELDOUT_FILE, HeldoutPredictions
from ensembles.store import ModelStore
from ensembles.tabular import ColumnSpec, fit_spec


def test_noise_is_scaled_by_strength_and_feature_std() -> None:
    X = np.array([[1.0, 10.0], [2.0, 20.0]])
    noise = np.array([[1.0, -1.0], [0.5, 2.0]])
    shifted = noisy_rows(X, np.array([0.0, 3.0]), 0.5, noise)
    # A constant feature (std 0) gets no noise; the other moves by 0.5 * 3 * noise.
    np.testing.assert_allclose(shifted, [[1.0, 8.5], [2.0, 23.0]])
    assert shifted.dtype == np.float32
    np.testing.assert_array_equal(noisy_rows(X, np.ones(2), 0.0, noise), X)


def test_regression_metrics_floor_a_zero_variance() -> None:
    y = np.array([[1.0], [2.0]])
    metrics = shift_metrics("regression", y + 0.5, y, np.zeros_like(y))
    assert metrics["rmse"] == pytest.approx(0.5) and metrics["coverage"] == 0.0
    assert np.isfinite(metrics["gaussian_nll"])


def _version(trained_store: Path, name: str) -> tuple[ServedModel, HeldoutPredictions]:
    store = ModelStore(trained_store)
    manifest = store.load_manifest(name)
    folder = store.path(name, manifest.version)
    return ServedModel(folder, manifest), HeldoutPredictions.load(folder / HELDOUT_FILE)


@pytest.mark.parametrize("name", ["digits", "diabetes"])
def test_shift_scores_start_at_the_clean_test_metrics(trained_store: Path, name: str) -> None:
    served, heldout = _version(trained_store, name)
    scores = shift_scores(served, heldout, seed=3, strengths=(0.0, 1.0))
    assert scores["strengths"] == [0.0, 1.0]
    assert set(scores["models"]) == {"default"}
    task = served.manifest.task
    clean = served.manifest.combiners[served.name].test_metrics
    for metric in SHIFT_METRICS[task]:
        values = scores["models"]["default"][metric]
        assert len(values) == 2
        # k = 0 is the test split served through onnxruntime; the manifest scored the
        # torch predictions of the same members: equal up to float32 rounding.
        np.testing.assert_allclose(values[0], clean[metric], rtol=1e-3, atol=1e-4, err_msg=metric)
    # The same seed draws the same noise.
    again = shift_scores(served, heldout, seed=3, strengths=(0.0, 1.0))
    assert again == scores


def test_the_single_network_is_scored_on_the_same_rows(trained_store: Path) -> None:
    served, heldout = _version(trained_store, "digits")
    seen = []

    def single(X: np.ndarray) -> tuple[np.ndarray, ...]:
        seen.append(X)
        return (np.full((len(X), 10), 0.1),)

    scores = shift_scores(served, heldout, seed=0, strengths=(0.0, 2.0), single=single)
    np.testing.assert_array_equal(seen[0], heldout.test.X)
    assert not np.array_equal(seen[1], heldout.test.X)
    assert scores["models"]["single_network"]["nll"] == [pytest.approx(np.log(10))] * 2


def test_on_a_table_only_observed_numeric_cells_move() -> None:
    table = {
        "age": np.array([30.0, np.nan, 50.0, 41.0, 35.0, 62.0]),
        "plan": np.array([1.0, 0.0, 1.0, np.nan, 0.0, 1.0]),
        "calls": np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        "state": np.array(["KS", "OH", "KS", "OH", "KS", None], dtype=object),
    }
    kinds = {"age": "numeric", "plan": "boolean", "calls": "numeric", "state": "categorical"}
    spec = fit_spec(table, [ColumnSpec(name=n, kind=k) for n, k in kinds.items()])
    X = spec.encode(table).X
    # Values age, plan, calls; indicators age:missing, plan:missing; then one-hot state.
    assert spec.feature_names[:5] == ["age", "plan", "calls", "age:missing", "plan:missing"]
    cells = shifted_cells(X, spec)
    expected = np.zeros(X.shape, dtype=bool)
    expected[:, [0, 2]] = True  # age and calls move ...
    expected[1, 0] = False  # ... except the missing age, which stays missing
    np.testing.assert_array_equal(cells, expected)
    assert shifted_cells(X, None).all()  # a plain matrix: every cell
