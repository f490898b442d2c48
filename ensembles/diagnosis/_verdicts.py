"""Classify a set of runs as a learning, generalization or prediction problem, or none."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import numpy as np

from ensembles.diagnosis._curves import RunSet, finite_or_none
from ensembles.errors import ConfigError

Problem = Literal["learning", "generalization", "prediction"]
Verdict = Literal["learning", "generalization", "prediction", "none"]
PROBLEMS: tuple[Problem, ...] = ("learning", "generalization", "prediction")
VERDICT_TEXT: dict[str, str] = {
    "learning": "learning problem",
    "generalization": "generalization problem",
    "prediction": "prediction problem",
    "none": "no problem found",
}


@dataclass(frozen=True)
class Thresholds:
    """The documented limits of every rule (see ``docs/diagnosis.md``).

    Skill is the share of the way from a constant predictor (0) to a perfect one (1):
    ``(accuracy - majority) / (1 - majority)`` or ``1 - rmse / std(y)``. Loss changes are in
    units of the constant predictor's loss (class-prior entropy, 1 for MSE, 1.419 for
    Gaussian NLL), so one threshold fits every dataset.

    Attributes
    ----------
    min_train_skill : float
        Learning: the delivered training skill (mean over runs) must reach this.
    plateau_skill : float
        Learning: below this training skill a training loss that has stopped falling
        (plateau) is a learning problem ("stuck").
    min_late_gain : float
        Learning: the late gain is how much further the training loss would fall, in
        constant-loss units, in as many epochs again at its pace over the late epochs
        (least-squares slope times the epochs run). Below this (in absolute value) it is a
        plateau.
    train_longer_gain : float
        Learning: a late gain of at least this, with a slope at least ``noise_factor`` times
        its standard error in at least half of the runs, is a training loss still falling at
        the end. It is under-training ("slow: the budget is too short"), at any training
        skill, when every run used its whole budget (stopped at its ``--epochs`` or at the
        budget rule's cap, not by early stopping or divergence) and the smoothed validation
        loss was still at its best in the late epochs of at least half of the runs;
        otherwise it is a note (the validation rows ended training, or the validation loss
        was best earlier: more epochs would not help it).
    max_val_loss_rise : float
        Generalization: rise of the smoothed validation loss from its best epoch to the last
        recorded epoch (before early stopping restores the best weights), in constant-loss
        units, while the training loss still falls.
    max_val_skill_drop : float
        Generalization: the same for validation skill (best minus last recorded).
    noise_factor : float
        Generalization: a rise or drop counts only when it is also this many times the
        epoch-to-epoch noise of the same curve, so fluctuation is not taken for a trend.
    max_run_spread : float
        Prediction: standard deviation of the delivered validation skill across runs.
    sampling_factor : float
        Prediction: the run-spread limit is raised to this many times the sampling error of
        the validation metric (in skill units) when that is larger, so that a difference of
        one or two validation rows is not read as run-to-run variance.
    max_late_fluctuation : float
        Prediction: epoch-to-epoch fluctuation of validation skill over the last
        ``late_fraction`` of each run (std of differences over sqrt 2), mean over runs.
    smoothing : int
        Epochs of the trailing moving average applied before comparing epochs.
    late_fraction : float
        Share of the epochs (at least 3) that counts as "late".
    """

    min_train_skill: float = 0.05
    plateau_skill: float = 0.4
    min_late_gain: float = 0.01
    train_longer_gain: float = 0.05
    max_val_loss_rise: float = 0.1
    max_val_skill_drop: float = 0.05
    noise_factor: float = 2.0
    max_run_spread: float = 0.03
    sampling_factor: float = 2.0
    max_late_fluctuation: float = 0.04
    smoothing: int = 3
    late_fraction: float = 0.25

    def __post_init__(self) -> None:
        problems = []
        for name in (
            "min_late_gain",
            "train_longer_gain",
            "max_val_loss_rise",
            "max_val_skill_drop",
            "max_run_spread",
            "max_late_fluctuation",
            "noise_factor",
        ):
            value = getattr(self, name)
            if not 0 < value < math.inf:
                problems.append(
                    f"--{name.replace('_', '-')} must be a positive number, got {value}"
                )
        if not 0 <= self.sampling_factor < math.inf:
            problems.append(f"--sampling-factor must be a number >= 0, got {self.sampling_factor}")
        for name in ("min_train_skill", "plateau_skill"):
            value = getattr(self, name)
            if not 0 < value < 1:
                problems.append(f"--{name.replace('_', '-')} must be between 0 and 1, got {value}")
        if not 0 < self.late_fraction <= 1:
            problems.append(f"--late-fraction must be in (0, 1], got {self.late_fraction}")
        if int(self.smoothing) < 1:
            problems.append(f"--smoothing must be at least 1 epoch, got {self.smoothing}")
        if not self.min_late_gain < self.train_longer_gain:
            problems.append(
                f"--min-late-gain {self.min_late_gain} must be below --train-longer-gain "
                f"{self.train_longer_gain}"
            )
        if problems:
            raise ConfigError("; ".join(problems))

    def to_dict(self) -> dict[str, float]:
        """JSON-safe thresholds."""
        return asdict(self)

    @classmethod
    def names(cls) -> list[str]:
        """Field names, in declaration order."""
        return [item.name for item in fields(cls)]


@dataclass
class Finding:
    """The outcome of one rule: whether it fired, why, and the numbers behind it.

    Attributes
    ----------
    problem : {"learning", "generalization", "prediction"}
    found : bool
    reasons : list of str
        One sentence per condition that fired, with its number and threshold.
    evidence : dict
        Every number the rule looked at, fired or not.
    notes : list of str
        Sentences that do not make a verdict: a limit that was raised and why, or advice
        such as "train longer".
    """

    problem: Problem
    found: bool
    reasons: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe finding."""
        return {
            "problem": self.problem,
            "found": self.found,
            "reasons": self.reasons,
            "notes": self.notes,
            "evidence": {key: finite_or_none(value) for key, value in self.evidence.items()},
        }


@dataclass
class Diagnosis:
    """The verdict on one setup: the first problem found, in the framework's order.

    Attributes
    ----------
    verdict : {"learning", "generalization", "prediction", "none"}
    findings : dict of Finding, keyed by problem
    summary : dict of float
        Headline figures, means over runs at the delivered epoch: train_loss, val_loss,
        train_metric, val_metric, train_skill, val_skill, gap (val minus train loss),
        best_epoch, run_spread, late_fluctuation, ensemble_val_metric; and on the held-out
        test rows (NaN without them): test_loss, test_metric, test_skill,
        ensemble_test_metric.
    """

    verdict: Verdict
    findings: dict[str, Finding]
    summary: dict[str, float]

    @property
    def text(self) -> str:
        """The verdict in words, e.g. ``generalization problem``."""
        return VERDICT_TEXT[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe diagnosis."""
        return {
            "verdict": self.verdict,
            "verdict_text": self.text,
            "summary": {key: finite_or_none(value) for key, value in self.summary.items()},
            "findings": {name: finding.to_dict() for name, finding in self.findings.items()},
        }


def diagnose_runs(runs: RunSet, thresholds: Thresholds) -> Diagnosis:
    """Apply the three rules to ``runs`` and pick the verdict.

    Learning comes first, then generalization, then prediction: a network that cannot learn
    its training rows says nothing reliable about overfitting, and one that overfits should be
    regularized before its run-to-run variance is judged.
    """
    stats = [
        _run_statistics(curve, epoch, runs, thresholds)
        for curve, epoch in zip(runs.curves, runs.delivered_epochs, strict=True)
    ]
    findings = {
        "learning": _learning(stats, runs, thresholds),
        "generalization": _generalization(stats, thresholds),
        "prediction": _prediction(stats, runs, thresholds),
    }
    verdict: Verdict = next((name for name in PROBLEMS if findings[name].found), "none")
    summary = {
        key: _mean([s[key] for s in stats])
        for key in (
            "train_loss",
            "val_loss",
            "train_metric",
            "val_metric",
            "train_skill",
            "val_skill",
            "gap",
        )
    }
    summary["best_epoch"] = float(np.median([s["best_epoch"] for s in stats]))
    summary["run_spread"] = findings["prediction"].evidence["run_spread"]
    summary["late_fluctuation"] = findings["prediction"].evidence["late_fluctuation"]
    summary["ensemble_val_metric"] = runs.ensemble_val_metric
    summary["test_loss"] = _mean([row["test_loss"] for row in runs.test])
    summary["test_metric"] = _mean([row["test_metric"] for row in runs.test])
    summary["test_skill"] = runs.scale.skill(summary["test_metric"])
    summary["ensemble_test_metric"] = runs.ensemble_test_metric
    return Diagnosis(verdict, findings, summary)


def _run_statistics(
    curve: list[dict[str, float]], delivered: int, runs: RunSet, thresholds: Thresholds
) -> dict[str, float]:
    """Figures of one run from smoothed curves.

    What the run delivers is read at the delivered epoch; trends (best validation epoch, the
    rise after it, the late training-loss drop) on the whole recorded curve, including the
    epochs early stopping ran past the best one before restoring it.
    """
    scale = runs.scale
    width = int(thresholds.smoothing)
    rows = curve[: max(delivered, 1)]
    train_loss = _smooth([row["train_loss"] for row in curve], width)
    val_loss = _smooth([row["val_loss"] for row in curve], width)
    val_skill = _smooth([scale.skill(row["val_metric"]) for row in curve], width)
    last = rows[-1]
    finite = np.isfinite(val_loss)
    best = int(np.argmin(np.where(finite, val_loss, np.inf))) if finite.any() else len(curve) - 1
    n_late = min(len(curve), max(3, math.ceil(thresholds.late_fraction * len(curve))))
    late = np.array([scale.skill(row["val_metric"]) for row in curve[-n_late:]])
    late_loss = np.array([row["val_loss"] for row in curve[-n_late:]]) / scale.constant_loss
    late_train = np.array([row["train_loss"] for row in curve[-n_late:]]) / scale.constant_loss
    skill_best = np.nanmax(val_skill) if np.isfinite(val_skill).any() else math.nan
    return {
        "diverged": float(not all(math.isfinite(row["train_loss"]) for row in curve)),
        "first_train_loss": curve[0]["train_loss"],
        "smoothed_train_loss": float(_smooth([row["train_loss"] for row in rows], width)[-1]),
        "train_loss": last["train_loss"],
        "val_loss": last["val_loss"],
        "train_metric": last["train_metric"],
        "val_metric": last["val_metric"],
        "train_skill": scale.skill(last["train_metric"]),
        "smoothed_train_skill": scale.skill(
            float(np.mean([row["train_metric"] for row in rows[-width:]]))
        ),
        "val_skill": scale.skill(last["val_metric"]),
        "gap": last["val_loss"] - last["train_loss"],
        "best_epoch": float(best + 1),
        "epochs_run": float(len(curve)),
        "n_late": float(n_late),
        "val_loss_rise": float(val_loss[-1] - val_loss[best]) / scale.constant_loss,
        "val_skill_drop": float(skill_best - val_skill[-1]),
        "train_drop_since_best": float(train_loss[best] - train_loss[-1]) / scale.constant_loss,
        **_late_gain(late_train, len(curve), thresholds.noise_factor, _floor(runs)),
        "val_best_in_late": float(best >= len(curve) - n_late),
        "late_fluctuation": _noise(late),
        "val_loss_noise": _noise(late_loss),
    }


def _learning(stats: list[dict[str, float]], runs: RunSet, thresholds: Thresholds) -> Finding:
    diverged = int(sum(s["diverged"] for s in stats))
    constant = runs.scale.constant_loss
    train_skill = _mean([s["smoothed_train_skill"] for s in stats])
    first, final = (
        _mean([s["first_train_loss"] for s in stats]),
        _mean([s["smoothed_train_loss"] for s in stats]),
    )
    gain = _mean([s["late_gain"] for s in stats])
    n_late = int(min(s["n_late"] for s in stats))
    budget = _budget_use(runs)
    trend_runs = int(sum(s["late_trend"] for s in stats))
    trending = trend_runs >= len(stats) / 2
    low_skill = train_skill < thresholds.plateau_skill
    plateau = abs(gain) < thresholds.min_late_gain
    falling = not diverged and trending and gain >= thresholds.train_longer_gain
    val_still = sum(s["val_best_in_late"] for s in stats) >= len(stats) / 2
    best_epoch = float(np.median([s["best_epoch"] for s in stats]))
    still_improving = falling and budget["used_whole_budget"] and val_still
    reasons, notes = [], []
    if diverged:
        reasons.append(
            f"the training loss became NaN or infinite in {diverged} of {len(stats)} runs"
        )
    if not train_skill >= thresholds.min_train_skill:
        reasons.append(
            f"training skill {_fmt(train_skill)} is below {thresholds.min_train_skill} "
            "(barely better than a constant prediction)"
        )
    if math.isfinite(final) and final >= constant:
        reasons.append(
            f"the training loss {_fmt(final)} is no better than a constant prediction's "
            f"{_fmt(constant)}"
        )
    elif math.isfinite(final) and final > first:
        reasons.append(
            f"the training loss got worse: {_fmt(first)} in the first epoch, {_fmt(final)} at "
            "the end"
        )
    pace = (
        f"at its pace over the last {n_late} epochs the training loss would fall another "
        f"{_fmt(gain)} constant-loss units in as many epochs again (limit "
        f"{thresholds.train_longer_gain}; a trend in {trend_runs} of {len(stats)} runs)"
    )
    if not diverged and low_skill and plateau:
        reasons.append(
            f"the training loss is stuck: at its pace over the last {n_late} epochs it would "
            f"fall only {_fmt(gain)} constant-loss units in as many epochs again (plateau below "
            f"{thresholds.min_late_gain}) while training skill is {_fmt(train_skill)} (below "
            f"{thresholds.plateau_skill})"
        )
    if still_improving:
        reasons.append(
            f"slow: the budget is too short: every run used all of {budget['what']} and {pace}, "
            f"with the validation loss still at its best late in the run; training skill is "
            f"{_fmt(train_skill)}"
        )
    elif falling and runs.budgets and not budget["used_whole_budget"]:
        notes.append(
            f"the training loss was still falling when the runs ended: {pace}; but "
            f"{budget['why_not']}: the validation rows, not the budget, ended training, so this "
            "is not under-training"
        )
    elif falling and budget["used_whole_budget"]:
        notes.append(
            f"the training loss was still falling at the end: {pace}; but the validation loss "
            f"was best at epoch {best_epoch:g}, before the last {n_late} epochs: training longer "
            "would fit the training rows, not the validation rows, so this is not under-training"
        )
    evidence = {
        "diverged_runs": diverged,
        "smoothed_train_skill": train_skill,
        "first_train_loss": first,
        "final_train_loss": final,
        "constant_loss": constant,
        "train_metric": _mean([s["train_metric"] for s in stats]),
        "late_gain": gain,
        "late_epochs": n_late,
        "late_trend_runs": trend_runs,
        "val_best_in_late": val_still,
        "used_whole_budget": budget["used_whole_budget"],
        "budget_rule": budget["rule"],
        "max_epochs": budget["max_epochs"],
        "steps_per_epoch": budget["steps_per_epoch"],
        "budget_patience": budget["patience"],
        "stopped": budget["stopped"],
        "learning_rate": runs.config.learning_rate,
        "still_improving": still_improving,
        "min_train_skill": thresholds.min_train_skill,
        "plateau_skill": thresholds.plateau_skill,
        "min_late_gain": thresholds.min_late_gain,
        "train_longer_gain": thresholds.train_longer_gain,
    }
    return Finding("learning", bool(reasons), reasons, evidence, notes)


def _budget_use(runs: RunSet) -> dict[str, Any]:
    """What the runs' budgets allowed and whether every run used all of it.

    A run used its whole budget when it stopped at its explicit ``--epochs`` or at the budget
    rule's cap; one stopped by early stopping (``patience``) or divergence did not.
    """
    budgets = runs.budgets
    stopped = Counter(budget["stopped"] for budget in budgets)
    used = bool(budgets) and all(b["stopped"] in ("epochs", "cap") for b in budgets)
    rules = {b["rule"] for b in budgets}
    rule = rules.pop() if len(rules) == 1 else None
    max_epochs = max((b["max_epochs"] for b in budgets), default=None)
    patience = budgets[0]["patience"] if budgets else None
    if rule == "data":
        steps = max_epochs * budgets[0]["steps_per_epoch"]
        what = f"the budget rule's cap of {max_epochs} epochs ({steps} optimizer steps)"
    else:
        what = f"its {max_epochs} epochs (--epochs {max_epochs})"
    counts = ", ".join(f"{name} in {count}" for name, count in sorted(stopped.items()))
    why_not = (
        f"early stopping ended {stopped.get('patience', 0)} of {len(budgets)} runs "
        f"(stopped: {counts})"
    )
    return {
        "used_whole_budget": used,
        "rule": rule,
        "max_epochs": max_epochs,
        "steps_per_epoch": budgets[0]["steps_per_epoch"] if budgets else None,
        "patience": patience,
        "stopped": stopped,
        "what": what,
        "why_not": why_not,
    }


def _generalization(stats: list[dict[str, float]], thresholds: Thresholds) -> Finding:
    rise = _mean([s["val_loss_rise"] for s in stats])
    drop = _mean([s["val_skill_drop"] for s in stats])
    still_learning = _mean([s["train_drop_since_best"] for s in stats])
    best_epoch = float(np.median([s["best_epoch"] for s in stats]))
    factor = thresholds.noise_factor
    loss_limit = max(thresholds.max_val_loss_rise, factor * _nanmean(stats, "val_loss_noise"))
    skill_limit = max(thresholds.max_val_skill_drop, factor * _nanmean(stats, "late_fluctuation"))
    reasons = []
    if still_learning > 0:
        if rise >= loss_limit:
            reasons.append(
                f"validation loss rose by {_fmt(rise)} constant-loss units after its best epoch "
                f"{best_epoch:g} while the training loss kept falling (limit {_fmt(loss_limit)})"
            )
        if drop >= skill_limit:
            reasons.append(
                f"validation skill fell by {_fmt(drop)} after its best epoch while the training "
                f"loss kept falling (limit {_fmt(skill_limit)})"
            )
    evidence = {
        "best_epoch": best_epoch,
        "val_loss_rise": rise,
        "val_skill_drop": drop,
        "train_drop_since_best": still_learning,
        "gap": _mean([s["gap"] for s in stats]),
        "val_loss": _mean([s["val_loss"] for s in stats]),
        "train_loss": _mean([s["train_loss"] for s in stats]),
        "val_loss_limit": loss_limit,
        "val_skill_limit": skill_limit,
    }
    return Finding("generalization", bool(reasons), reasons, evidence)


def _prediction(stats: list[dict[str, float]], runs: RunSet, thresholds: Thresholds) -> Finding:
    skills = np.array([s["val_skill"] for s in stats])
    metrics = np.array([s["val_metric"] for s in stats])
    spread = float(np.std(skills, ddof=1)) if len(skills) > 1 else 0.0
    fluctuation = _nanmean(stats, "late_fluctuation")
    sampling_error = _sampling_error(float(np.mean(metrics)), runs)
    raised = thresholds.sampling_factor * sampling_error
    limit = (
        max(thresholds.max_run_spread, raised)
        if math.isfinite(raised)
        else thresholds.max_run_spread
    )
    reasons, notes = [], []
    if limit > thresholds.max_run_spread:
        what = "accuracy" if runs.scale.task == "classification" else "RMSE"
        notes.append(
            f"run-spread limit raised from {thresholds.max_run_spread} to {_fmt(limit)}: "
            f"{thresholds.sampling_factor:g} x the sampling error {_fmt(sampling_error)} (skill "
            f"units) of the validation {what} on {runs.n_val} rows, finer than which a spread "
            "cannot be told from which rows happen to be in the validation split"
        )
    if spread >= limit:
        reasons.append(
            f"validation skill varies across {len(stats)} runs: std {_fmt(spread)} "
            f"(limit {_fmt(limit)}); validation metric "
            f"{_fmt(float(np.mean(metrics)))} ± {_fmt(float(np.std(metrics, ddof=1)))}"
        )
    if fluctuation >= thresholds.max_late_fluctuation:
        reasons.append(
            f"validation skill jumps from epoch to epoch late in training: {_fmt(fluctuation)} "
            f"(limit {thresholds.max_late_fluctuation})"
        )
    evidence = {
        "run_spread": spread,
        "run_spread_limit": limit,
        "val_sampling_error": sampling_error,
        "n_val": runs.n_val,
        "late_fluctuation": fluctuation,
        "val_metric_mean": float(np.mean(metrics)),
        "val_metric_std": float(np.std(metrics, ddof=1)) if len(metrics) > 1 else 0.0,
        "val_metric_min": float(np.min(metrics)),
        "val_metric_max": float(np.max(metrics)),
        "ensemble_val_metric": runs.ensemble_val_metric,
        "max_run_spread": thresholds.max_run_spread,
        "sampling_factor": thresholds.sampling_factor,
        "max_late_fluctuation": thresholds.max_late_fluctuation,
    }
    return Finding("prediction", bool(reasons), reasons, evidence, notes)


def _sampling_error(metric: float, runs: RunSet) -> float:
    """Standard error of the validation metric on ``runs.n_val`` rows, in skill units.

    Accuracy: ``sqrt(p (1 - p) / n)``; RMSE: ``rmse / sqrt(2 n)`` (Gaussian residuals). NaN
    when the number of rows is unknown or the metric is not finite.
    """
    if runs.n_val < 1 or not math.isfinite(metric):
        return math.nan
    scale = runs.scale
    if scale.task == "classification":
        p = min(max(metric, 0.0), 1.0)
        return math.sqrt(p * (1 - p) / runs.n_val) / max(1.0 - scale.constant_metric, 1e-12)
    return metric / math.sqrt(2 * runs.n_val) / max(scale.constant_metric, 1e-12)


def _floor(runs: RunSet) -> float | None:
    """The lowest training loss the runs could reach: 0 for cross-entropy and squared
    error; None for a Gaussian NLL, which has no floor."""
    gaussian = runs.scale.task == "regression" and runs.config.gaussian_head
    return None if gaussian else 0.0


def _late_gain(
    late: np.ndarray, epochs_run: int, noise_factor: float, floor: float | None = None
) -> dict[str, float]:
    """How much further a late curve (constant-loss units) falls in ``epochs_run`` more epochs.

    ``late_gain`` is minus the least-squares slope times ``epochs_run``, at most the way
    down to ``floor`` from the curve's last value (a loss cannot fall below its floor, where
    a straight line would); ``late_trend`` is 1 when that slope is negative and at least
    ``noise_factor`` times its standard error.
    """
    if len(late) < 3 or not np.isfinite(late).all():
        return {"late_gain": math.nan, "late_trend": 0.0}
    x = np.arange(len(late), dtype=float)
    slope, intercept = np.polyfit(x, late, 1)
    residual = late - (slope * x + intercept)
    error = math.sqrt(
        float(residual @ residual) / (len(late) - 2) / float(((x - x.mean()) ** 2).sum())
    )
    trend = slope < 0 and -slope >= noise_factor * error
    gain = float(-slope * epochs_run)
    if floor is not None:
        gain = min(gain, max(float(late[-1]) - floor, 0.0))
    return {"late_gain": gain, "late_trend": float(trend)}


def _noise(values: np.ndarray) -> float:
    """Epoch-to-epoch noise of a curve, blind to its trend: std of differences / sqrt(2)."""
    if len(values) < 3 or not np.isfinite(values).all():
        return math.nan
    return float(np.std(np.diff(values)) / math.sqrt(2))


def _smooth(values: list[float], width: int) -> np.ndarray:
    """Trailing moving average (shorter at the start); NaN and infinity propagate."""
    array = np.asarray(values, dtype=float)
    cumulative = np.concatenate([[0.0], np.cumsum(array)])
    index = np.arange(1, len(array) + 1)
    start = np.maximum(index - width, 0)
    with np.errstate(invalid="ignore"):
        return (cumulative[index] - cumulative[start]) / (index - start)


def _nanmean(stats: list[dict[str, float]], key: str) -> float:
    """Mean of ``key`` over the runs where it is defined (0 when it never is)."""
    values = np.array([s[key] for s in stats], dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else 0.0


def _mean(values: list[float]) -> float:
    """Mean, or NaN when any value is not finite or there are none."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()) if len(array) and np.isfinite(array).all() else math.nan


def _fmt(value: float) -> str:
    """Three significant digits; floating-point dust such as 1e-15 reads as 0."""
    return f"{0.0 if abs(value) < 1e-9 else value:.3g}"
