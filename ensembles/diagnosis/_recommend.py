"""Recommendations per verdict, from the framework's lists, and the learning-rate range test."""

from __future__ import annotations

import logging
import math
import shlex
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ensembles.diagnosis._verdicts import Diagnosis, Thresholds
from ensembles.training.config import TrainConfig
from ensembles.training.loop import Callback, fit_member
from ensembles.training.network import MemberNetwork
from ensembles.training.plans import member_seed
from ensembles.training.strategies import TrainingData, build_network

logger = logging.getLogger(__name__)

_RANGE_TEST_EPOCHS = 16
_RANGE_TEST_ROWS = 512


@dataclass
class Recommendation:
    """One technique to try.

    Attributes
    ----------
    technique : str
        e.g. ``learning rate``, ``early stopping``, ``ensemble``.
    reason : str
        Why it fits the evidence, in one sentence.
    overrides : dict
        Training settings that apply it (empty when it is not a setting, e.g. an ensemble).
    command : str or None
        The exact ``scripts/train.py`` command, for an ensemble.
    """

    technique: str
    reason: str
    overrides: dict[str, Any] = field(default_factory=dict)
    command: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe recommendation."""
        overrides = {k: list(v) if isinstance(v, tuple) else v for k, v in self.overrides.items()}
        return {
            "technique": self.technique,
            "reason": self.reason,
            "overrides": overrides,
            "command": self.command,
        }


@dataclass
class RangeTestResult:
    """The learning-rate range test: training loss per epoch as the rate grows exponentially.

    Attributes
    ----------
    rates : list of float
        Geometric-mean learning rate of each epoch.
    losses : list of float
        Training loss of each epoch (stops at divergence).
    suggested : float
        One tenth of the rate with the lowest loss (the usual rule of thumb).
    """

    rates: list[float]
    losses: list[float]
    suggested: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe result."""
        return {
            "rates": self.rates,
            "losses": [loss if math.isfinite(loss) else None for loss in self.losses],
            "suggested": self.suggested,
        }


class ExponentialRateCallback(Callback):
    """Grow the learning rate exponentially per step and stop once the loss explodes.

    Parameters
    ----------
    min_rate, max_rate : float
        Rate of the first and of the last step.
    total_steps : int
    """

    def __init__(self, min_rate: float, max_rate: float, total_steps: int) -> None:
        self.min_rate = min_rate
        self.ratio = max_rate / min_rate
        self.total_steps = max(total_steps - 1, 1)
        self.best_loss = math.inf
        self.rates: list[float] = []
        self.losses: list[float] = []
        self._steps_per_epoch = 1

    def rate(self, step: float) -> float:
        """The rate at (possibly fractional) step ``step``."""
        return self.min_rate * self.ratio ** (min(step, self.total_steps) / self.total_steps)

    def learning_rate(self, step: int, steps_per_epoch: int) -> float:
        """The exponentially growing rate of ``step``."""
        self._steps_per_epoch = steps_per_epoch
        return self.rate(step)

    def on_epoch_end(self, epoch: int, network: MemberNetwork, log: dict[str, float]) -> bool:
        """Record the epoch's loss at its geometric-mean rate; stop at 4x the best loss."""
        middle = (epoch - 0.5) * self._steps_per_epoch - 0.5
        self.rates.append(self.rate(middle))
        self.losses.append(log["train_loss"])
        self.best_loss = min(self.best_loss, log["train_loss"])
        return log["train_loss"] > 4 * self.best_loss


