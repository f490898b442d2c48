"""Combiners must learn from held-out member outputs: in-sample outputs leak the targets.

The textbook case first (memorizing trees), then the pipeline's own fit set: the rows every
published combiner and temperature learned from are rows no member trained on. (After a
refit the served members learned those rows too; the fit set then holds the first members'
predictions, which did not: ``tests/training/test_refit.py``.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
from sklearn.tree import DecisionTreeClassifier

from ensembles.combiners import (
    BlendingCombiner,
    StackingCombiner,
    build_combiner,
    combiner_from_state,
)
from ensembles.data import load_data, split_dataset
from ensembles.evaluation import combiner_params
from ensembles.heldout import HELDOUT_FILE, HeldoutPredictions, combiner_fit_set
from ensembles.store import ModelStore
from ensembles.training.pipeline import train_ensemble
from ensembles.training.plans import training_rows
from tests.conftest import tiny_request


def log_loss(probs, y):
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-15, None))))


@pytest.fixture(scope="module")
def leaky_members():
    """Fully grown trees memorize noisy labels; a logistic regression cannot.

    Returns member outputs on the training rows in-sample, out-of-fold (held-out) on the
    training rows, and on a test split, with the targets of both splits.
    """
    X, y = make_classification(
        n_samples=900, n_features=8, n_informative=4, n_classes=3, flip_y=0.25, random_state=0
    )
    train, test = slice(0, 600), slice(600, None)
    members = [DecisionTreeClassifier(max_features=0.6, random_state=seed) for seed in (1, 2)]
    members.append(LogisticRegression(max_iter=500))
    in_sample, held_out, on_test = [], [], []
    for member in members:
        held_out.append(cross_val_predict(member, X[train], y[train], cv=5, method="predict_proba"))
        member.fit(X[train], y[train])
        in_sample.append(member.predict_proba(X[train]))
        on_test.append(member.predict_proba(X[test]))
    return np.stack(in_sample), np.stack(held_out), np.stack(on_test), y[train], y[test]


@pytest.mark.parametrize(
    "make",
    [
        lambda: StackingCombiner("classification"),
        lambda: BlendingCombiner("classification"),
    ],
    ids=["stack", "blend"],
)
def test_in_sample_fit_looks_better_and_generalizes_worse(leaky_members, make):
    in_sample, held_out, on_test, y_train, y_test = leaky_members
    leaky = make().fit(in_sample, y_train)
    honest = make().fit(held_out, y_train)
    # On the rows each was fitted on, the leaky combiner looks far better ...
    leaky_fit_loss = log_loss(leaky.combine(in_sample), y_train)
    honest_fit_loss = log_loss(honest.combine(held_out), y_train)
    assert leaky_fit_loss < honest_fit_loss - 0.3
    # ... and on the test split it is worse.
    leaky_test_loss = log_loss(leaky.combine(on_test), y_test)
    honest_test_loss = log_loss(honest.combine(on_test), y_test)
    assert honest_test_loss < leaky_test_loss - 0.1


def test_leaky_stacking_trusts_the_memorizing_trees(leaky_members):
    in_sample, held_out, _, y_train, _ = leaky_members
    n_classes = in_sample.shape[2]

    def tree_share(combiner):
        coef = np.abs(combiner.coef_)
        return coef[:, : 2 * n_classes].sum() / coef.sum()

    leaky = StackingCombiner("classification").fit(in_sample, y_train)
    honest = StackingCombiner("classification").fit(held_out, y_train)
    assert tree_share(leaky) > tree_share(honest) + 0.2


@pytest.mark.parametrize("strategy", ["bagging", "kfold", "subsample"])
def test_the_pipeline_fits_combiners_on_rows_no_member_trained_on(
    tmp_path: Path, strategy: str
) -> None:
    request = tiny_request(tmp_path, dataset="wine", strategy=strategy, calibrate=True)
    manifest = train_ensemble(request)
    folder = ModelStore(request.store).path("wine", manifest.version)
    heldout = HeldoutPredictions.load(folder / HELDOUT_FILE)
    fit = combiner_fit_set(heldout).data  # what the pipeline fitted every combiner on
    splits = split_dataset(
        load_data("wine"), request.seed, request.validation_fraction, request.test_fraction
    )
    n_train = len(splits.train.y)
    trained_on = {
        row.tobytes()
        for member in manifest.members
        for row in splits.train.X[training_rows(member.rows, n_train)]
    }
    assert not any(row.tobytes() in trained_on for row in fit.X)
    # every entry is the member's own prediction: nothing filled in from other members ...
    for index, member in enumerate(manifest.members):
        session = ort.InferenceSession(
            str(folder / member.file), providers=["CPUExecutionProvider"]
        )
        output = session.run(None, {"input": fit.X.astype(np.float32)})[0]
        np.testing.assert_allclose(fit.member_preds[index], output, rtol=1e-5, atol=1e-5)
    # ... so members disagree on every fit row (imputed kfold rows had spread exactly 0)
    assert (fit.member_preds.std(axis=0).max(axis=1) > 0).all()
    for name in ("mean", "blend", "caruana", "stack"):
        kind, params = combiner_params(name, "classification", calibrate=True)
        refit = build_combiner(kind, "classification", **params).fit(fit.member_preds, fit.y)
        published = combiner_from_state(manifest.combiners[name].state)
        # same rows, same code, one process: only the order of float sums may differ
        assert published.temperature_ == pytest.approx(refit.temperature_, rel=1e-9)
        np.testing.assert_allclose(
            published.combine(heldout.test.member_preds),
            refit.combine(heldout.test.member_preds),
            rtol=1e-9,
            atol=1e-12,
        )
