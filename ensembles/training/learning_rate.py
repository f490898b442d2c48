"""The learning rate from the data: the learning-rate range test (Smith 2017).

One short run raises the rate exponentially every optimizer step, from ``MIN_RATE`` to
``MAX_RATE``, on at most ``RANGE_TEST_ROWS`` training rows, until the loss explodes. The rule
(fastai's ``lr_min``, the usual rule of thumb): take the rate where the smoothed training
loss is lowest and divide it by ten, so training starts well below where the loss
diverges. The loss is smoothed with a centred moving average of ``SMOOTHING_STEPS`` steps,
which, unlike an exponential average, does not lag behind the rate.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ensembles.training.config import TrainConfig
from ensembles.training.loop import Callback, batch_starts, fit_member
from ensembles.training.network import MemberNetwork
from ensembles.training.plans import member_seed

logger = logging.getLogger(__name__)

MIN_RATE = 1e-5
MAX_RATE = 1.0
RANGE_TEST_ROWS = 512
RANGE_TEST_STEPS = 240
SMOOTHING_STEPS = 15
EXPLOSION_FACTOR = 4.0
RULE = "one tenth of the rate at the lowest smoothed loss of the learning-rate range test"


@dataclass
class RangeTestResult:
    """The learning-rate range test: training loss per optimizer step as the rate grows.

    Attributes
    ----------
    rates : list of float
        The rate of each recorded step.
    losses : list of float
        Each step's training loss, smoothed (stops at the explosion).
    suggested : float
        One tenth of the rate with the lowest smoothed loss, to two significant digits.
    seconds : float
        What the test cost.
    """

    rates: list[float]
    losses: list[float]
    suggested: float
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        """JSON-safe result (non-finite losses as None)."""
        return {
            "rates": self.rates,
            "losses": [loss if math.isfinite(loss) else None for loss in self.losses],
            "suggested": self.suggested,
            "seconds": self.seconds,
            "rule": RULE,
        }


class ExponentialRateCallback(Callback):
    """Grow the learning rate exponentially per step; stop once the loss explodes.

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
        self.rates: list[float] = []
        self.losses: list[float] = []
        self.best_recent = math.inf

    def rate(self, step: int) -> float:
        """The rate of optimizer step ``step`` (0-based)."""
        return self.min_rate * self.ratio ** (min(step, self.total_steps) / self.total_steps)

    def learning_rate(self, step: int, steps_per_epoch: int) -> float:
        """The exponentially growing rate of ``step``."""
        return self.rate(step)

    def on_step_end(self, step: int, loss: float) -> bool:
        """Record the step; stop when the loss of the last ``SMOOTHING_STEPS`` steps (mean) is
        ``EXPLOSION_FACTOR`` times its lowest so far, or not finite."""
        self.rates.append(self.rate(step))
        self.losses.append(loss)
        if not math.isfinite(loss):
            return True
        recent = float(np.mean(self.losses[-SMOOTHING_STEPS:]))  # trailing: no future yet
        self.best_recent = min(self.best_recent, recent)
        return recent > EXPLOSION_FACTOR * self.best_recent


def smooth_losses(losses: list[float], width: int = SMOOTHING_STEPS) -> np.ndarray:
    """Centred moving average of ``width`` steps (narrower at the ends); non-finite is NaN."""
    values = np.asarray(losses, dtype=float)
    values = np.where(np.isfinite(values), values, np.nan)
    half = width // 2
    return np.array(
        [
            np.nanmean(values[max(0, i - half) : i + half + 1])
            if np.isfinite(values[max(0, i - half) : i + half + 1]).any()
            else np.nan
            for i in range(len(values))
        ]
    )


def lr_range_test(
    X: np.ndarray,
    y: np.ndarray,
    build: Callable[[np.ndarray, TrainConfig], MemberNetwork],
    config: TrainConfig,
    seed: int,
) -> RangeTestResult:
    """Run the range test on training rows and suggest a rate by :data:`RULE`.

    The test trains through :func:`~ensembles.training.loop.fit_member` with ``config``'s
    settings, so on the members' own objective (beta-NLL, class weights counted on the
    test's rows), and reads each step's plain loss, as the training curves do.

    Parameters
    ----------
    X : ndarray (n_rows, n_features)
        Training rows; at most :data:`RANGE_TEST_ROWS` of them are used.
    y : ndarray (n_rows,) or (n_rows, n_outputs)
    build : callable
        ``build(rows, config) -> MemberNetwork``: a fresh network whose standardization
        comes from those rows (``members.build_network`` bound to the data).
    config : TrainConfig
        The setup under test; its own rate, budget and early stopping are replaced.
    seed : int

    Returns
    -------
    RangeTestResult
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(y), size=min(len(y), RANGE_TEST_ROWS), replace=False))
    steps_per_epoch = len(batch_starts(len(rows), config.batch_size, config.batch_norm))
    epochs = math.ceil(RANGE_TEST_STEPS / steps_per_epoch)
    test_config = config.with_overrides(
        {"epochs": epochs, "patience": None, "learning_rate": MIN_RATE}
    )
    callback = ExponentialRateCallback(MIN_RATE, MAX_RATE, epochs * steps_per_epoch)
    run_seed = member_seed(seed, 10_000)
    torch.manual_seed(run_seed)
    network = build(rows, test_config)
    fit_member(network, X[rows], y[rows], X[rows], y[rows], test_config, run_seed, [callback])
    smoothed = smooth_losses(callback.losses)
    best = int(np.nanargmin(smoothed)) if np.isfinite(smoothed).any() else 0
    suggested = float(f"{callback.rates[best] / 10:.2g}")
    seconds = time.perf_counter() - start
    logger.info(
        "learning-rate range test (%.1f s): lowest loss at %.3g, rate %.3g",
        seconds,
        callback.rates[best],
        suggested,
    )
    return RangeTestResult(
        [float(rate) for rate in callback.rates], [float(x) for x in smoothed], suggested, seconds
    )
