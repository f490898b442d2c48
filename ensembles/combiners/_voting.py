"""Hard majority voting over member class predictions (classification only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ensembles.combiners._base import Combiner, Task, param_problem
from ensembles.errors import ConfigError


class VotingCombiner(Combiner):
    """Hard (optionally weighted) majority vote, reported as vote shares per class.

    Each member votes for its most probable class (the lowest index on ties within a
    member); the output is the weighted share of votes each class received, so its argmax
    is the majority class with ties broken toward the lowest class index, exactly as
    scikit-learn's ``VotingClassifier(voting="hard")`` (argmax of a weighted bincount).

    Parameters
    ----------
    task : {"classification"}
        Voting needs classes; ``"regression"`` raises :class:`ConfigError`.
    weights : sequence of float, shape (n_members,), optional
        Non-negative vote weights (normalized to sum to one); None gives every member one
        vote.
    calibrate : bool, default False
        Learn a temperature on the fit rows; vote shares are clipped at 1e-15 before the log.
    """

    kind: ClassVar[str] = "vote"
    _param_names: ClassVar[tuple[str, ...]] = ("task", "weights", "calibrate")

    def __init__(
        self,
        task: Task = "classification",
        weights: Sequence[float] | np.ndarray | None = None,
        calibrate: bool = False,
    ) -> None:
        self.task = task
        self.weights = weights
        self.calibrate = calibrate
        self._validate_params()

    def _param_problems(self) -> list[str]:
        problems = super()._param_problems()
        if self.task == "regression":
            problems.append(
                "VotingCombiner needs task='classification': hard votes count classes. "
                "Use MeanCombiner or BlendingCombiner for regression."
            )
        if self.weights is not None:
            weights = np.asarray(self.weights, dtype=float)
            if (
                weights.ndim != 1
                or len(weights) == 0
                or not np.isfinite(weights).all()
                or weights.min() < 0
                or weights.sum() <= 0
            ):
                expected = "None or a 1-d sequence of non-negative floats with a positive sum"
                problems.append(param_problem("VotingCombiner", "weights", expected, self.weights))
        return problems

    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        if self.weights is not None:
            params["weights"] = [float(w) for w in np.asarray(self.weights, dtype=float)]
        return params

    @property
    def member_weights(self) -> np.ndarray | None:
        """np.ndarray, shape (n_members,), or None: normalized vote weights (None = uniform)."""
        if self.weights is None:
            return None
        weights = np.asarray(self.weights, dtype=float)
        return weights / weights.sum()

    def _fit_rule(self, member_preds: np.ndarray, y: np.ndarray, X: np.ndarray | None) -> None:
        n_members = member_preds.shape[0]
        if self.weights is not None and len(self.weights) != n_members:
            raise ConfigError(
                f"VotingCombiner has {len(self.weights)} weights for {n_members} members. "
                "Give one weight per member or weights=None."
            )

    def _combine_rule(self, member_preds: np.ndarray, X: np.ndarray | None) -> np.ndarray:
        n_members, _, n_classes = member_preds.shape
        votes = member_preds.argmax(axis=2)
        one_hot = votes[:, :, None] == np.arange(n_classes)
        weights = self.member_weights
        if weights is None:
            weights = np.full(n_members, 1.0 / n_members)
        return np.tensordot(weights, one_hot.astype(float), axes=1)
