"""A plain-numpy process rebuilds every stored combiner and reproduces its test output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import json, sys
import numpy as np
from ensembles.combiners import combiner_from_state
from ensembles.evaluation import evaluate_predictions
from ensembles.heldout import HELDOUT_FILE, HeldoutPredictions
from ensembles.errors import IntegrityError
from ensembles.reproduction import TEST_OUTPUTS_FILE, check_reproduction, load_test_outputs
from ensembles.store import ModelStore

stored = ModelStore(sys.argv[1]).read_version(sys.argv[2])
manifest = stored.manifest
heldout = HeldoutPredictions.load(stored.files[HELDOUT_FILE])
expected = load_test_outputs(stored.files[TEST_OUTPUTS_FILE])
level = manifest.training["interval_level"]
results = {}
for name, info in manifest.combiners.items():
    if info.kind == "weight_average":
        continue
    combiner = combiner_from_state(info.state)
    combined = combiner.combine(heldout.test.member_preds, heldout.test.X)
    metrics = evaluate_predictions(
        heldout.test, combined, level, variance_scale=info.variance_scale or 1.0
    )
    # Another process (and maybe BLAS kernel) than the one that trained: the last bits of
    # float64 results may differ, so outputs agree to the loading tolerance, not bitwise.
    try:
        check_reproduction(name, combined, expected)
        same_output = True
    except IntegrityError:
        same_output = False
    same_metrics = metrics.keys() == info.test_metrics.keys() and all(
        np.isclose(metrics[key], info.test_metrics[key], rtol=1e-9, atol=1e-12, equal_nan=True)
        for key in metrics
    )
    results[name] = bool(same_output and same_metrics)
loaded = sorted(m for m in ("torch", "sklearn", "scipy") if m in sys.modules)
print(json.dumps({"results": results, "loaded": loaded}))
"""


@pytest.mark.parametrize("name", ["digits", "diabetes"])
def test_combiners_rebuild_from_the_manifest_with_numpy_alone(
    trained_store: Path, name: str
) -> None:
    output = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(trained_store), name],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    report = json.loads(output)
    assert report["loaded"] == []
    assert len(report["results"]) >= 4
    assert all(report["results"].values()), report["results"]
