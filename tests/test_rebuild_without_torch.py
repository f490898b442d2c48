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
from ensembles.evaluation import evaluate_predictions, output_digest
from ensembles.heldout import HeldoutPredictions
from ensembles.store import ModelStore

store = ModelStore(sys.argv[1])
manifest = store.load_manifest(sys.argv[2])
heldout = HeldoutPredictions.load(store.path(manifest.name, manifest.version) / "heldout.npz")
level = manifest.training["interval_level"]
results = {}
for name, info in manifest.combiners.items():
    if info.kind == "weight_average":
        continue
    combiner = combiner_from_state(info.state)
    combined = combiner.combine(heldout.test.member_preds, heldout.test.X)
    metrics = evaluate_predictions(heldout.test, combined, combiner.member_weights, level)
    same_output = output_digest(combined) == info.test_output_sha256
    results[name] = same_output and metrics == info.test_metrics
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
