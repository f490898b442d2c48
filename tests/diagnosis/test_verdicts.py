"""Oracle tests of the classification rules on hand-made curves, and of the thresholds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ensembles.diagnosis import ProblemScale, RunSet, Thresholds, diagnose_runs
from ensembles.errors import ConfigError
from ensembles.training.config import TrainConfig

LN2 = math.log(2)
SCALE = ProblemScale("classification", constant_metric=0.5, constant_loss=LN2)
EXACT = Thresholds(smoothing=1)  # no moving average, so figures can be computed by hand


def _runs(*curves: dict[str, list[float]]) -> RunSet:
    """A RunSet from per-run columns (train_loss, val_loss, train_metric, val_metric)."""
    rows = []
    for columns in curves:
        n = len(columns["train_loss"])
        rows.append(
            [
                {
                    "epoch": i + 1,
                    "learning_rate": 1e-3,
                    **{k: float(v[i]) for k, v in columns.items()},
                }
                for i in range(n)
            ]
        )
    return RunSet(
        TrainConfig(), list(range(len(rows))), rows, [len(r) for r in rows], 0.9, SCALE, 0.0
    )


def _steady(n: int = 20, val_metric: float = 0.95) -> dict[str, list[float]]:
    return {
        "train_loss": list(np.linspace(0.6, 0.1, n)),
        "val_loss": list(np.linspace(0.6, 0.15, n)),
        "train_metric": [0.96] * n,
        "val_metric": [val_metric] * n,
    }


def test_the_summary_reads_the_delivered_epoch_and_the_rules_a_moving_average() -> None:
    """The summary's train skill goes with the train accuracy beside it, the delivered
    epoch's; the learning rule compares the trailing average of ``smoothing`` epochs."""
    curve = _steady(10)
    curve["train_metric"] = [0.96] * 7 + [0.7, 0.8, 0.9]
    diagnosis = diagnose_runs(_runs(curve, curve), Thresholds(smoothing=3))
    assert diagnosis.summary["train_metric"] == pytest.approx(0.9)
    assert diagnosis.summary["train_skill"] == pytest.approx(SCALE.skill(0.9))
    smoothed = diagnosis.findings["learning"].evidence["smoothed_train_skill"]
    assert smoothed == pytest.approx(SCALE.skill(0.8))


def test_a_nan_training_loss_is_a_learning_problem() -> None:
    curve = _steady(5)
    curve["train_loss"][-1] = math.nan
    diagnosis = diagnose_runs(_runs(curve, _steady(5)), EXACT)
    assert diagnosis.verdict == "learning"
    assert diagnosis.findings["learning"].evidence["diverged_runs"] == 1
    assert "became NaN or infinite in 1 of 2 runs" in diagnosis.findings["learning"].reasons[0]


def test_a_training_loss_no_better_than_a_constant_is_a_learning_problem() -> None:
    curve = _steady()
    curve["train_loss"] = [0.9] * 20
    diagnosis = diagnose_runs(_runs(curve, curve), EXACT)
    assert diagnosis.verdict == "learning"
    assert diagnosis.findings["learning"].evidence["constant_loss"] == pytest.approx(LN2)
    assert "the training loss 0.9 is no better than a constant prediction's 0.693" in (
        diagnosis.findings["learning"].reasons
    )


def test_validation_loss_rising_while_training_falls_is_a_generalization_problem() -> None:
    curve = _steady()
    # Best validation loss 0.3 at epoch 5, then a straight rise to 1.0 at epoch 20.
    curve["val_loss"] = [0.6, 0.5, 0.4, 0.35, 0.3, *np.linspace(0.3, 1.0, 16)[1:]]
    diagnosis = diagnose_runs(_runs(curve, curve), EXACT)
    assert diagnosis.verdict == "generalization"
    evidence = diagnosis.findings["generalization"].evidence
    assert evidence["best_epoch"] == 5
    assert evidence["val_loss_rise"] == pytest.approx((1.0 - 0.3) / LN2)
    assert evidence["gap"] == pytest.approx(1.0 - 0.1)
    assert evidence["train_drop_since_best"] == pytest.approx((curve["train_loss"][4] - 0.1) / LN2)


