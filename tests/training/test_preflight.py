"""Before training: the placeholder held-out predictions give the rows combiners will fit on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ensembles.data import load_data, split_dataset
from ensembles.evaluation import combiner_fit_problems
from ensembles.heldout import HELDOUT_FILE, FitSet, HeldoutPredictions, combiner_fit_set
from ensembles.store import ModelStore
from ensembles.training.plans import MemberPlan
from ensembles.training.preflight import placeholder_heldout


@pytest.mark.parametrize("source", ["heldout", "validation"])
def test_placeholder_fit_rows_are_those_of_the_trained_ensemble(
    trained_store: Path, source: str
) -> None:
    store = ModelStore(trained_store)
    manifest = store.load_manifest("diabetes")  # bagging: out-of-bag rows join the fit set
    trained = HeldoutPredictions.load(store.path("diabetes", manifest.version) / HELDOUT_FILE)
    split = manifest.split
    splits = split_dataset(
        load_data("diabetes"), split["seed"], split["validation_fraction"], split["test_fraction"]
    )
    plans = [MemberPlan(i, m.seed, m.rows) for i, m in enumerate(manifest.members)]
    placeholder = placeholder_heldout(splits, manifest.n_members, plans)
    expected = combiner_fit_set(trained, source)
    found = combiner_fit_set(placeholder, source)
    assert found.record == expected.record
    np.testing.assert_array_equal(found.data.y, expected.data.y)
    np.testing.assert_array_equal(found.data.X, expected.data.X)
    assert found.data.member_preds.shape == expected.data.member_preds.shape
    np.testing.assert_array_equal(found.data.member_preds, 0.0)


def test_placeholder_outputs_are_uniform_probabilities_and_in_sample_on_request() -> None:
    splits = split_dataset(load_data("wine"), 0, 0.2, 0.2)
    heldout = placeholder_heldout(splits, 4, in_sample=True)
    assert heldout.train is None
    assert heldout.validation.member_preds.shape == (4, len(splits.validation.y), 3)
    np.testing.assert_allclose(heldout.test.member_preds, 1 / 3, rtol=1e-12)
    fit_set = combiner_fit_set(heldout, "in_sample")
    assert fit_set.record == {"source": "in_sample", "n_rows": len(splits.train.y), "leaks": True}


def test_fit_problems_name_the_combiner_and_where_it_fails() -> None:
    splits = split_dataset(load_data("wine"), 0, 0.03, 0.2)  # 6 validation rows
    fit_set = combiner_fit_set(placeholder_heldout(splits, 3), "validation")
    problems = combiner_fit_problems("classification", fit_set, ("mean", "vote", "blend"))
    assert list(problems) == ["blend"]
    assert problems["blend"].startswith(
        "blend fails on a cross-fitting half of the 6 fit rows: BlendingCombiner needs at least"
    )
    tiny = FitSet(fit_set.data.rows(np.arange(3)), fit_set.record)
    assert combiner_fit_problems("classification", tiny, ("blend",))["blend"].startswith(
        "blend fails on the 3 fit rows: BlendingCombiner needs at least 4 fit rows"
    )
