"""Combiners against independent oracles: scikit-learn, planted optima, hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.ensemble import VotingClassifier, VotingRegressor
from sklearn.linear_model import LogisticRegression, Ridge

from ensembles.combiners import BlendingCombiner, MeanCombiner, StackingCombiner, VotingCombiner
from ensembles.combiners._calibration import (
    TEMPERATURE_RANGE,
    apply_temperature,
    fit_temperature,
)


class FixedClassifier(ClassifierMixin, BaseEstimator):
    """A 'prefit' member for sklearn's voting: row ``i`` of X is the id of a stored row."""

    def __init__(self, probs=None):
        self.probs = probs

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        return self.probs[X[:, 0].astype(int)]

    def predict(self, X):
        return self.predict_proba(X).argmax(axis=1)


class FixedRegressor(RegressorMixin, BaseEstimator):
    """A 'prefit' regression member: row ``i`` of X is the id of a stored value."""

    def __init__(self, values=None):
        self.values = values

    def fit(self, X, y):
        return self

    def predict(self, X):
        return self.values[X[:, 0].astype(int)]


def voting_problem(seed=0, n_members=4, n_samples=300, n_classes=3):
    """Coarse probabilities (many hard-vote ties) and labels covering every class."""
    rng = np.random.default_rng(seed)
    member_preds = rng.dirichlet(np.ones(n_classes), size=(n_members, n_samples))
    y = np.arange(n_samples) % n_classes
    return member_preds, y, np.arange(n_samples)[:, None]


def voting_classifier(member_preds, voting, weights=None):
    estimators = [(f"m{i}", FixedClassifier(p)) for i, p in enumerate(member_preds)]
    return VotingClassifier(estimators, voting=voting, weights=weights)


def test_mean_equals_soft_voting_classifier():
    member_preds, y, ids = voting_problem()
    sklearn_probs = voting_classifier(member_preds, "soft").fit(ids, y).predict_proba(ids)
    ours = MeanCombiner("classification").fit(member_preds, y).combine(member_preds)
    np.testing.assert_allclose(ours, sklearn_probs, rtol=1e-12, atol=1e-14)