def test_a_rise_within_the_curves_own_noise_is_not_a_generalization_problem() -> None:
    curve = _steady()
    # Zig-zag of +-0.1 around a flat 0.3: the last value is 0.2 above the lowest one.
    curve["val_loss"] = [0.3 + (0.1 if i % 2 else -0.1) for i in range(20)]
    diagnosis = diagnose_runs(_runs(curve, curve), EXACT)
    evidence = diagnosis.findings["generalization"].evidence
    assert evidence["val_loss_rise"] == pytest.approx(0.2 / LN2)
    assert evidence["val_loss_limit"] > evidence["val_loss_rise"]
    assert diagnosis.verdict != "generalization"


def test_late_jumps_of_the_validation_metric_are_a_prediction_problem() -> None:
    curve = _steady()
    curve["val_metric"] = [0.7 if i % 2 else 0.9 for i in range(20)]
    diagnosis = diagnose_runs(_runs(curve, curve), EXACT)
    assert diagnosis.verdict == "prediction"
    # Last 5 epochs (a quarter of 20): skills 0.8, -> differences +-0.8 in skill units.
    late = np.array([(m - 0.5) / 0.5 for m in curve["val_metric"][-5:]])
    expected = np.std(np.diff(late)) / math.sqrt(2)
    assert diagnosis.summary["late_fluctuation"] == pytest.approx(expected)


def test_spread_of_the_final_metric_across_runs_is_a_prediction_problem() -> None:
    runs = _runs(_steady(val_metric=0.8), _steady(val_metric=0.9), _steady(val_metric=0.85))
    diagnosis = diagnose_runs(runs, EXACT)
    assert diagnosis.verdict == "prediction"
    skills = [(m - 0.5) / 0.5 for m in (0.8, 0.9, 0.85)]
    assert diagnosis.summary["run_spread"] == pytest.approx(np.std(skills, ddof=1))
    assert diagnosis.findings["prediction"].evidence["ensemble_val_metric"] == 0.9


def test_steady_agreeing_runs_have_no_problem() -> None:
    diagnosis = diagnose_runs(_runs(_steady(), _steady(), _steady()), Thresholds())
    assert diagnosis.verdict == "none"
    assert diagnosis.text == "no problem found"
    assert not any(finding.found for finding in diagnosis.findings.values())


def test_learning_is_reported_before_the_other_problems() -> None:
    curve = _steady()
    curve["train_loss"] = [0.9] * 20
    curve["val_metric"] = [0.7 if i % 2 else 0.9 for i in range(20)]
    diagnosis = diagnose_runs(_runs(curve, curve), EXACT)
    assert diagnosis.verdict == "learning"
    assert diagnosis.findings["prediction"].found


def test_regression_skill_is_one_minus_rmse_over_std() -> None:
    scale = ProblemScale("regression", constant_metric=4.0, constant_loss=1.0)
    assert scale.skill(1.0) == pytest.approx(0.75)
    assert math.isnan(scale.skill(math.nan))


def test_every_bad_threshold_is_named_in_one_message() -> None:
    with pytest.raises(ConfigError) as caught:
        Thresholds(max_val_loss_rise=0, smoothing=0, late_fraction=1.5)
    assert str(caught.value) == (
        "--max-val-loss-rise must be a positive number, got 0; --late-fraction must be in "
        "(0, 1], got 1.5; --smoothing must be at least 1 epoch, got 0"
    )


def _with(runs: RunSet, **changes: object) -> RunSet:
    for name, value in changes.items():
        setattr(runs, name, value)
    return runs


