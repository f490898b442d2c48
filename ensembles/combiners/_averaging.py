"""Plain averaging: the mean of member probabilities (soft vote) or member values."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ensembles.combiners._base import Combiner, Task


class MeanCombiner(Combiner):
    """Unweighted mean of member outputs.

    ``fit`` only records ``n_members_`` and ``n_outputs_`` (and learns a temperature when
    ``calibrate=True``). Equal to scikit-learn's ``VotingClassifier(voting="soft")`` and
    ``VotingRegressor`` without weights.

    Parameters
    ----------
    task : {"classification", "regression"}
        Whether member outputs are class probabilities or values.
    calibrate : bool, default False
        Learn a temperature on the fit rows (classification only).
    """

    kind: ClassVar[str] = "mean"
    _param_names: ClassVar[tuple[str, ...]] = ("task", "calibrate")

    def __init__(self, task: Task, calibrate: bool = False) -> None:
        self.task = task
        self.calibrate = calibrate
        self._validate_params()

    def _fit_rule(self, member_preds: np.ndarray, y: np.ndarray, X: np.ndarray | None) -> None:
        """Nothing to learn: the mean has no parameters."""

    def _combine_rule(self, member_preds: np.ndarray, X: np.ndarray | None) -> np.ndarray:
        # ``mean(axis=0)``'s arithmetic without its per-call overhead (small served batches).
        return np.add.reduce(member_preds, axis=0) / len(member_preds)
