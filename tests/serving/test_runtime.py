"""EnsembleRuntime without HTTP: oracle values, options, validation and signature checks."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import onnxruntime as ort
import pytest

from ensembles.errors import IntegrityError
from ensembles.manifest import InputSpec
from ensembles.store import ModelStore, StoredVersion
from serving.errors import InvalidRequestError
from serving.runtime import EnsembleRuntime


def run_file(path, X: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": X})


@pytest.fixture(scope="module")
def toy(synthetic_store: ModelStore) -> EnsembleRuntime:
    return EnsembleRuntime.load(synthetic_store, "toy", 1, max_batch_rows=64)


@pytest.fixture(scope="module")
def reg(synthetic_store: ModelStore) -> EnsembleRuntime:
    return EnsembleRuntime.load(synthetic_store, "reg", 1)


def test_mean_combiner_and_variance_match_members_run_by_hand(toy, rows):
    members = np.stack([run_file(toy.folder / m.file, rows)[0] for m in toy.manifest.members])
    prediction = toy.predict(rows, members=True)
    np.testing.assert_allclose(prediction.combined, members.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(prediction.uncertainty["variance"], members.var(axis=0), atol=1e-7)
    np.testing.assert_array_equal(prediction.labels, members.mean(axis=0).argmax(axis=1))
    np.testing.assert_allclose(prediction.member_outputs, members, rtol=1e-6)
    assert set(prediction.uncertainty) == set(toy.uncertainty_names)
    assert prediction.combiner == "mean"


def test_weight_average_runs_the_averaged_model_with_member_spread(toy, rows):
    averaged = run_file(toy.folder / "averaged.onnx", rows)[0]
    members = np.stack([run_file(toy.folder / m.file, rows)[0] for m in toy.manifest.members])
    prediction = toy.predict(rows, combiner="weight_average")
    np.testing.assert_allclose(prediction.combined, averaged, rtol=1e-6)
    np.testing.assert_allclose(prediction.uncertainty["variance"], members.var(axis=0), atol=1e-7)
    skipped = toy.predict(rows, combiner="weight_average", uncertainty=False)
    assert skipped.uncertainty == {} and skipped.member_outputs is None


def test_gaussian_regression_reports_aleatoric_and_total_variance(reg, rows):
    runs = [run_file(reg.folder / m.file, rows) for m in reg.manifest.members]
    values, variances = np.stack([r[0] for r in runs]), np.stack([r[1] for r in runs])
    prediction = reg.predict(rows, members=True)
    np.testing.assert_allclose(prediction.combined, values.mean(axis=0), rtol=1e-5)
    u = prediction.uncertainty
    np.testing.assert_allclose(u["aleatoric_variance"], variances.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(u["total_variance"], u["aleatoric_variance"] + u["variance"])
    assert (u["interval_lower"] < prediction.combined).all()
    assert prediction.labels is None and prediction.member_variances.shape == (3, 5, 2)
    assert [s.name for s in reg.outputs][-2:] == ["member_outputs", "member_variances"]


def test_concurrent_async_predictions_are_batched_and_equal_to_sync(toy, rows):
    async def many() -> list:
        results = await asyncio.gather(*(toy.predict_async(rows[i : i + 1]) for i in range(5)))
        await toy.aclose()
        return results

    results = asyncio.run(many())
    expected = toy.predict(rows).combined
    np.testing.assert_allclose(np.concatenate([r.combined for r in results]), expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.zeros((2, 5)), "expected rows of 4 features"),
        (np.zeros((0, 4)), "empty batch"),
        (np.zeros((65, 4)), "over the limit of 64 rows"),
        (
            np.array([[0.0, np.nan, 0, 0], [0, 0, np.inf, 0]]),
            "NaN or infinite values (rows [0, 1])",
        ),
    ],
)
def test_bad_batches_are_refused_with_a_message(toy, X, message):
    with pytest.raises(InvalidRequestError, match=re.escape(message)):
        toy.predict(X)


def test_unknown_combiner_lists_the_fitted_ones(toy, rows):
    with pytest.raises(InvalidRequestError, match=r"unknown combiner 'best'.*'mean', 'vote'"):
        toy.predict(rows, combiner="best")


def test_signature_mismatch_with_the_manifest_is_an_integrity_error(synthetic_store):
    stored = synthetic_store.read_version("toy", 1)
    wrong = stored.manifest.model_copy(
        update={"input": InputSpec(feature_names=["a", "b", "c", "d", "e"])}
    )
    with pytest.raises(IntegrityError, match=r"m000\.onnx.*shape \[batch, 5\]"):
        EnsembleRuntime(StoredVersion(wrong, stored.folder, stored.files))


def test_mixed_combiner_burst_shares_one_member_run_and_equals_sync(synthetic_store):
    batches: list[int] = []
    reports: list[tuple[str, int, list[int]]] = []
    runtime = EnsembleRuntime.load(
        synthetic_store,
        "toy",
        1,
        max_microbatch_rows=64,
        on_batch=batches.append,
        on_prediction=lambda rt, X, p, sizes: reports.append((p.combiner, len(X), sizes)),
    )
    rng = np.random.default_rng(3)
    options = [
        {},
        {"combiner": "vote"},
        {"combiner": "mean", "members": True},
        {"combiner": "weight_average"},
        {"uncertainty": False},
        {"combiner": "vote", "members": True},
        {"combiner": "weight_average", "uncertainty": False, "members": True},
        {},
    ] * 3
    inputs = [rng.normal(size=(1 + i % 4, 4)).astype(np.float32) for i in range(len(options))]
    calls_before = len(batches)

    async def burst() -> list:
        results = await asyncio.gather(
            *(runtime.predict_async(X, **o) for X, o in zip(inputs, options, strict=True))
        )
        await runtime.aclose()
        return results

    results = asyncio.run(burst())
    assert len(batches) - calls_before < len(options)  # coalesced, several combiners per call
    assert max(batches[calls_before:]) <= 64
    for X, o, got in zip(inputs, options, results, strict=True):
        want = runtime.predict(X, **o)
        assert got.combiner == want.combiner
        np.testing.assert_allclose(got.combined, want.combined, rtol=1e-6, atol=1e-7)
        if want.labels is not None:  # a label may flip only where the top two nearly tie
            top2 = np.sort(want.combined, axis=1)[:, -2:]
            clear = top2[:, 1] - top2[:, 0] > 1e-5
            np.testing.assert_array_equal(got.labels[clear], want.labels[clear])
        assert set(got.uncertainty) == set(want.uncertainty)
        for key, value in want.uncertainty.items():
            np.testing.assert_allclose(got.uncertainty[key], value, rtol=1e-5, atol=1e-7)
        if o.get("members"):
            np.testing.assert_allclose(got.member_outputs, want.member_outputs, rtol=1e-6)
        else:
            assert got.member_outputs is None
    assert sum(len(sizes) for _, _, sizes in reports) == len(options)
    assert sum(rows for _, rows, _ in reports) == sum(len(X) for X in inputs)


def test_microbatch_row_limit_is_separate_from_the_request_limit(synthetic_store):
    batches: list[int] = []
    runtime = EnsembleRuntime.load(
        synthetic_store, "toy", 1, max_batch_rows=64, max_microbatch_rows=4, on_batch=batches.append
    )
    calls_before = len(batches)

    async def burst() -> list:
        sizes = [1] * 9 + [20]  # a request over the micro-batch limit still runs (alone)
        results = await asyncio.gather(
            *(runtime.predict_async(np.ones((n, 4), np.float32)) for n in sizes)
        )
        await runtime.aclose()
        return results

    results = asyncio.run(burst())
    assert [len(r.combined) for r in results] == [1] * 9 + [20]
    assert sorted(batches[calls_before:])[-1] == 20
    assert max(sorted(batches[calls_before:])[:-1]) <= 4
