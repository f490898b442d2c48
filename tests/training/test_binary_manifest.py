"""A binary run publishes ROC AUC and average precision wherever classification scores appear."""

from __future__ import annotations

from pathlib import Path

from ensembles.cli.train import summary
from ensembles.manifest import Manifest
from ensembles.training.pipeline import run_training
from tests.conftest import tiny_request

BINARY_KEYS = {"roc_auc", "average_precision"}


def test_a_binary_manifest_records_both_scores_and_the_class_weight(tmp_path: Path) -> None:
    request = tiny_request(
        tmp_path,
        dataset="breast_cancer",
        strategy="bagging",
        config={"class_weight": "balanced"},
    )
    report = run_training(request)
    manifest = Manifest.from_json(report.manifest.to_json())  # finite: the JSON is valid
    assert manifest.training["config"]["class_weight"] == "balanced"
    for name, info in manifest.combiners.items():
        assert set(info.test_metrics) >= BINARY_KEYS, name
        assert set(info.heldout_metrics) >= BINARY_KEYS, name
        assert 0.5 < info.test_metrics["roc_auc"] <= 1.0, name
    for name, metrics in manifest.baselines.items():
        assert set(metrics) >= BINARY_KEYS, name
    assert set(manifest.out_of_sample.metrics) >= BINARY_KEYS
    table = summary(report)
    header = "| test split | accuracy | nll | brier | ece | roc_auc | average_precision |"
    assert header in table
