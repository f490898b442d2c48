"""Recommendations per verdict, from the framework's lists, and the flags that reproduce a setup."""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from typing import Any

from ensembles.diagnosis._verdicts import Diagnosis, Thresholds
from ensembles.training.budget import budget_from_data
from ensembles.training.config import TrainConfig
from ensembles.training.learning_rate import RangeTestResult


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
        Training settings that apply it (empty when it is not a setting, e.g. an ensemble);
        None sets a setting back to automatic (``epochs``: the budget rule; ``patience``:
        the rule's own; ``learning_rate``: the range test).
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

    @property
    def change(self) -> str:
        """The overrides as ``name=value`` pairs, None read as ``auto``."""
        return ", ".join(
            f"{key}={'auto' if value is None else value}" for key, value in self.overrides.items()
        )


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
    if evidence.get("still_improving"):
        found.append(_training_length(evidence, config))
    rate = evidence.get("learning_rate") or config.learning_rate  # what the runs used
    if (
        range_test is not None
        and rate is not None
        and not rate / 2 <= range_test.suggested <= rate * 2
    ):
        direction = "lower" if range_test.suggested < rate else "higher"
        found.append(
            Recommendation(
                "learning rate",
                f"the range test's loss was lowest near {range_test.suggested * 10:.2g}; a "
                f"{direction} rate of {range_test.suggested:.2g} (the runs used {rate:.3g}) "
                "should learn steadily",
                {"learning_rate": range_test.suggested},
            )
        )
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
        # one step an epoch: the batch holds every training row, and a quarter of it may
        # still do; the smallest batch suggested surely takes more steps
        one_step = evidence.get("steps_per_epoch") == 1
        found.append(
            Recommendation(
                "batch size",
                "smaller batches take more (noisier) steps per epoch",
                {"batch_size": 16 if one_step else max(16, config.batch_size // 4)},
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


def _training_length(evidence: dict[str, Any], config: TrainConfig) -> Recommendation:
    """Under-training: hand the length to the budget rule, or double the epochs allowed
    when they were the rule's cap or more (the rule would allow fewer)."""
    steps = evidence.get("steps_per_epoch")
    rule_cap = budget_from_data(int(steps)).max_epochs if steps else None
    explicit = evidence.get("budget_rule") == "epochs"
    if evidence.get("budget_rule") == "data" or (
        explicit and rule_cap is not None and int(evidence["max_epochs"]) >= rule_cap
    ):
        cap = int(evidence["max_epochs"])
        overrides: dict[str, Any] = {"epochs": 2 * cap}
        if config.patience is None and evidence.get("budget_patience") is not None:
            overrides["patience"] = int(evidence["budget_patience"])  # keep stopping early
        reached = f"--epochs {cap}" if explicit else f"the budget rule's cap of {cap} epochs"
        return Recommendation(
            "training length",
            f"train longer: the runs reached {reached} with the "
            f"validation loss still improving; allow {2 * cap}"
            + (
                f", still stopping after {overrides['patience']} epochs without improvement"
                if "patience" in overrides
                else ""
            ),
            overrides,
        )
    return Recommendation(
        "training length",
        "train longer: let the budget rule decide (train until the validation loss stops "
        f"improving) instead of --epochs {evidence.get('max_epochs', config.epochs)}",
        {"epochs": None, "patience": None},
    )


def _generalization(diagnosis: Diagnosis, config: TrainConfig) -> list[Recommendation]:
    evidence = diagnosis.findings["generalization"].evidence
    best = int(evidence["best_epoch"])
    found: list[Recommendation] = []
    # The budget rule (epochs None) already stops early and keeps the best weights.
    if config.patience is None and config.epochs is not None:
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
            f"ensemble ({strategy})",
            reason,
            {},
            _command(train_command, config, strategy, members, diagnosis.summary),
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
                _command(train_command, config, alternative, members, diagnosis.summary),
            )
        )
    return found


def _command(
    prefix: list[str] | None,
    config: TrainConfig,
    strategy: str,
    members: int,
    summary: dict[str, float],
) -> str | None:
    if prefix is None:
        return None
    if strategy == "horizontal":  # checkpoints from the second half of the run
        # Under the budget rule the checkpoints end at the best epoch the run reaches.
        epochs = config.epochs if config.epochs is not None else summary.get("best_epoch")
        if epochs is not None and math.isfinite(epochs):
            members = max(2, min(members, int(epochs) // 2))
    # The diagnosed setup's own settings: train.py's default choice of a stronger
    # regularization on small data would train members the diagnosis never saw.
    words = [*prefix, *train_flags(config), "--regularization", "off"]
    words += ["--strategy", strategy, "--members", str(members)]
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
        else:
            words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return words