def _budgets(runs: RunSet, stopped: str, max_epochs: int | None = None) -> RunSet:
    """Give every run the budget record training writes, with why it ``stopped``."""
    rule = "data" if stopped == "cap" else "epochs"
    runs.budgets = [
        {
            "max_epochs": max_epochs or len(curve),
            "patience": 4 if stopped == "patience" else None,
            "min_epochs": 0,
            "steps_per_epoch": 10,
            "rule": rule,
            "epochs_run": len(curve),
            "best_epoch": len(curve),
            "steps_run": 10 * len(curve),
            "stopped": stopped,
        }
        for curve in runs.curves
    ]
    return runs


def test_a_flat_training_loss_at_low_skill_is_a_stuck_learning_problem() -> None:
    curve = _steady()
    curve["train_loss"] = [0.6] * 20  # below the constant 0.693, but it no longer falls
    curve["train_metric"] = [0.6] * 20  # training skill 0.2
    diagnosis = diagnose_runs(_runs(curve, curve), EXACT)
    assert diagnosis.verdict == "learning"
    evidence = diagnosis.findings["learning"].evidence
    assert evidence["late_gain"] == pytest.approx(0.0, abs=1e-9)
    assert evidence["smoothed_train_skill"] == pytest.approx(0.2)
    assert diagnosis.findings["learning"].reasons == [
        "the training loss is stuck: at its pace over the last 5 epochs it would fall only 0 "
        "constant-loss units in as many epochs again (plateau below 0.01) while training skill "
        "is 0.2 (below 0.4)"
    ]


def test_a_loss_still_falling_when_the_budget_ran_out_is_slow_at_any_skill() -> None:
    curve = _steady()  # train loss falls 0.5 / 19 per epoch throughout; val loss too
    # the slope times the 20 epochs (0.53) is more than the 0.1 left above a cross-entropy's
    # floor of 0: the gain is what is left, in constant-loss units
    gain = min(0.5 / 19 * 20, 0.1) / LN2
    low = dict(curve, train_metric=[0.6] * 20)
    for columns, skill in ((low, 0.2), (curve, 0.92)):
        diagnosis = diagnose_runs(_budgets(_runs(columns, columns), "epochs"), EXACT)
        assert diagnosis.verdict == "learning"
        finding = diagnosis.findings["learning"]
        assert finding.evidence["late_gain"] == pytest.approx(gain)
        assert finding.evidence["used_whole_budget"] and finding.evidence["still_improving"]
        assert finding.reasons == [
            "slow: the budget is too short: every run used all of its 20 epochs (--epochs 20) "
            f"and at its pace over the last 5 epochs the training loss would fall another "
            f"{gain:.3g} constant-loss units in as many epochs again (limit 0.05; a trend in 2 "
            "of 2 runs), with the validation loss still at its best late in the run; training "
            f"skill is {skill:.3g}"
        ]


def test_a_run_that_reached_the_budget_rule_s_cap_still_falling_is_slow() -> None:
    curve = _steady()
    diagnosis = diagnose_runs(_budgets(_runs(curve, curve), "cap"), EXACT)
    assert diagnosis.verdict == "learning"
    assert diagnosis.findings["learning"].evidence["budget_rule"] == "data"
    assert (
        diagnosis.findings["learning"]
        .reasons[0]
        .startswith(
            "slow: the budget is too short: every run used all of the budget rule's cap of 20 "
            "epochs (200 optimizer steps)"
        )
    )


def test_a_run_early_stopping_ended_is_not_under_training_however_fast_it_fell() -> None:
    curve = _steady()
    runs = _budgets(_runs(curve, curve), "patience", max_epochs=100)
    diagnosis = diagnose_runs(runs, EXACT)
    assert diagnosis.verdict == "none"
    finding = diagnosis.findings["learning"]
    assert not finding.found and not finding.evidence["used_whole_budget"]
    assert finding.evidence["stopped"] == {"patience": 2}
    assert finding.notes[0].startswith("the training loss was still falling when the runs ended")
    assert finding.notes[0].endswith(
        "but early stopping ended 2 of 2 runs (stopped: patience in 2): the validation rows, "
        "not the budget, ended training, so this is not under-training"
    )


