"""Served uncertainty of trained ensembles: what is served, equal in serving, metrics, benchmark."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from serving_fixtures import LiveServer

from ensembles.benchmark.scoring import model_uncertainty
from ensembles.evaluation import evaluate_predictions
from ensembles.heldout import HELDOUT_FILE, HeldoutPredictions, SplitPredictions
from ensembles.manifest import Manifest
from ensembles.metrics import regression_metrics
from ensembles.store import ModelStore
from ensembles.training.pipeline import train_ensemble
from ensembles.uncertainty import UNCERTAINTY_NAMES
from tests.conftest import tiny_request

#: The response rounds every float to float32 (relative 6e-8); measures recomputed from
#: those rounded numbers in float64 differ from the served ones by at most a few float32
#: ulps of the inputs (entropy: |d(p log p)/dp| <= 40 for p >= 1e-17 times 6e-8 per class).
ROUNDED = {"rtol": 1e-5, "atol": 1e-6}


@pytest.fixture(scope="module")
def extra_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Temperature-scaled digits with a greedy soup; diabetes snapshots (Gaussian heads)
    with 50% intervals, which the server must serve at that level, not its 0.9."""
    root = tmp_path_factory.mktemp("served-uncertainty")
    common = {"strategy": "snapshot", "epochs": 6}
    train_ensemble(
        tiny_request(
            root,
            dataset="digits",
            name="digits-calibrated",
            calibrate=True,
            weight_averaging="greedy",
            **common,
        )
    )
    train_ensemble(
        tiny_request(
            root, dataset="diabetes", name="diabetes-snapshot", interval_level=0.5, **common
        )
    )
    return root / "store"


@pytest.fixture(scope="module")
def extra_server(extra_store: Path) -> Iterator[LiveServer]:
    with LiveServer(store=extra_store, poll_interval_s=0) as live:
        yield live


@pytest.fixture(params=["digits", "diabetes", "digits-calibrated", "diabetes-snapshot"])
def ensemble(request, trained_server, extra_server) -> Iterator[tuple[httpx.Client, Path, str]]:
    """An HTTP client, the store root and the name of one trained ensemble."""
    trained = request.param in ("digits", "diabetes")
    live = trained_server if trained else extra_server
    with live.client() as http:
        yield http, Path(live.settings.store), request.param


def predict(http: httpx.Client, name: str, X: np.ndarray, combiner: str) -> dict[str, Any]:
    """The /v1 answer for ``X`` with member outputs, every array as float64 numpy."""
    response = http.post(
        f"/v1/ensembles/{name}/predict",
        json={"rows": X.tolist(), "combiner": combiner, "members": True},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    predictions = body["predictions"]
    members = body["members"]
    return {
        "served": np.array(predictions.get("probabilities", predictions.get("value"))),
        "labels": np.array(predictions.get("class_index", [])),
        "uncertainty": {k: np.array(v) for k, v in body["uncertainty"].items()},
        "member_outputs": np.array(members["outputs"]),
        "member_variances": np.array(members["variances"]) if "variances" in members else None,
    }


def entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=-1)


def version(store: Path, name: str) -> tuple[Path, Manifest, SplitPredictions]:
    """The latest version's folder, manifest and stored test split."""
    models = ModelStore(store)
    manifest = models.load_manifest(name)
    folder = models.path(name, manifest.version)
    return folder, manifest, HeldoutPredictions.load(folder / HELDOUT_FILE).test


