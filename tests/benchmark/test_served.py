"""Served outputs on new rows: the version's ONNX members, then what serving computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ensembles.benchmark.scoring import model_uncertainty
from ensembles.benchmark.served import ServedModel
from ensembles.heldout import HELDOUT_FILE, HeldoutPredictions
from ensembles.store import ModelStore


@pytest.mark.parametrize("name", ["digits", "diabetes"])
def test_served_model_reproduces_the_stored_test_predictions(
    trained_store: Path, name: str
) -> None:
    store = ModelStore(trained_store)
    manifest = store.load_manifest(name)
    folder = store.path(name, manifest.version)
    test = HeldoutPredictions.load(folder / HELDOUT_FILE).test
    level = float(manifest.training["interval_level"])
    for combiner, info in manifest.combiners.items():
        served, measures = ServedModel(folder, manifest, combiner).predict(test.X)
        expected, expected_measures = model_uncertainty(folder, manifest.task, info, test, level)
        # The stored member predictions come from torch, the served ones from onnxruntime:
        # equal up to float32 rounding and the export's parity tolerance.
        np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5, err_msg=combiner)
        assert measures.keys() == expected_measures.keys()
        for key, values in measures.items():
            np.testing.assert_allclose(
                values, expected_measures[key], rtol=1e-3, atol=1e-4, err_msg=f"{combiner} {key}"
            )


def test_the_default_combiner_is_served_when_none_is_named(trained_store: Path) -> None:
    store = ModelStore(trained_store)
    manifest = store.load_manifest("digits")
    served = ServedModel(store.path("digits", manifest.version), manifest)
    assert served.name == manifest.default_combiner
    probabilities, _ = served.predict(np.zeros((3, manifest.input.n_features), np.float32))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