def lr_range_test(
    data: TrainingData,
    config: TrainConfig,
    seed: int,
    min_rate: float = 1e-5,
    max_rate: float = 10.0,
) -> RangeTestResult:
    """Train once with an exponentially growing rate and suggest one tenth of the best rate.

    Parameters
    ----------
    data : TrainingData
        At most 512 training rows are used, so the test stays quick.
    config : TrainConfig
        The setup under test; its own rate and schedule are replaced.
    seed : int
    min_rate, max_rate : float

    Returns
    -------
    RangeTestResult
    """
    rng = np.random.default_rng(seed)
    n_rows = len(data.y_train)
    rows = np.sort(rng.choice(n_rows, size=min(n_rows, _RANGE_TEST_ROWS), replace=False))
    test_config = config.with_overrides(
        {"epochs": _RANGE_TEST_EPOCHS, "patience": None, "learning_rate": min_rate}
    )
    steps_per_epoch = math.ceil(len(rows) / config.batch_size)
    callback = ExponentialRateCallback(min_rate, max_rate, _RANGE_TEST_EPOCHS * steps_per_epoch)
    run_seed = member_seed(seed, 10_000)
    torch.manual_seed(run_seed)
    network = build_network(data, test_config, rows)
    result = fit_member(
        network,
        data.X_train[rows],
        data.y_train[rows],
        data.X_val,
        data.y_val,
        test_config,
        run_seed,
        [callback],
    )
    losses = [row["train_loss"] for row in result.curves]
    rates = callback.rates + [callback.rate(len(losses) * steps_per_epoch)] * (
        len(losses) - len(callback.rates)
    )
    finite = [i for i, loss in enumerate(losses) if math.isfinite(loss)]
    best = min(finite, key=lambda i: losses[i]) if finite else 0
    suggested = float(f"{rates[best] / 10:.2g}")
    logger.info(
        "learning-rate range test: lowest loss at %.3g, suggesting %.3g", rates[best], suggested
    )
    return RangeTestResult([float(r) for r in rates], [float(x) for x in losses], suggested)


def recommend(
    diagnosis: Diagnosis,
    config: TrainConfig,
    thresholds: Thresholds,
    range_test: RangeTestResult | None = None,
    train_command: list[str] | None = None,
) -> list[Recommendation]:
    """The framework's techniques for the verdict, best first.

    Parameters
    ----------
    diagnosis : Diagnosis
    config : TrainConfig
        The diagnosed setup: techniques it already uses are skipped or strengthened.
    thresholds : Thresholds
    range_test : RangeTestResult or None
        Learning verdicts: the suggested rate.
    train_command : list of str or None
        ``python scripts/train.py`` and the data options; the setup's own flags and the
        ensemble options are appended.

    Returns
    -------
    list of Recommendation
        Empty for "no problem found".
    """
    if diagnosis.verdict == "learning":
        return _learning(diagnosis, config, range_test)
    if diagnosis.verdict == "generalization":
        return _generalization(diagnosis, config)
    if diagnosis.verdict == "prediction":
        return _prediction(diagnosis, config, thresholds, train_command)
    return []