def test_a_still_falling_loss_with_the_validation_best_long_before_is_not_under_training() -> None:
    curve = _steady()
    # Validation loss best at epoch 5, then flat just above it: more epochs would not help.
    curve["val_loss"] = [0.6, 0.5, 0.4, 0.35, 0.3] + [0.32] * 15
    diagnosis = diagnose_runs(_budgets(_runs(curve, curve), "epochs"), EXACT)
    finding = diagnosis.findings["learning"]
    assert not finding.found and not finding.evidence["val_best_in_late"]
    assert "the validation loss was best at epoch 5, before the last 5 epochs" in finding.notes[0]


def test_runs_without_budget_records_never_count_as_under_trained() -> None:
    finding = diagnose_runs(_runs(_steady(), _steady()), EXACT).findings["learning"]
    assert not finding.found and not finding.notes
    assert finding.evidence["used_whole_budget"] is False


def test_the_run_spread_limit_rises_to_the_sampling_error_of_a_small_validation_set() -> None:
    # Two runs one validation row apart out of 40: skills 0.55 and 0.6.
    runs = _runs(_steady(val_metric=0.775), _steady(val_metric=0.8))
    small = diagnose_runs(_with(runs, n_val=40), EXACT).findings["prediction"]
    error = math.sqrt(0.7875 * 0.2125 / 40) / 0.5
    assert small.evidence["val_sampling_error"] == pytest.approx(error)
    assert small.evidence["run_spread_limit"] == pytest.approx(2 * error)
    assert not small.found
    assert small.notes[0].startswith("run-spread limit raised from 0.03 to 0.259: 2 x the")
    assert "on 40 rows" in small.notes[0]
    # The same spread on 40,000 rows is resolved: the configured limit stands and fires.
    large = diagnose_runs(_with(runs, n_val=40_000), EXACT).findings["prediction"]
    assert large.evidence["run_spread_limit"] == 0.03 and large.found and not large.notes


def test_the_rise_early_stopping_ran_past_is_read_from_the_whole_curve() -> None:
    curve = _steady()
    curve["val_loss"] = [0.6, 0.5, 0.4, 0.35, 0.3, 0.45, 0.6, 0.75, 0.9]
    curve = {key: values[:9] for key, values in curve.items()}
    runs = _with(_runs(curve, curve), delivered_epochs=[5, 5])  # the restored best epoch
    diagnosis = diagnose_runs(runs, EXACT)
    assert diagnosis.verdict == "generalization"
    evidence = diagnosis.findings["generalization"].evidence
    assert evidence["best_epoch"] == 5
    assert evidence["val_loss_rise"] == pytest.approx((0.9 - 0.3) / LN2)
    assert diagnosis.summary["val_loss"] == pytest.approx(0.3)  # delivered figures stay put


def test_test_split_figures_are_means_over_runs() -> None:
    runs = _with(
        _runs(_steady(), _steady()),
        test=[{"test_loss": 0.2, "test_metric": 0.9}, {"test_loss": 0.4, "test_metric": 0.8}],
        ensemble_test_metric=0.9,
    )
    summary = diagnose_runs(runs, EXACT).summary
    assert summary["test_loss"] == pytest.approx(0.3)
    assert summary["test_skill"] == pytest.approx((0.85 - 0.5) / 0.5)
    assert summary["ensemble_test_metric"] == 0.9
    assert math.isnan(diagnose_runs(_runs(_steady(), _steady()), EXACT).summary["test_loss"])


def test_a_late_gain_never_goes_below_the_loss_s_floor() -> None:
    """A straight line through a falling cross-entropy would cross zero; a Gaussian NLL has
    no floor, so its line is taken as it is."""
    from ensembles.diagnosis._verdicts import _late_gain

    late = np.array([0.05, 0.04, 0.03, 0.02])  # falls 0.01 an epoch, 0.02 left above 0
    assert _late_gain(late, 20, 2.0, floor=0.0)["late_gain"] == pytest.approx(0.02)
    assert _late_gain(late, 20, 2.0, floor=None)["late_gain"] == pytest.approx(0.2)