def test_uncertainty_describes_the_served_output(ensemble) -> None:
    """The reported failure: entropy of the member mean while vote shares, a temperature,
    stacking or the averaged model were served. Now every measure is recomputed by hand
    from one response: the served output's measures from it, disagreement from the
    response's own member outputs (the whole pool, members weighed equally)."""
    http, store, name = ensemble
    folder, manifest, test = version(store, name)
    X = test.X[:64]
    bodies = {combiner: predict(http, name, X, combiner) for combiner in manifest.combiners}
    if manifest.task == "classification":
        for combiner, body in bodies.items():
            entropy_served = entropy(body["served"])
            np.testing.assert_allclose(
                body["uncertainty"]["predictive_entropy"],
                entropy_served,
                **ROUNDED,
                err_msg=combiner,
            )
    for combiner, body in bodies.items():
        info = manifest.combiners[combiner]
        served, u, members = body["served"], body["uncertainty"], body["member_outputs"]
        assert set(u) <= set(UNCERTAINTY_NAMES[manifest.task]), combiner
        np.testing.assert_allclose(u["variance"], members.var(axis=0), **ROUNDED)
        if manifest.task == "classification":
            np.testing.assert_allclose(u["max_probability"], served.max(axis=1), **ROUNDED)
            expected = entropy(members).mean(axis=0)
            np.testing.assert_allclose(u["expected_entropy"], expected, **ROUNDED)
            mi = np.clip(entropy(members.mean(axis=0)) - expected, 0, None)
            np.testing.assert_allclose(u["mutual_information"], mi, rtol=1e-4, atol=1e-5)
            agreement = (members.argmax(axis=2) == body["labels"]).mean(axis=0)
            np.testing.assert_allclose(u["agreement"], agreement, **ROUNDED)
            continue
        # Regression: the interval is centred on the served value, total = the combiner's
        # fitted variance scale x (aleatoric + epistemic), and the averaged model's
        # aleatoric part is its own variance head.
        centre = (u["interval_lower"] + u["interval_upper"]) / 2
        np.testing.assert_allclose(centre, served, rtol=1e-5, atol=1e-5 * np.std(test.y))
        assert info.variance_scale is not None and info.variance_scale > 0
        total = info.variance_scale * (u["aleatoric_variance"] + u["variance"])
        np.testing.assert_allclose(u["total_variance"], total, **ROUNDED)
        if info.kind == "weight_average":
            session = ort.InferenceSession(str(folder / info.state["file"]))
            own = session.run(None, {"input": X.astype(np.float32)})[1]
            np.testing.assert_allclose(u["aleatoric_variance"], own, rtol=1e-5)
        else:
            aleatoric = body["member_variances"].mean(axis=0)
            np.testing.assert_allclose(u["aleatoric_variance"], aleatoric, **ROUNDED)


def test_serving_training_metrics_and_benchmark_give_equal_numbers(ensemble) -> None:
    """One code path: the benchmark's scoring and the training metrics, given the members'
    outputs serving computed, reproduce every served number; and the metrics training
    stored in the manifest are those of the served outputs."""
    http, store, name = ensemble
    folder, manifest, test = version(store, name)
    level = float(manifest.training["interval_level"])
    value_scale = 1.0 if manifest.task == "classification" else float(np.std(test.y))
    for combiner, info in manifest.combiners.items():
        body = predict(http, name, test.X, combiner)
        pool = SplitPredictions(test.X, test.y, body["member_outputs"], body["member_variances"])
        served, measures = model_uncertainty(folder, manifest.task, info, pool, level)
        # The weight-averaged model is run by onnxruntime in both, on the same float32
        # rows; the other outputs are float64 computations on the same member outputs.
        np.testing.assert_allclose(served, body["served"], rtol=1e-5, atol=1e-6 * value_scale)
        assert measures.keys() == body["uncertainty"].keys(), combiner
        for key, array in measures.items():
            scale = value_scale**2 if key.endswith("variance") else value_scale
            np.testing.assert_allclose(
                body["uncertainty"][key], array, rtol=1e-5, atol=1e-6 * scale, err_msg=key
            )
        own = measures.get("aleatoric_variance") if info.kind == "weight_average" else None
        metrics = evaluate_predictions(
            pool,
            served,
            level=level,
            served_variance=own,
            variance_scale=info.variance_scale or 1.0,
        )
        if manifest.task == "regression":
            u = body["uncertainty"]
            from_response = regression_metrics(body["served"], test.y, u["total_variance"], level)
            for key, value in from_response.items():
                np.testing.assert_allclose(metrics[key], value, rtol=1e-5, err_msg=key)
        # Training scored torch's float32 outputs, serving onnxruntime's: the same
        # networks, so the metrics agree to float32 accuracy (coverage and accuracy count
        # rows, and a row on an interval's edge or a near tie may fall either way).
        n_rows = len(test.y)
        for key, stored in info.test_metrics.items():
            tolerance = {"atol": 1.5 / n_rows} if key in ("coverage", "accuracy") else {}
            np.testing.assert_allclose(
                metrics[key], stored, **(tolerance or {"rtol": 1e-4}), err_msg=key
            )
