"""Train one setup R times with different seeds and collect its learning curves."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from ensembles.manifest import Task
from ensembles.training.config import TrainConfig
from ensembles.training.loop import member_outputs
from ensembles.training.plans import repeat_plans
from ensembles.training.strategies import TrainingData, train_planned_member

logger = logging.getLogger(__name__)

# Gaussian NLL (full) of predicting N(0, 1) for a standardized target: 0.5 * log(2 pi) + 0.5.
_GAUSSIAN_BASELINE_NLL = 0.5 * math.log(2 * math.pi) + 0.5


@dataclass(frozen=True)
class ProblemScale:
    """What a constant predictor achieves: the units skill and loss changes are measured in.

    Attributes
    ----------
    task : {"classification", "regression"}
    constant_metric : float
        Accuracy of always predicting the majority training class, or the RMSE of always
        predicting the training mean (the target's standard deviation).
    constant_loss : float
        Training loss of the best constant predictor: the entropy of the class prior, 1 for
        MSE on standardized targets, or the Gaussian NLL of N(0, 1).
    """

    task: Task
    constant_metric: float
    constant_loss: float

    def skill(self, metric: float) -> float:
        """Share of the way from the constant predictor (0) to a perfect one (1).

        ``(accuracy - majority) / (1 - majority)`` or ``1 - rmse / std``; NaN stays NaN.
        """
        if not math.isfinite(metric):
            return math.nan
        if self.task == "classification":
            return (metric - self.constant_metric) / max(1.0 - self.constant_metric, 1e-12)
        return 1.0 - metric / max(self.constant_metric, 1e-12)


@dataclass
class RunSet:
    """R runs of one setup: their curves and what the runs deliver.

    Attributes
    ----------
    config : TrainConfig
    seeds : list of int, length n_runs
    curves : list (n_runs) of list (epochs run) of dict
        Per epoch: epoch, train_loss, val_loss, train_metric, val_metric, learning_rate.
    delivered_epochs : list of int, length n_runs
        The epoch whose weights each run ends with (the best one under early stopping).
    ensemble_val_metric : float
        Validation metric of the average of the R runs' outputs (a model-averaging ensemble).
    scale : ProblemScale
    seconds : float
    """

    config: TrainConfig
    seeds: list[int]
    curves: list[list[dict[str, float]]]
    delivered_epochs: list[int]
    ensemble_val_metric: float
    scale: ProblemScale
    seconds: float

    @property
    def n_runs(self) -> int:
        """Number of runs."""
        return len(self.curves)

    def to_dict(self) -> dict[str, object]:
        """JSON-safe runs (non-finite floats become None)."""
        return {
            "seeds": self.seeds,
            "delivered_epochs": self.delivered_epochs,
            "ensemble_val_metric": finite_or_none(self.ensemble_val_metric),
            "seconds": round(self.seconds, 3),
            "curves": [
                [{key: finite_or_none(value) for key, value in row.items()} for row in run]
                for run in self.curves
            ],
        }


def problem_scale(data: TrainingData, config: TrainConfig) -> ProblemScale:
    """The constant-predictor metric and loss of the training rows."""
    if data.task == "classification":
        counts = np.bincount(data.y_train, minlength=data.n_outputs).astype(float)
        prior = counts / counts.sum()
        entropy = float(-(prior[prior > 0] * np.log(prior[prior > 0])).sum())
        return ProblemScale("classification", float(prior.max()), entropy)
    std = float(np.sqrt(np.mean(np.var(data.y_train, axis=0))))
    loss = _GAUSSIAN_BASELINE_NLL if config.gaussian_head else 1.0
    return ProblemScale("regression", std, loss)


def collect_runs(
    data: TrainingData,
    config: TrainConfig,
    n_runs: int,
    seed: int,
    progress: bool = True,
    label: str = "diagnosis runs",
) -> RunSet:
    """Train the configured network ``n_runs`` times with different seeds.

    The seeds are those of a ``repeat`` ensemble trained with ``seed``, so the runs are the
    members ``scripts/train.py --strategy repeat`` would train.

    Parameters
    ----------
    data : TrainingData
        Training rows (n_train, n_features) and validation rows (n_val, n_features).
    config : TrainConfig
    n_runs : int
    seed : int
    progress : bool
        Show a progress bar (one step per run).
    label : str
        The progress bar's description.

    Returns
    -------
    RunSet
    """
    start = time.perf_counter()
    plans = repeat_plans(n_runs, seed)
    members = []
    for plan in tqdm(plans, desc=label, unit="run", disable=not progress):
        members.append(train_planned_member(plan, data, config))
        logger.debug("run %d: %d epochs", plan.index, len(members[-1].curves))
    outputs = np.stack([member_outputs(m.network(data), data.X_val)[0] for m in members])
    return RunSet(
        config=config,
        seeds=[plan.seed for plan in plans],
        curves=[member.curves for member in members],
        delivered_epochs=[member.epoch for member in members],
        ensemble_val_metric=_averaged_metric(outputs, data),
        scale=problem_scale(data, config),
        seconds=time.perf_counter() - start,
    )


def _averaged_metric(outputs: np.ndarray, data: TrainingData) -> float:
    """Metric of the mean of ``outputs`` (n_runs, n_val, n_outputs) on the validation rows."""
    mean = outputs.mean(axis=0)
    if not np.isfinite(mean).all():
        return math.nan
    if data.task == "classification":
        return float((mean.argmax(axis=1) == data.y_val).mean())
    return float(np.sqrt(np.mean((mean - data.y_val) ** 2)))


def finite_or_none(value: object) -> object:
    """``value`` unless it is a non-finite float (JSON has no NaN or infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