def test_mean_equals_voting_regressor():
    rng = np.random.default_rng(1)
    member_preds = rng.normal(size=(5, 100, 1))
    ids = np.arange(100)[:, None]
    y = rng.normal(size=100)
    estimators = [(f"m{i}", FixedRegressor(p[:, 0])) for i, p in enumerate(member_preds)]
    sklearn_pred = VotingRegressor(estimators).fit(ids, y).predict(ids)
    ours = MeanCombiner("regression").fit(member_preds, y).combine(member_preds)
    np.testing.assert_allclose(ours[:, 0], sklearn_pred, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("weights", [None, [1.0, 2.0, 1.0, 1.0]])
def test_vote_equals_hard_voting_classifier_ties_included(weights):
    member_preds, y, ids = voting_problem()
    votes = member_preds.argmax(axis=2)
    if weights is None:
        # 4 members over 3 classes: many rows split 2-2 or 2-1-1 with a tie at the top.
        top = np.sort(np.apply_along_axis(np.bincount, 0, votes, minlength=3), axis=0)
        assert np.sum(top[-1] == top[-2]) > 20
    sklearn_pred = voting_classifier(member_preds, "hard", weights).fit(ids, y).predict(ids)
    shares = VotingCombiner(weights=weights).fit(member_preds, y).combine(member_preds)
    np.testing.assert_array_equal(shares.argmax(axis=1), sklearn_pred)
    w = np.ones(4) if weights is None else np.asarray(weights)
    expected = np.stack([(w[:, None] * (votes == k)).sum(axis=0) for k in range(3)], axis=1)
    np.testing.assert_allclose(shares, expected / w.sum(), atol=1e-15)


def test_vote_tie_goes_to_lowest_class():
    # Two members vote class 2, two vote class 1: the tie goes to class 1.
    member_preds = np.array([[[0.1, 0.2, 0.7]], [[0.1, 0.6, 0.3]], [[0.0, 0.1, 0.9]], [[0, 1, 0]]])
    shares = VotingCombiner().fit(member_preds, np.array([0])).combine(member_preds)
    np.testing.assert_allclose(shares, [[0.0, 0.5, 0.5]])
    assert shares.argmax() == 1


def test_member_with_tied_probabilities_votes_lowest_class():
    # Like a scikit-learn classifier's predict (argmax of predict_proba).
    member_preds = np.array([[[0.0, 0.5, 0.5]], [[0.4, 0.3, 0.3]], [[0.1, 0.2, 0.7]]])
    shares = VotingCombiner().fit(member_preds, np.array([0])).combine(member_preds)
    np.testing.assert_allclose(shares, [[1 / 3, 1 / 3, 1 / 3]])


def planted_regression(seed=0, n_samples=400):
    rng = np.random.default_rng(seed)
    member_preds = rng.normal(size=(4, n_samples, 2))
    planted = np.array([0.6, 0.3, 0.1, 0.0])
    y = np.tensordot(planted, member_preds, axes=1)
    return member_preds, y, planted


def test_blend_recovers_planted_regression_weights():
    member_preds, y, planted = planted_regression()
    combiner = BlendingCombiner("regression").fit(member_preds, y)
    assert combiner.fallback_ is False
    np.testing.assert_allclose(combiner.member_weights, planted, atol=1e-5)


def test_greedy_blend_recovers_planted_regression_weights():
    member_preds, y, planted = planted_regression()
    combiner = BlendingCombiner("regression", method="greedy", n_rounds=40).fit(member_preds, y)
    weights = combiner.member_weights
    np.testing.assert_allclose(weights, planted, atol=0.05)
    # Counts / total: every weight is a multiple of 1 / ensemble size.
    size = round(1 / weights[weights > 0].min())
    np.testing.assert_allclose(weights * size, np.round(weights * size), atol=1e-9)


@pytest.mark.parametrize("method", ["optimize", "greedy"])
def test_blend_recovers_planted_classification_mix(method):
    rng = np.random.default_rng(5)
    member_preds = rng.dirichlet(np.full(3, 0.5), size=(3, 3000))
    planted = np.array([0.7, 0.3, 0.0])
    truth = np.tensordot(planted, member_preds, axes=1)
    y = (rng.random(3000)[:, None] > truth.cumsum(axis=1)).sum(axis=1)
    combiner = BlendingCombiner("classification", method=method).fit(member_preds, y)
    assert combiner.fallback_ is False
    np.testing.assert_allclose(combiner.member_weights, planted, atol=0.06)


def test_blend_optimum_satisfies_kkt():
    # At the simplex optimum of a convex loss, members with weight get equal (minimal)
    # gradients; members without weight have gradients no smaller.
    member_preds, y, _ = planted_regression()
    noisy_y = y + np.random.default_rng(1).normal(scale=0.5, size=y.shape)
    weights = BlendingCombiner("regression").fit(member_preds, noisy_y).member_weights
    columns = member_preds.reshape(4, -1).T
    gradient = 2 * columns.T @ (columns @ weights - noisy_y.ravel()) / len(columns)
    active = weights > 1e-6
    np.testing.assert_allclose(gradient[active], gradient[active].min(), atol=1e-6)
    assert np.all(gradient[~active] >= gradient[active].min() - 1e-6)


def stacking_problem(n_classes, seed=0, n_samples=200):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, 3)) * [1.0, 5.0, 0.1] + [0.0, 2.0, -1.0]
    logits = X @ rng.normal(size=(3, n_classes))
    y = np.array([rng.choice(n_classes, p=p) for p in softmax(logits, axis=1)])
    noise = rng.normal(size=(3, n_samples, n_classes))
    return softmax(logits[None] + noise, axis=2), y, X


