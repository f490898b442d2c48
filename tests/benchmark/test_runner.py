"""The benchmark loop's pieces that need no training: time split, defaults, request checks."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import pytest

from ensembles.benchmark.runner import BenchmarkRequest, check_request, training_time
from ensembles.data import MAX_SEED
from ensembles.errors import ConfigError
from ensembles.training.pipeline import TrainRequest

TRAIN = TrainRequest(progress=False)


def finished(seconds: float, member_seconds: list[float]) -> SimpleNamespace:
    """A finished run as ``training_time`` reads it: its wall clock and its manifest's
    members' training seconds (a refit's included)."""
    members = [SimpleNamespace(val_metrics={"train_seconds": s}) for s in member_seconds]
    return SimpleNamespace(seconds=seconds, manifest=SimpleNamespace(members=members))


def test_training_time_splits_member_training_from_the_rest() -> None:
    report = finished(10.0, [2, 3, 2])
    assert training_time(report) == {
        "wall_seconds": 10.0,
        "member_seconds": 7.0,
        "assemble_seconds": 3.0,
    }


def test_parallel_members_leave_the_rest_unknown() -> None:
    report = finished(4.0, [3.0, 3.0])
    timing = training_time(report, jobs=2)
    assert timing["member_seconds"] == 6.0 and math.isnan(timing["assemble_seconds"])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"timing_repeats": 0}, "--timing-repeats must be at least 1, got 0"),
        ({"repeats": 0}, "--repeats must be at least 1, got 0"),
        ({"strategies": ()}, "--strategies needs at least one strategy"),
        ({"strategies": ("boost",)}, "unknown strategy 'boost': choose from bagging, kfold"),
        ({"from_store": "digits"}, "--from-store NAME needs --store DIR naming the model store"),
        (
            {"from_store": "digits", "store": "s", "holdout_classes": ("5",)},
            "--holdout-classes trains on the other classes: drop --from-store",
        ),
        (
            {"shift_strengths": (0.5, -1.0, math.inf)},
            "--shift-strengths must be finite and at least 0, got -1.0, inf",
        ),
        (
            {"train": TrainRequest(refit="on")},  # every strategy, one-run ones included
            "--refit on applies to independent members, not horizontal, snapshot: pick "
            "--strategies bagging kfold subsample repeat, or --refit auto",
        ),
        # what training would refuse, refused before the warm-up trains anything
        (
            {"train": TrainRequest(members=0), "strategies": ("bagging", "kfold")},
            "--members must be at least 1 for bagging, got 0; --members must be at least 2 "
            "for kfold, got 0",
        ),
        (  # horizontal is the fifth strategy: refused before the four others train
            {"train": TrainRequest(epochs=4, members=5)},
            "horizontal needs (members - 1) x spacing + 1 = 5 epochs for 5 checkpoints, got "
            "--epochs 4",
        ),
        (
            {"train": TrainRequest(seed=MAX_SEED - 1), "repeats": 3},
            f"--seed + --repeats - 1 must be at most {MAX_SEED} (repeat r trains with seed "
            f"--seed + r), got {MAX_SEED + 1}",
        ),
    ],
)
def test_bad_requests_are_refused(changes: dict, message: str) -> None:
    request = BenchmarkRequest(**{"train": TRAIN, **changes})
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        check_request(request)


def test_refit_on_is_accepted_for_independent_strategies() -> None:
    check_request(BenchmarkRequest(TrainRequest(refit="on"), strategies=("repeat", "kfold")))


def test_five_repeats_by_default() -> None:
    assert BenchmarkRequest(train=TRAIN).repeats == 5


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError, match="--repeats must be .*; --timing-repeats must be"):
        check_request(BenchmarkRequest(train=TRAIN, repeats=0, timing_repeats=0))


def test_scoring_and_reporting_modules_stay_torch_free() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import ensembles.benchmark, ensembles.benchmark.cost, ensembles.benchmark.plots\n"
        "import ensembles.benchmark.report, ensembles.benchmark.scoring\n"
        "import ensembles.benchmark.class_holdout, ensembles.benchmark.headline\n"
        "import ensembles.benchmark.ood, ensembles.benchmark.served, ensembles.benchmark.shift\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "False"
