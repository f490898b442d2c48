"""Blending: non-negative member weights summing to one, learned on held-out rows."""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

import numpy as np

from ensembles.combiners._base import (
    Combiner,
    Task,
    is_int_at_least,
    param_problem,
    split_rows,
)
from ensembles.errors import DataError
from ensembles.metrics import PROB_FLOOR

logger = logging.getLogger(__name__)

#: Fewest fit rows that leave both halves of the held-out check non-empty.
_MIN_ROWS = 4


class _Loss:
    """Loss of a weighted member mix: log loss (classification) or mean squared error.

    Holds, per sample row, the member outputs the loss depends on: the probability each
    member gives the true class, or each member's values against the targets. Values and
    targets are standardized by the targets' mean and standard deviation: the weights sum
    to one, so a mix of standardized columns is the standardized mix, and the optimizer
    (whose tolerances are absolute) solves the same problem whatever the target's unit.
    :meth:`in_target_units` gives a loss back in the target's squared units.
    """

    def __init__(self, member_preds: np.ndarray, y: np.ndarray, task: Task) -> None:
        self.task = task
        self.unit = 1.0
        if task == "classification":
            rows = np.arange(len(y))
            self.columns = member_preds[:, rows, y].T  # (n_samples, n_members)
            self.targets = None
        else:
            n_members = member_preds.shape[0]
            targets = np.asarray(y, dtype=float).ravel()
            center, scale = float(targets.mean()), float(targets.std())
            scale = scale if scale > 0 else 1.0
            values = member_preds.reshape(n_members, -1).T  # (n_samples*n_outputs, m)
            self.columns = (values - center) / scale
            self.targets = (targets - center) / scale
            self.unit = scale**2

    def __call__(self, weights: np.ndarray) -> float:
        """The standardized loss of a weighting (the optimizer's objective)."""
        return float(self.of_mix(self.columns @ weights))

    def in_target_units(self, weights: np.ndarray) -> float:
        """The loss of a weighting in the target's units (log loss: as it is)."""
        return self.unit * self(weights)

    def of_mix(self, mix: np.ndarray) -> np.ndarray:
        """Loss of mixed columns ``(n_rows,)`` or candidates ``(n_rows, n_candidates)``."""
        if self.task == "classification":
            return -np.log(np.clip(mix, PROB_FLOOR, None)).mean(axis=0)
        residual = mix - (self.targets if mix.ndim == 1 else self.targets[:, None])
        return (residual**2).mean(axis=0)

    def gradient(self, weights: np.ndarray) -> np.ndarray:
        mix = self.columns @ weights
        if self.task == "classification":
            return -(self.columns / np.clip(mix, PROB_FLOOR, None)[:, None]).mean(axis=0)
        return 2.0 * self.columns.T @ (mix - self.targets) / len(mix)