def hand_features(member_preds, X=None):
    features = np.log(np.clip(member_preds, 1e-7, None)).transpose(1, 0, 2)
    features = features.reshape(member_preds.shape[1], -1)
    if X is None:
        return features
    return np.hstack([features, (X - X.mean(axis=0)) / X.std(axis=0)])


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("passthrough", [False, True])
def test_stacking_equals_logistic_regression(n_classes, passthrough):
    member_preds, y, X = stacking_problem(n_classes)
    combiner = StackingCombiner("classification", passthrough=passthrough, C=0.5)
    combiner.fit(member_preds, y, X)
    features = hand_features(member_preds, X if passthrough else None)
    meta = LogisticRegression(C=0.5, tol=1e-8, max_iter=1000).fit(features, y)
    assert combiner.coef_.shape == (1 if n_classes == 2 else n_classes, features.shape[1])
    fresh_preds, _, fresh_X = stacking_problem(n_classes, seed=1)
    fresh_features = hand_features(fresh_preds, fresh_X if passthrough else None)
    if passthrough:  # standardized with the fit rows' statistics, not the fresh ones
        fresh_features[:, -3:] = (fresh_X - X.mean(axis=0)) / X.std(axis=0)
    np.testing.assert_allclose(
        combiner.combine(fresh_preds, fresh_X), meta.predict_proba(fresh_features), atol=1e-10
    )


def test_stacking_equals_ridge_in_standardized_units():
    rng = np.random.default_rng(2)
    member_preds = rng.normal(size=(3, 150, 2)) * [3.0, 0.5] + [10.0, -2.0]
    y = member_preds.mean(axis=0) + rng.normal(scale=0.1, size=(150, 2))
    combiner = StackingCombiner("regression", alpha=3.0).fit(member_preds, y)
    center, scale = y.mean(axis=0), y.std(axis=0)
    standardized = ((member_preds - center) / scale).transpose(1, 0, 2).reshape(150, -1)
    meta = Ridge(alpha=3.0).fit(standardized, (y - center) / scale)
    expected = center + scale * meta.predict(standardized)
    np.testing.assert_allclose(combiner.combine(member_preds), expected, atol=1e-10)


@pytest.mark.parametrize("unit", [1e-3, 1e-2, 1.0, 1e3, 1e6])
@pytest.mark.parametrize("kind", ["blend", "stack"])
def test_regression_combiners_learn_the_same_weights_in_any_unit(kind, unit):
    """One good member, two poor: the weights of a target in metres or in kilometres (or
    a price around 3e5) are the same; they used to stay uniform at some scales."""
    rng = np.random.default_rng(0)
    y = rng.normal(size=(400, 1))
    member_preds = np.stack([y + rng.normal(scale=s, size=y.shape) for s in (0.1, 1.0, 1.0)])
    combiner = BlendingCombiner("regression") if kind == "blend" else StackingCombiner("regression")
    at_unit = combiner.fit(member_preds, y).member_weights
    scaled = type(combiner)("regression").fit(member_preds * unit + 3e5, y * unit + 3e5)
    np.testing.assert_allclose(scaled.member_weights, at_unit, atol=1e-5)
    assert at_unit[0] > 0.9


def test_temperature_recovers_planted_temperature():
    # Labels drawn from softmax(z / 2) while the model reports softmax(z): T is near 2.
    rng = np.random.default_rng(4)
    logits = rng.normal(scale=3.0, size=(4000, 4))
    y = np.array([rng.choice(4, p=p) for p in softmax(logits / 2.0, axis=1)])
    temperature = fit_temperature(softmax(logits, axis=1), y)
    assert temperature == pytest.approx(2.0, rel=0.1)


