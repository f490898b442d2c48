"""Stacking: a linear meta-learner fitted with scikit-learn, applied with numpy."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np

from ensembles.combiners._base import Combiner, Task, is_int_at_least, param_problem
from ensembles.errors import DataError, ShapeError

#: Convergence tolerance of the lbfgs meta-learner: tight, as the problem is tiny.
_TOL = 1e-8

#: Member probabilities are clipped at this floor before the log that makes meta-features.
FEATURE_PROB_FLOOR = 1e-7


def meta_features(member_preds: np.ndarray, task: Task) -> np.ndarray:
    """Turn member outputs into meta-learner features.

    Parameters
    ----------
    member_preds : np.ndarray, shape (n_members, n_samples, n_outputs)
        Member probabilities (classification) or values (regression).
    task : {"classification", "regression"}
        Classification uses log-probabilities clipped at :data:`FEATURE_PROB_FLOOR`.

    Returns
    -------
    np.ndarray, shape (n_samples, n_members * n_outputs)
        Member-major columns: member 0's outputs, then member 1's, and so on.
    """
    n_members, n_samples, n_outputs = member_preds.shape
    if task == "classification":
        member_preds = np.log(np.clip(member_preds, FEATURE_PROB_FLOOR, None))
    return member_preds.transpose(1, 0, 2).reshape(n_samples, n_members * n_outputs)


class StackingCombiner(Combiner):
    """Linear meta-learner on member outputs, optionally with the raw features.

    Classification fits scikit-learn's ``LogisticRegression`` (lbfgs, tol 1e-8, multinomial;
    binary problems get one coefficient row and a sigmoid, as scikit-learn does) on the
    members' log-probabilities: a linear model in log space can re-weight, sharpen and
    soften members (a weighted geometric mean is one of its solutions), which linear
    models on raw probabilities cannot. Regression fits ``Ridge`` on member values, all
    outputs at once, in the target's standardized units (``alpha`` does not depend on the
    target's unit; the coefficients are mapped back to it). Only coefficients and
    intercepts are kept; ``combine`` applies them with numpy and equals the meta-learner's
    ``predict_proba`` / ``predict``.

    With ``passthrough=True`` the raw features are standardized (mean and population
    standard deviation of the fit rows, a zero deviation replaced by one) and appended
    to the member features; ``X`` is then required by ``fit`` and ``combine``.

    Fit it on held-out member outputs only: on the members' own training rows the
    meta-learner learns to trust members that memorized them.

    Parameters
    ----------
    task : {"classification", "regression"}
        Whether member outputs are class probabilities or values.
    passthrough : bool, default False
        Append standardized raw features ``X`` to the meta-features.
    C : float, default 1.0
        Inverse L2 strength of the logistic regression (classification only).
    alpha : float, default 1.0
        L2 strength of the ridge regression (regression only), on member values and targets
        standardized by the targets' mean and standard deviation.
    max_iter : int, default 1000
        Iteration cap of the lbfgs solver (classification only).
    calibrate : bool, default False
        Learn a temperature on cross-fitted outputs (classification only).
    random_state : int, default 0
        Seed of the row split used when ``calibrate=True``.
    """

    kind: ClassVar[str] = "stack"
    _param_names: ClassVar[tuple[str, ...]] = (
        "task",
        "passthrough",
        "C",
        "alpha",
        "max_iter",
        "calibrate",
        "random_state",
    )
    _learns_from_targets: ClassVar[bool] = True

    def __init__(
        self,
        task: Task,
        passthrough: bool = False,
        C: float = 1.0,
        alpha: float = 1.0,
        max_iter: int = 1000,
        calibrate: bool = False,
        random_state: int = 0,
    ) -> None:
        self.task = task
        self.passthrough = passthrough
        self.C = C
        self.alpha = alpha
        self.max_iter = max_iter
        self.calibrate = calibrate
        self.random_state = random_state
        self._validate_params()

    def _param_problems(self) -> list[str]:
        problems = super()._param_problems()
        name = "StackingCombiner"
        if not isinstance(self.passthrough, bool):
            problems.append(param_problem(name, "passthrough", "a bool", self.passthrough))
        for key in ("C", "alpha"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                problems.append(param_problem(name, key, "a float > 0", value))
        for key, low in (("max_iter", 1), ("random_state", 0)):
            value = getattr(self, key)
            if not is_int_at_least(value, low):
                problems.append(param_problem(name, key, f"an int >= {low}", value))
        return problems

    def _split_seed(self) -> int:
        return self.random_state

    def _features(self, member_preds: np.ndarray, X: np.ndarray | None) -> np.ndarray:
        features = meta_features(member_preds, self.task)
        if not self.passthrough:
            return features
        n_samples = member_preds.shape[1]
        mean = self.feature_mean_
        expected = "n_features" if mean is None else str(len(mean))
        if X is None:
            raise ShapeError(
                f"StackingCombiner has passthrough=True and needs the raw features X of shape "
                f"({n_samples}, {expected}); got X=None. Pass X or use passthrough=False."
            )
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape != (n_samples, len(mean)):
            raise ShapeError(
                f"StackingCombiner has passthrough=True and needs X of shape "
                f"({n_samples}, {expected}); got shape {X.shape}."
            )
        return np.hstack([features, (X - self.feature_mean_) / self.feature_scale_])

    def _fit_rule(self, member_preds: np.ndarray, y: np.ndarray, X: np.ndarray | None) -> None:
        self.feature_mean_ = None
        self.feature_scale_ = None
        if self.passthrough and X is not None:
            X = np.asarray(X, dtype=float)
            if X.ndim == 2:
                self.feature_mean_ = X.mean(axis=0)
                scale = X.std(axis=0)
                self.feature_scale_ = np.where(scale > 0, scale, 1.0)
        features = self._features(member_preds, X)
        if self.task == "classification":
            from sklearn.linear_model import LogisticRegression

            n_classes = member_preds.shape[2]
            missing = np.setdiff1d(np.arange(n_classes), y)
            if len(missing):
                raise DataError(
                    f"StackingCombiner needs every class in y to fit its meta-learner; classes "
                    f"{missing.tolist()} are missing from the {len(y)} fit rows. Use more "
                    "held-out rows."
                )
            from sklearn.exceptions import ConvergenceWarning

            model = LogisticRegression(C=self.C, tol=_TOL, max_iter=self.max_iter)
            with warnings.catch_warnings():
                # the strict tolerance is for exactness; max_iter bounds the work either way
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(features, y)
        else:
            self.coef_, self.intercept_ = self._fit_ridge(features, y, member_preds.shape[0])
            return
        self.coef_ = np.atleast_2d(np.asarray(model.coef_, dtype=float))
        self.intercept_ = np.atleast_1d(np.asarray(model.intercept_, dtype=float))

    def _fit_ridge(
        self, features: np.ndarray, y: np.ndarray, n_members: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ridge in the target's standardized units, its coefficients mapped back.

        Each output's target and the members' values of that output are centred and
        divided by the target's mean and standard deviation, so ``alpha`` shrinks the same
        whatever unit the target is in (a price in euros or in millions); the map back is
        exact, and ``combine`` applies the raw coefficients.
        """
        from sklearn.linear_model import Ridge

        targets = np.asarray(y, dtype=float).reshape(len(features), -1)
        center, scale = targets.mean(axis=0), targets.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        width = n_members * targets.shape[1]  # member-major columns: outputs repeat
        column_center, column_scale = np.tile(center, n_members), np.tile(scale, n_members)
        standardized = features.copy()
        standardized[:, :width] = (features[:, :width] - column_center) / column_scale
        model = Ridge(alpha=self.alpha).fit(standardized, (targets - center) / scale)
        coef = np.atleast_2d(np.asarray(model.coef_, dtype=float)) * scale[:, None]
        coef[:, :width] /= column_scale
        intercept = (
            center + scale * np.atleast_1d(model.intercept_) - coef[:, :width] @ column_center
        )
        return coef, intercept

    @property
    def member_weights(self) -> np.ndarray | None:
        """np.ndarray, shape (n_members,): each member's share of the meta-learner's absolute
        coefficients on member outputs (passthrough columns aside); None before ``fit`` or
        when every member coefficient is zero."""
        coef = getattr(self, "coef_", None)
        if coef is None:
            return None
        width = self.n_members_ * self.n_outputs_
        mass = np.abs(coef[:, :width]).reshape(len(coef), self.n_members_, self.n_outputs_)
        per_member = mass.sum(axis=(0, 2))
        total = per_member.sum()
        return None if total == 0 else per_member / total

    def _combine_rule(self, member_preds: np.ndarray, X: np.ndarray | None) -> np.ndarray:
        scores = self._features(member_preds, X) @ self.coef_.T + self.intercept_
        if self.task == "regression":
            return scores
        if self.coef_.shape[0] == 1:
            positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.column_stack([1.0 - positive, positive])
        scores -= scores.max(axis=1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=1, keepdims=True)
        return probs

    def _rule_state(self) -> dict[str, Any]:
        def as_list(value: np.ndarray | None) -> list[float] | None:
            return None if value is None else value.tolist()

        return {
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_.tolist(),
            "feature_mean": as_list(self.feature_mean_),
            "feature_scale": as_list(self.feature_scale_),
        }

    def _load_rule_state(self, fitted: dict[str, Any]) -> None:
        def as_array(value: list[float] | None) -> np.ndarray | None:
            return None if value is None else np.asarray(value, dtype=float)

        self.coef_ = np.asarray(fitted["coef"], dtype=float)
        self.intercept_ = np.asarray(fitted["intercept"], dtype=float)
        self.feature_mean_ = as_array(fitted["feature_mean"])
        self.feature_scale_ = as_array(fitted["feature_scale"])
