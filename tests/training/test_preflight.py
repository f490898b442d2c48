"""Before training: the placeholder held-out predictions give the rows combiners will fit on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ensembles.data import load_data, split_dataset
from ensembles.evaluation import combiner_fit_problems
from ensembles.heldout import HELDOUT_FILE, FitSet, HeldoutPredictions, combiner_fit_set
from ensembles.store import ModelStore
from ensembles.training.preflight import placeholder_heldout


@pytest.mark.parametrize("name", ["diabetes", "digits"])  # bagging and snapshot
def test_placeholder_fit_rows_are_those_of_the_trained_ensemble(
    trained_store: Path, name: str
) -> None:
    store = ModelStore(trained_store)
    manifest = store.load_manifest(name)
    trained = HeldoutPredictions.load(store.path(name, manifest.version) / HELDOUT_FILE)
    split = manifest.split
    splits = split_dataset(
        load_data(name), split["seed"], split["validation_fraction"], split["test_fraction"]
    )
    placeholder = placeholder_heldout(splits, manifest.n_members)
    expected = combiner_fit_set(trained)
    found = combiner_fit_set(placeholder)
    assert found.record == expected.record == manifest.combiners["mean"].fitted_on
    np.testing.assert_array_equal(found.data.y, expected.data.y)
    np.testing.assert_array_equal(found.data.X, expected.data.X)
    assert found.data.member_preds.shape == expected.data.member_preds.shape
    placeholder_value = 0.0 if manifest.task == "regression" else 1 / len(manifest.classes)
    np.testing.assert_allclose(found.data.member_preds, placeholder_value, rtol=1e-12)


def test_placeholder_outputs_are_uniform_probabilities() -> None:
    splits = split_dataset(load_data("wine"), 0, 0.2, 0.2)
    heldout = placeholder_heldout(splits, 4)
    assert heldout.train is None
    assert heldout.validation.member_preds.shape == (4, len(splits.validation.y), 3)
    np.testing.assert_allclose(heldout.test.member_preds, 1 / 3, rtol=1e-12)
    fit_set = combiner_fit_set(heldout)
    assert fit_set.record == {"source": "validation", "n_rows": len(splits.validation.y)}


def test_fit_problems_name_the_combiner_and_where_it_fails() -> None:
    splits = split_dataset(load_data("wine"), 0, 0.03, 0.2)  # 6 validation rows
    fit_set = combiner_fit_set(placeholder_heldout(splits, 3))
    problems = combiner_fit_problems("classification", fit_set, ("mean", "vote", "blend"))
    assert list(problems) == ["blend"]
    assert problems["blend"].startswith(
        "blend fails on a cross-fitting half of the 6 fit rows: BlendingCombiner needs at least"
    )
    tiny = FitSet(fit_set.data.rows(np.arange(3)), fit_set.record)
    assert combiner_fit_problems("classification", tiny, ("blend",))["blend"].startswith(
        "blend fails on the 3 fit rows: BlendingCombiner needs at least 4 fit rows"
    )