def test_temperature_stops_at_the_rule_of_succession_on_rows_without_a_mistake():
    # Every row's top class is right: the log loss falls for ever as T falls, and a search
    # free to follow it would serve probabilities within 1e-40 of 1 (T at its floor).
    rng = np.random.default_rng(5)
    n = 200
    y = rng.integers(0, 3, size=n)
    probs = np.full((n, 3), 0.0)
    top = rng.uniform(0.5, 0.9, size=n)
    probs[:] = ((1 - top) / 2)[:, None]
    probs[np.arange(n), y] = top
    temperature = fit_temperature(probs, y)
    calibrated = apply_temperature(probs, temperature)
    assert calibrated.max(axis=1).mean() == pytest.approx((n + 1) / (n + 2), abs=1e-8)

    def log_loss(t: float) -> float:
        return -np.mean(np.log(apply_temperature(probs, t)[np.arange(n), y]))

    assert log_loss(0.01) < log_loss(temperature)  # the likelihood alone wants the floor
    assert 0.05 < temperature < 1  # sharpened, but not to the floor


def test_temperature_is_raised_to_the_accuracy_the_rows_support():
    # Confident and right 97 times in 100, wrong on 3 rows with p_true = 0.3: the log-loss
    # optimum (T = 1.16) keeps a mean confidence of 0.988, above the 98 / 102 that
    # Laplace's rule allows; the temperature rises to meet it.
    n = 100
    y = np.zeros(n, dtype=int)
    probs = np.tile([0.999, 0.001], (n, 1))
    probs[:3] = [0.3, 0.7]
    temperature = fit_temperature(probs, y)
    confidence = apply_temperature(probs, temperature).max(axis=1).mean()
    assert confidence == pytest.approx(98 / 102, abs=1e-8)
    assert temperature > 1.5


def test_a_ceiling_below_chance_gets_the_softest_temperature():
    # Two classes, 40 of 100 right: no temperature brings the mean top-class probability
    # (at least 0.5) down to 41 / 102; the log loss alone would stop at T = 1.84.
    n = 100
    y = np.zeros(n, dtype=int)
    probs = np.tile([0.999, 0.001], (n, 1))
    probs[40:] = [0.45, 0.55]
    assert fit_temperature(probs, y) == TEMPERATURE_RANGE


def test_apply_temperature_by_hand():
    probs = np.array([[0.2, 0.8], [0.5, 0.5]])
    expected = np.array([[0.2**0.5, 0.8**0.5], [1.0, 1.0]])
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(apply_temperature(probs, 2.0), expected, atol=1e-15)
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs, atol=1e-15)


def test_calibration_improves_held_out_log_loss_of_overconfident_members():
    rng = np.random.default_rng(6)
    logits = rng.normal(scale=2.0, size=(3, 2000, 3)) + rng.normal(size=(1, 2000, 3))
    y = np.array([rng.choice(3, p=p) for p in softmax(logits.mean(axis=0), axis=1)])
    overconfident = softmax(logits * 3.0, axis=2)
    fit_rows, test_rows = slice(0, 1000), slice(1000, None)

    def log_loss(combiner):
        probs = combiner.fit(overconfident[:, fit_rows], y[fit_rows]).combine(
            overconfident[:, test_rows]
        )
        return -np.mean(np.log(probs[np.arange(1000), y[test_rows]]))

    calibrated = MeanCombiner("classification", calibrate=True)
    assert log_loss(calibrated) < log_loss(MeanCombiner("classification")) - 0.03
    assert calibrated.temperature_ > 1.2


def test_stacking_member_weights_are_its_coefficient_shares() -> None:
    """One informative member and three of noise: its share dominates, by hand from coef_."""
    rng = np.random.default_rng(4)
    y = rng.normal(size=300)
    member_preds = np.stack([y + rng.normal(0, 0.05, 300), *rng.normal(size=(3, 300))], axis=0)[
        ..., None
    ]
    combiner = StackingCombiner("regression").fit(member_preds, y[:, None])
    expected = np.abs(combiner.coef_[0]) / np.abs(combiner.coef_[0]).sum()
    np.testing.assert_allclose(combiner.member_weights, expected, rtol=1e-12)
    assert combiner.member_weights[0] > 0.9
    assert 1.0 / np.sum(combiner.member_weights**2) < 2  # one effective member
