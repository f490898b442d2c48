"""Diagnose a setup, apply the top recommendation and diagnose again (the framework's loop)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ensembles.diagnosis._curves import RunSet, collect_runs, finite_or_none
from ensembles.diagnosis._recommend import Recommendation, recommend
from ensembles.diagnosis._verdicts import Diagnosis, Thresholds, diagnose_runs
from ensembles.training import members
from ensembles.training.config import TrainConfig
from ensembles.training.learning_rate import RangeTestResult
from ensembles.training.members import TrainingData

logger = logging.getLogger(__name__)

# The figure each verdict is judged on when a fix is applied; lower is better for all three.
FLAGGED_FIGURE: dict[str, str] = {
    "learning": "train_loss",
    "generalization": "val_loss",
    "prediction": "run_spread",
}
# Early stopping picks its epoch on the validation rows, so a fix is also judged on the
# held-out test rows, which no run trains or stops on.
TEST_FIGURE = "test_loss"

HeldOut = tuple[np.ndarray, np.ndarray]


@dataclass
class Round:
    """One diagnosis of one setup.

    Attributes
    ----------
    index : int
        0 for the setup as given, then one per applied recommendation.
    config : TrainConfig
        The setup as diagnosed (``learning_rate`` and ``epochs`` may be None: automatic);
        ``runs.config`` has the rate the runs used, ``runs.budgets`` what they trained for.
    runs : RunSet
    diagnosis : Diagnosis
    recommendations : list of Recommendation, best first
    range_test : RangeTestResult or None
        For learning verdicts: the one that chose an ``auto`` rate, or one run for the
        recommendation when the rate was given.
    applied : Recommendation or None
        The recommendation that turned the previous round's setup into this one.
    """

    index: int
    config: TrainConfig
    runs: RunSet
    diagnosis: Diagnosis
    recommendations: list[Recommendation]
    range_test: RangeTestResult | None = None
    applied: Recommendation | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe round, curves included."""
        return {
            "index": self.index,
            "applied": None if self.applied is None else self.applied.to_dict(),
            "config": self.config.to_dict(),
            "diagnosis": self.diagnosis.to_dict(),
            "recommendations": [item.to_dict() for item in self.recommendations],
            "lr_range_test": None if self.range_test is None else self.range_test.to_dict(),
            "runs": self.runs.to_dict(),
        }


def diagnose_setup(
    data: TrainingData,
    config: TrainConfig,
    thresholds: Thresholds,
    n_runs: int,
    seed: int,
    progress: bool = True,
    train_command: list[str] | None = None,
    index: int = 0,
    applied: Recommendation | None = None,
    test: HeldOut | None = None,
) -> Round:
    """Train ``n_runs`` runs of ``config``, classify them and recommend techniques.

    Parameters
    ----------
    data : TrainingData
    config : TrainConfig
    thresholds : Thresholds
    n_runs : int
    seed : int
    progress : bool
    train_command : list of str or None
        ``python scripts/train.py`` and the data options, for ensemble commands.
    index : int
    applied : Recommendation or None
    test : (X_test (n_test, n_features), y_test) or None
        Held-out rows, only reported on (never trained or stopped on).

    Returns
    -------
    Round
    """
    label = "diagnosis runs" if index == 0 else f"round {index} runs"
    runs: RunSet = collect_runs(data, config, n_runs, seed, progress, label, test)
    diagnosis: Diagnosis = diagnose_runs(runs, thresholds)
    logger.info("round %d: %s", index, diagnosis.text)
    range_test = None
    if diagnosis.verdict == "learning":
        range_test = runs.range_test or members.range_test(data, config, seed)
    recommendations = recommend(diagnosis, config, thresholds, range_test, train_command)
    return Round(index, config, runs, diagnosis, recommendations, range_test, applied)


def improve(
    data: TrainingData,
    config: TrainConfig,
    thresholds: Thresholds,
    n_runs: int,
    seed: int,
    rounds: int = 0,
    progress: bool = True,
    train_command: list[str] | None = None,
    test: HeldOut | None = None,
) -> list[Round]:
    """Diagnose, then apply the top recommendation and diagnose again, up to ``rounds`` times.

    Stops early when nothing is found, when the problem is one of prediction (its cure is an
    ensemble, not a setting) or when no recommendation changes the setup. A lever already
    applied is not recommended again, so a generalization problem that early stopping does not
    remove gets weight decay, then dropout, then input noise in the next rounds.

    Returns
    -------
    list of Round
        The first is the setup as given.
    """
    history = [
        diagnose_setup(data, config, thresholds, n_runs, seed, progress, train_command, test=test)
    ]
    while len(history) <= rounds:
        last = history[-1]
        if last.diagnosis.verdict not in ("learning", "generalization"):
            break
        choice = next_change(last, {r.applied.technique for r in history if r.applied})
        if choice is None:
            logger.info("no recommendation changes the setup any further")
            break
        logger.info("applying %s: %s", choice.technique, choice.overrides)
        history.append(
            diagnose_setup(
                data,
                last.config.with_overrides(choice.overrides),
                thresholds,
                n_runs,
                seed,
                progress,
                train_command,
                index=len(history),
                applied=choice,
                test=test,
            )
        )
    return history


def next_change(last: Round, tried: set[str] | None = None) -> Recommendation | None:
    """The first recommendation of ``last`` that changes its setup and is not in ``tried``.

    A technique applied in an earlier round that left the verdict standing is not applied
    again (stronger), so the next lever gets its turn.
    """
    tried = tried or set()
    for item in last.recommendations:
        if item.technique in tried or not item.overrides:
            continue
        if last.config.with_overrides(item.overrides) != last.config:
            return item
    return None


def flagged_change(before: Round, after: Round) -> dict[str, Any]:
    """How the figure ``before``'s verdict flagged moved in ``after`` (lower is better).

    ``test`` holds the same comparison of the delivered test loss when there is a test split.
    A NaN (diverged) figure counts as infinitely bad.
    """
    figure = FLAGGED_FIGURE.get(before.diagnosis.verdict)
    if figure is None:
        return {}
    change = _change(figure, before, after)
    if before.runs.test:
        change["test"] = _change(TEST_FIGURE, before, after)
    return change


def _change(figure: str, before: Round, after: Round) -> dict[str, Any]:
    old, new = before.diagnosis.summary[figure], after.diagnosis.summary[figure]

    def rank(value: float) -> float:
        return value if math.isfinite(value) else math.inf

    return {
        "figure": figure,
        "before": finite_or_none(old),
        "after": finite_or_none(new),
        "improved": rank(new) < rank(old),
    }