def _learning(
    diagnosis: Diagnosis, config: TrainConfig, range_test: RangeTestResult | None
) -> list[Recommendation]:
    evidence = diagnosis.findings["learning"].evidence
    diverged = evidence["diverged_runs"] > 0
    found: list[Recommendation] = []
    longer = Recommendation(
        "training length",
        f"the training loss was still falling after {config.epochs} epochs: train twice as long",
        {"epochs": 2 * config.epochs},
    )
    if range_test is not None and not (
        config.learning_rate / 2 <= range_test.suggested <= config.learning_rate * 2
    ):
        direction = "lower" if range_test.suggested < config.learning_rate else "higher"
        found.append(
            Recommendation(
                "learning rate",
                f"the range test's loss was lowest near {range_test.suggested * 10:.2g}; a "
                f"{direction} rate of {range_test.suggested:.2g} (now {config.learning_rate:g}) "
                "should learn steadily",
                {"learning_rate": range_test.suggested},
            )
        )
    if evidence.get("still_improving"):
        found.append(longer)
    if not config.standardize:
        found.append(
            Recommendation(
                "input scaling",
                "raw features of different scales slow and destabilize learning",
                {"standardize": True},
            )
        )
    if diverged and config.grad_clip is None:
        found.append(
            Recommendation(
                "gradient clipping",
                "the loss exploded: clip the gradient norm to 1",
                {"grad_clip": 1.0},
            )
        )
    if not config.batch_norm:
        found.append(
            Recommendation(
                "batch normalization",
                "standardized layer inputs keep deeper layers learning",
                {"batch_norm": True},
            )
        )
    if config.activation in ("tanh",):
        found.append(
            Recommendation(
                "activation",
                "saturating tanh units can stall gradients; rectified units do not",
                {"activation": "relu"},
            )
        )
    if config.batch_size > 16:
        found.append(
            Recommendation(
                "batch size",
                "smaller batches take more (noisier) steps per epoch",
                {"batch_size": max(16, config.batch_size // 4)},
            )
        )
    if config.optimizer == "sgd":
        found.append(
            Recommendation(
                "optimizer",
                "an adaptive rate (Adam) is less sensitive to the chosen rate",
                {"optimizer": "adam", "learning_rate": 1e-3},
            )
        )
    return found


def _generalization(diagnosis: Diagnosis, config: TrainConfig) -> list[Recommendation]:
    evidence = diagnosis.findings["generalization"].evidence
    best = int(evidence["best_epoch"])
    found: list[Recommendation] = []
    if config.patience is None:
        patience = max(3, round(0.1 * config.epochs))
        found.append(
            Recommendation(
                "early stopping",
                f"validation loss was best at epoch {best} of {config.epochs}; stop after "
                f"{patience} epochs without improvement and keep the best weights",
                {"patience": patience},
            )
        )
    decay = 1e-2 if config.weight_decay == 0 else config.weight_decay * 10
    found.append(
        Recommendation(
            "weight decay",
            "smaller weights make a less specialized, smoother network",
            {"weight_decay": decay},
        )
    )
    if config.dropout < 0.5:
        found.append(
            Recommendation(
                "dropout",
                "dropping units breaks co-adaptation between them",
                {"dropout": 0.5 if config.dropout >= 0.25 else 0.3},
            )
        )
    found.append(
        Recommendation(
            "input noise",
            "noise on the inputs stops the network keying on exact values",
            {"input_noise": 0.1 if config.input_noise == 0 else config.input_noise * 2},
        )
    )
    return found


def _prediction(
    diagnosis: Diagnosis,
    config: TrainConfig,
    thresholds: Thresholds,
    train_command: list[str] | None,
) -> list[Recommendation]:
    evidence = diagnosis.findings["prediction"].evidence
    spread = evidence["run_spread"]
    limit = evidence.get("run_spread_limit", thresholds.max_run_spread)
    ratio = spread / limit
    members = int(min(20, max(5, math.ceil(ratio**2))))
    across_runs = spread >= limit or config.patience is not None
    strategy = "repeat" if across_runs else "horizontal"
    how = (
        f"averaging {members} independent runs' predictions removes their seed-to-seed variance"
        if across_runs
        else "averaging the last epochs of one run smooths its late fluctuation"
    )
    single, averaged = evidence["val_metric_mean"], evidence["ensemble_val_metric"]
    reason = (
        f"{how}; averaging the diagnosis runs already gave a validation metric of "
        f"{averaged:.4g} against {single:.4g} for one run"
    )
    alternative = "horizontal" if strategy == "repeat" else "repeat"
    found = [
        Recommendation(
            f"ensemble ({strategy})", reason, {}, _command(train_command, config, strategy, members)
        ),
    ]
    if not (alternative == "horizontal" and config.patience is not None):
        found.append(
            Recommendation(
                f"ensemble ({alternative})",
                "the other way to average: "
                + (
                    "members from one run, cheaper"
                    if alternative == "horizontal"
                    else "independent runs, more diverse"
                ),
                {},
                _command(train_command, config, alternative, members),
            )
        )
    return found


def _command(
    prefix: list[str] | None, config: TrainConfig, strategy: str, members: int
) -> str | None:
    if prefix is None:
        return None
    if strategy == "horizontal":  # checkpoints from the second half of the run
        members = max(2, min(members, config.epochs // 2))
    words = [*prefix, *train_flags(config), "--strategy", strategy, "--members", str(members)]
    return shlex.join(words)


def train_flags(config: TrainConfig) -> list[str]:
    """The ``scripts/train.py`` flags that reproduce ``config`` (those off the defaults).

    Parameters
    ----------
    config : TrainConfig

    Returns
    -------
    list of str
    """
    default = TrainConfig()
    words: list[str] = []
    for name, value in config.to_dict().items():
        if value == default.to_dict()[name]:
            continue
        flag = "--" + name.replace("_", "-")
        if name == "hidden_sizes":
            words += [flag, *(str(size) for size in value)]
        elif name == "batch_norm":
            words.append(flag)
        elif name in ("standardize", "gaussian_head"):
            words.append("--no-" + name.replace("_", "-") if not value else flag)
        elif value is None:
            continue
        else:
            words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return words