def _optimize_weights(loss: _Loss) -> np.ndarray:
    """Minimize the (convex) loss over the simplex with SLSQP and analytic gradients."""
    from scipy.optimize import minimize

    n_members = loss.columns.shape[1]
    if n_members == 1:
        return np.ones(1)
    result = minimize(
        loss,
        np.full(n_members, 1.0 / n_members),
        jac=loss.gradient,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * n_members,
        constraints=[
            {"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}
        ],
        options={"ftol": 1e-12, "maxiter": 1000},
    )
    weights = np.clip(result.x, 0.0, None)
    weights = weights / weights.sum()
    uniform = np.full(n_members, 1.0 / n_members)
    if not result.success and not loss(weights) < loss(uniform):
        logger.warning("blend weights: SLSQP stopped (%s); uniform weights kept", result.message)
        return uniform
    return weights


def _greedy_weights(loss: _Loss, n_rounds: int) -> np.ndarray:
    """Caruana et al. (2004) ensemble selection with replacement.

    Start from the best single member, then each round add (with replacement) the member
    whose inclusion gives the lowest loss of the running average; keep the counts of the
    round with the lowest loss (the earliest on ties). Weights are counts / total.
    """
    n_members = loss.columns.shape[1]
    counts = np.zeros(n_members, dtype=np.int64)
    best = int(np.argmin(loss.of_mix(loss.columns)))
    counts[best] = 1
    total = loss.columns[:, best].copy()
    best_loss, best_counts = float(loss.of_mix(total)), counts.copy()
    for size in range(2, n_rounds + 1):
        candidates = (total[:, None] + loss.columns) / size
        candidate_losses = loss.of_mix(candidates)
        pick = int(np.argmin(candidate_losses))
        counts[pick] += 1
        total += loss.columns[:, pick]
        if candidate_losses[pick] < best_loss:
            best_loss, best_counts = float(candidate_losses[pick]), counts.copy()
    return best_counts / best_counts.sum()


class BlendingCombiner(Combiner):
    """Weighted mean of member outputs with weights learned on held-out rows.

    The weights are non-negative, sum to one and minimize the log loss (classification)
    or the mean squared error (regression) of the weighted mean.

    ``fit`` guards against weights that only fit noise: it splits the fit rows into two
    seeded halves (stratified by class), learns weights on the first and compares them
    with uniform weights on the second. If the learned weights are strictly better, they
    are learned again on all fit rows (more rows, same rule) and ``fallback_`` is False;
    otherwise the weights are uniform and ``fallback_`` is True. Both held-out losses are
    kept in ``heldout_losses_``.

    Parameters
    ----------
    task : {"classification", "regression"}
        Whether member outputs are class probabilities or values.
    method : {"optimize", "greedy"}, default "optimize"
        ``"optimize"`` solves the convex problem on the simplex (scipy SLSQP with analytic
        gradients); ``"greedy"`` is Caruana et al. (2004) ensemble selection with
        replacement.
    n_rounds : int, default 50
        Ensemble size (rounds) of greedy selection; unused by ``"optimize"``.
    calibrate : bool, default False
        Learn a temperature on cross-fitted outputs (classification only).
    random_state : int, default 0
        Seed of the held-out row splits.
    """

    kind: ClassVar[str] = "blend"
    _param_names: ClassVar[tuple[str, ...]] = (
        "task",
        "method",
        "n_rounds",
        "calibrate",
        "random_state",
    )
    _learns_from_targets: ClassVar[bool] = True

    def __init__(
        self,
        task: Task,
        method: Literal["optimize", "greedy"] = "optimize",
        n_rounds: int = 50,
        calibrate: bool = False,
        random_state: int = 0,
    ) -> None:
        self.task = task
        self.method = method
        self.n_rounds = n_rounds
        self.calibrate = calibrate
        self.random_state = random_state
        self._validate_params()

    def _param_problems(self) -> list[str]:
        problems = super()._param_problems()
        if self.method not in ("optimize", "greedy"):
            expected = "one of 'optimize', 'greedy'"
            problems.append(param_problem("BlendingCombiner", "method", expected, self.method))
        if not is_int_at_least(self.n_rounds, 1):
            expected = "an int >= 1"
            problems.append(param_problem("BlendingCombiner", "n_rounds", expected, self.n_rounds))
        if not is_int_at_least(self.random_state, 0):
            expected = "an int >= 0"
            problems.append(
                param_problem("BlendingCombiner", "random_state", expected, self.random_state)
            )
        return problems

    def _split_seed(self) -> int:
        return self.random_state

    @property
    def member_weights(self) -> np.ndarray:
        """np.ndarray, shape (n_members,): the learned weights (non-negative, sum to one)."""
        self._check_fitted()
        return self.weights_

    def _learn(self, loss: _Loss) -> np.ndarray:
        if self.method == "greedy":
            return _greedy_weights(loss, self.n_rounds)
        return _optimize_weights(loss)

    def _fit_rule(self, member_preds: np.ndarray, y: np.ndarray, X: np.ndarray | None) -> None:
        n_members, n_samples, _ = member_preds.shape
        if n_samples < _MIN_ROWS:
            raise DataError(
                f"BlendingCombiner needs at least {_MIN_ROWS} fit rows to check its weights "
                f"on held-out rows; got {n_samples}."
            )
        first, second = split_rows(y, self.task, self.random_state)
        learned = self._learn(_Loss(member_preds[:, first], y[first], self.task))
        check = _Loss(member_preds[:, second], y[second], self.task)
        uniform = np.full(n_members, 1.0 / n_members)
        self.heldout_losses_ = {
            "learned": check.in_target_units(learned),
            "uniform": check.in_target_units(uniform),
        }
        self.fallback_ = not self.heldout_losses_["learned"] < self.heldout_losses_["uniform"]
        if self.fallback_:
            self.weights_ = uniform
        else:
            self.weights_ = self._learn(_Loss(member_preds, y, self.task))

    def _combine_rule(self, member_preds: np.ndarray, X: np.ndarray | None) -> np.ndarray:
        return np.tensordot(self.weights_, member_preds, axes=1)

    def _rule_state(self) -> dict[str, Any]:
        return {
            "weights": self.weights_.tolist(),
            "fallback": bool(self.fallback_),
            "heldout_losses": {key: float(value) for key, value in self.heldout_losses_.items()},
        }

    def _load_rule_state(self, fitted: dict[str, Any]) -> None:
        self.weights_ = np.asarray(fitted["weights"], dtype=float)
        self.fallback_ = bool(fitted["fallback"])
        self.heldout_losses_ = {key: float(v) for key, v in fitted["heldout_losses"].items()}
