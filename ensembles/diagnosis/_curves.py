"""Train one setup R times with different seeds and collect its learning curves."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ensembles.manifest import Task
from ensembles.metrics import HALF_LOG_TWO_PI, gaussian_nll_terms
from ensembles.training.config import TrainConfig
from ensembles.training.learning_rate import RangeTestResult
from ensembles.training.loop import member_outputs
from ensembles.training.members import (
    TrainingData,
    rate_record,
    resolve_learning_rate,
    train_planned_member,
)
from ensembles.training.network import MemberNetwork
from ensembles.training.plans import repeat_plans

logger = logging.getLogger(__name__)

# Gaussian NLL (full) of predicting N(0, 1) for a standardized target: 0.5 * log(2 pi) + 0.5.
_GAUSSIAN_BASELINE_NLL = HALF_LOG_TWO_PI + 0.5


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
        The setup the runs trained with, its learning rate resolved to the number they used
        (``epochs`` stays as given: None for the budget rule).
    seeds : list of int, length n_runs
    curves : list (n_runs) of list (epochs run) of dict
        Per epoch: epoch, train_loss, val_loss, train_metric, val_metric, learning_rate.
    delivered_epochs : list of int, length n_runs
        The epoch whose weights each run ends with (the best one under early stopping).
    ensemble_val_metric : float
        Validation metric of the average of the R runs' outputs (a model-averaging ensemble).
    scale : ProblemScale
    seconds : float
    n_val : int
        Validation rows the metric is measured on (0 when unknown): sets its sampling error.
    test : list of dict, length n_runs (empty without a test split)
        Per run, test_loss and test_metric of the delivered weights on the held-out test rows,
        which no run trains or stops on.
    ensemble_test_metric : float
        Test metric of the average of the R runs' outputs (NaN without a test split).
    budgets : list of dict, length n_runs (empty when unknown)
        Per run, what its budget allowed and what it used (``TrainedMember.budget``):
        max_epochs, patience, min_epochs, steps_per_epoch, rule ("data" or "epochs"),
        epochs_run, best_epoch, steps_run and why it stopped ("patience", "cap", "epochs"
        or "diverged"). Without them no run counts as having used its whole budget.
    range_test : RangeTestResult or None
        The range test that chose the learning rate, once for every run
        (``members.resolve_learning_rate``); None when the rate was given.
    """

    config: TrainConfig
    seeds: list[int]
    curves: list[list[dict[str, float]]]
    delivered_epochs: list[int]
    ensemble_val_metric: float
    scale: ProblemScale
    seconds: float
    n_val: int = 0
    test: list[dict[str, float]] = field(default_factory=list)
    ensemble_test_metric: float = math.nan
    budgets: list[dict[str, Any]] = field(default_factory=list)
    range_test: RangeTestResult | None = None

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
            "n_val": self.n_val,
            "test": [
                {key: finite_or_none(value) for key, value in row.items()} for row in self.test
            ],
            "ensemble_test_metric": finite_or_none(self.ensemble_test_metric),
            "learning_rate": rate_record(self.config, self.range_test),
            "budgets": self.budgets,
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
    test: tuple[np.ndarray, np.ndarray] | None = None,
) -> RunSet:
    """Train the configured network ``n_runs`` times with different seeds.

    The seeds are those of a ``repeat`` ensemble trained with ``seed``, so the runs are the
    members ``scripts/train.py --strategy repeat`` would train. An ``auto`` learning rate is
    chosen once, by the range test with ``seed``, and every run uses it; each run trains for
    its budget (the explicit epochs or the budget rule) and records what it used. Unlike
    training, a run whose loss becomes NaN or infinite is kept: divergence is evidence of a
    learning problem.

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
    test : (X_test (n_test, n_features), y_test) or None
        Held-out rows, used only to report each run's delivered loss and metric.

    Returns
    -------
    RunSet
    """
    start = time.perf_counter()
    config, range_test = resolve_learning_rate(data, config, seed)
    plans = repeat_plans(n_runs, seed)
    members = [
        train_planned_member(plan, data, config, allow_diverged=True)
        for plan in tqdm(plans, desc=label, unit="run", disable=not progress)
    ]
    for plan, member in zip(plans, members, strict=True):
        logger.debug("run %d: %s", plan.index, member.budget)
    networks = [member.network(data) for member in members]
    outputs = np.stack([member_outputs(network, data.X_val)[0] for network in networks])
    held_out: list[dict[str, float]] = []
    ensemble_test_metric = math.nan
    if test is not None:
        X_test, y_test = test
        test_outputs = [member_outputs(network, X_test) for network in networks]
        held_out = [
            {
                "test_loss": _loss(network, output, y_test),
                "test_metric": _metric(output[0], y_test, data.task),
            }
            for network, output in zip(networks, test_outputs, strict=True)
        ]
        ensemble_test_metric = _averaged_metric(
            np.stack([output[0] for output in test_outputs]), y_test, data.task
        )
    return RunSet(
        config=config,
        seeds=[plan.seed for plan in plans],
        curves=[member.curves for member in members],
        delivered_epochs=[member.epoch for member in members],
        ensemble_val_metric=_averaged_metric(outputs, data.y_val, data.task),
        scale=problem_scale(data, config),
        seconds=time.perf_counter() - start,
        n_val=len(data.y_val),
        test=held_out,
        ensemble_test_metric=ensemble_test_metric,
        budgets=[member.budget for member in members],
        range_test=range_test,
    )


def _averaged_metric(outputs: np.ndarray, y: np.ndarray, task: Task) -> float:
    """Metric of the mean of ``outputs`` (n_runs, n_samples, n_outputs) against ``y``."""
    return _metric(outputs.mean(axis=0), y, task)


def _metric(output: np.ndarray, y: np.ndarray, task: Task) -> float:
    """Accuracy of probabilities or RMSE of values (n_samples, n_outputs); NaN if not finite."""
    if not np.isfinite(output).all():
        return math.nan
    if task == "classification":
        return float((output.argmax(axis=1) == y).mean())
    return float(np.sqrt(np.mean((output - y) ** 2)))


def _loss(network: MemberNetwork, output: tuple[np.ndarray, ...], y: np.ndarray) -> float:
    """The training loss of served ``output`` on rows ``y``, as the validation curve has it.

    Cross-entropy of the probabilities, or MSE / full Gaussian NLL on standardized targets.
    """
    if not all(np.isfinite(part).all() for part in output):
        return math.nan
    if network.task == "classification":
        probabilities = np.clip(output[0][np.arange(len(y)), y], 1e-12, None)
        return float(-np.mean(np.log(probabilities)))
    scale = network.target_scale.numpy().astype(np.float64)
    error = (output[0] - y) / scale
    if len(output) == 1:
        return float(np.mean(error**2))
    variance = np.maximum(output[1] / scale**2, 1e-6)
    return float(np.mean(gaussian_nll_terms(error, variance, np.zeros_like(error))))


def finite_or_none(value: object) -> object:
    """``value`` unless it is a non-finite float (JSON has no NaN or infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
