"""The Gaussian head's log-variance is clamped inside the exported graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from ensembles.export import export_member
from ensembles.training.config import TrainConfig
from ensembles.training.network import LOG_VARIANCE_RANGE, MemberNetwork

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 5)).astype(np.float32)
TARGET_SCALE = 30.0


def gaussian_network() -> MemberNetwork:
    torch.manual_seed(0)
    config = TrainConfig(hidden_sizes=(32, 16), dropout=0.0)
    return MemberNetwork(
        5, 1, "regression", config, X.mean(0), X.std(0), np.array([7.0]), np.array([TARGET_SCALE])
    ).eval()


def unclamped(network: MemberNetwork, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance by hand from the raw head, with no clamp (float64)."""
    with torch.no_grad():
        raw = network.head(network.body(network.standardize(torch.from_numpy(x)))).double()
    mean = raw[:, :1].numpy() * TARGET_SCALE + 7.0
    with np.errstate(over="ignore"):  # far rows overflow: that is what the clamp prevents
        variance = (np.exp(raw[:, 1:].numpy()) + 1e-6) * TARGET_SCALE**2
    return mean, variance


def test_exported_variance_is_finite_far_outside_the_training_range(tmp_path: Path) -> None:
    network = gaussian_network()
    path = tmp_path / "member.onnx"
    assert export_member(network, path, X) <= 1e-5
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    signs = (np.arange(32)[:, None] >> np.arange(5)) % 2 * 2 - 1  # every sign pattern
    far = (1e30 * signs).astype(np.float32)
    mean, variance = session.run(None, {"input": far})
    _, raw_variance = unclamped(network, far)
    assert not np.isfinite(raw_variance).all()  # without the clamp exp overflows
    assert np.isfinite(mean).all() and np.isfinite(variance).all() and (variance > 0).all()
    low, high = LOG_VARIANCE_RANGE
    bounds = (np.exp([low, high]) + 1e-6) * TARGET_SCALE**2
    np.testing.assert_allclose(  # every far row sits on a bound of the range
        np.min(np.abs(variance - bounds) / bounds, axis=1), 0.0, atol=1e-5
    )


def test_ordinary_rows_are_unchanged_by_the_clamp(tmp_path: Path) -> None:
    network = gaussian_network()
    path = tmp_path / "member.onnx"
    export_member(network, path, X)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    mean, variance = session.run(None, {"input": X})
    expected_mean, expected_variance = unclamped(network, X)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-5, atol=1e-4)  # float32 graph
    np.testing.assert_allclose(variance, expected_variance, rtol=1e-5)
