"""End to end: every strategy trains, exports, checks parity and publishes a verified version."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ensembles.errors import ConfigError, DataError, ExportError
from ensembles.heldout import HeldoutPredictions
from ensembles.metrics import classification_metrics
from ensembles.store import CHECKSUM_FILE, MANIFEST_FILE, ModelStore
from ensembles.training.pipeline import run_training, train_ensemble
from ensembles.training.plans import training_rows
from ensembles.training.preflight import validated_config
from ensembles.training.strategies import StrategyOptions
from tests.conftest import STRATEGY_PARAMS, tiny_request

#: What a version may hold: ONNX graphs, JSON, numpy archives and the checksum file.
STORE_SUFFIXES = {".onnx", ".json", ".npz", ".sha256"}


def assert_no_pickles(folder: Path, files: set[str]) -> None:
    """Every file is of a pickle-free kind, and every archive holds plain arrays only."""
    for name in files:
        path = folder / name
        assert path.suffix in STORE_SUFFIXES, name
        if path.suffix == ".npz":
            with zipfile.ZipFile(path) as archive:  # torch.save writes a zip with data.pkl
                assert all(entry.endswith(".npy") for entry in archive.namelist()), name
            with np.load(path, allow_pickle=False) as arrays:  # object arrays would raise
                for key in arrays.files:
                    assert arrays[key].dtype.kind != "O", (name, key)


def verify_version(store: Path, name: str) -> None:
    """Files, checksums, no pickles, and every member's ONNX output against the stored preds."""
    manifest = ModelStore(store).load_manifest(name)  # verifies every sha256
    folder = ModelStore(store).path(name, manifest.version)
    heldout = HeldoutPredictions.load(folder / "heldout.npz")
    on_disk = {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
    assert on_disk == set(manifest.files) | {MANIFEST_FILE, CHECKSUM_FILE}
    assert {"heldout.npz", "curves.json"} | {m.file for m in manifest.members} <= on_disk
    assert_no_pickles(folder, on_disk)
    curves = json.loads((folder / "curves.json").read_text())
    for index, member in enumerate(manifest.members):
        session = ort.InferenceSession(
            str(folder / member.file), providers=["CPUExecutionProvider"]
        )
        assert session.get_inputs()[0].shape[0] == "batch"  # dynamic batch dimension
        output = session.run(None, {"input": heldout.test.X.astype(np.float32)})[0]
        np.testing.assert_allclose(output, heldout.test.member_preds[index], rtol=1e-5, atol=1e-5)
        assert member.val_metrics["onnx_max_diff"] <= 1e-5
        assert {"train_loss", "val_loss", "train_metric", "val_metric"} <= set(curves[member.id][0])


@pytest.mark.parametrize("strategy", list(STRATEGY_PARAMS))
def test_each_strategy_publishes_a_verified_version(tmp_path: Path, strategy: str) -> None:
    request = tiny_request(
        tmp_path, dataset="digits", strategy=strategy, **STRATEGY_PARAMS[strategy]
    )
    manifest = train_ensemble(request)
    verify_version(request.store, "digits")
    assert manifest.strategy.name == strategy
    assert manifest.n_members == 3
    assert len({member.seed for member in manifest.members}) == (
        1 if strategy in {"horizontal", "snapshot"} else 3
    )
    rules = {member.rows["rule"] for member in manifest.members}
    expected_rule = {"bagging": "bootstrap", "kfold": "kfold", "subsample": "subsample"}
    assert rules == {expected_rule.get(strategy, "all")}
    if strategy == "snapshot":
        assert [member.cycle for member in manifest.members] == [1, 2, 3]
    if strategy == "horizontal":
        assert [member.epoch for member in manifest.members] == [2, 3, 4]
    assert manifest.classes == [str(digit) for digit in range(10)]
    assert manifest.input.n_features == 64
    has_average = strategy in {"horizontal", "snapshot"}
    assert ("weight_average" in manifest.combiners) is has_average
    assert {"mean", "vote", "blend", "caruana", "stack"} <= set(manifest.combiners)
    assert manifest.default_combiner in manifest.combiners
    mean_nll = manifest.combiners["mean"].test_metrics["nll"]
    assert mean_nll <= manifest.baselines["average_member"]["nll"] + 1e-12


@pytest.mark.parametrize("strategy", list(STRATEGY_PARAMS))
def test_regression_with_gaussian_heads(tmp_path: Path, strategy: str) -> None:
    request = tiny_request(tmp_path, dataset="diabetes", strategy=strategy, epochs=6)
    manifest = train_ensemble(request)
    verify_version(request.store, "diabetes")
    assert manifest.output.variance_name == "variance"
    assert {"rmse", "mae", "gaussian_nll", "coverage"} <= set(
        manifest.combiners["mean"].test_metrics
    )
    assert "vote" not in manifest.combiners


def test_resampling_keeps_out_of_sample_predictions_only(tmp_path: Path) -> None:
    request = tiny_request(tmp_path, dataset="wine", strategy="bagging")
    manifest = train_ensemble(request)
    folder = ModelStore(request.store).path("wine", manifest.version)
    train = HeldoutPredictions.load(folder / "heldout.npz").train

    for index, member in enumerate(manifest.members):
        in_bag = training_rows(member.rows, len(train.y))
        assert np.isnan(train.member_preds[index, in_bag]).all()
        out_of_bag = np.setdiff1d(np.arange(len(train.y)), in_bag)
        assert not np.isnan(train.member_preds[index, out_of_bag]).any()
    n_validation = manifest.split["n_validation"]
    for info in manifest.combiners.values():
        assert info.fitted_on == {"source": "validation", "n_rows": n_validation}


@pytest.mark.parametrize("strategy", ["bagging", "kfold", "subsample"])
def test_out_of_sample_predictions_score_members_and_the_ensemble(
    tmp_path: Path, strategy: str
) -> None:
    request = tiny_request(tmp_path, dataset="wine", strategy=strategy)
    manifest = train_ensemble(request)
    folder = ModelStore(request.store).path("wine", manifest.version)
    train = HeldoutPredictions.load(folder / "heldout.npz").train
    n_train = len(train.y)
    unseen = np.ones((manifest.n_members, n_train), dtype=bool)
    for index, member in enumerate(manifest.members):
        unseen[index, training_rows(member.rows, n_train)] = False
        rows = np.flatnonzero(unseen[index])
        expected = classification_metrics(train.member_preds[index, rows], train.y[rows])
        assert member.out_of_sample.n_rows == len(rows)
        assert member.out_of_sample.metrics == pytest.approx(expected, rel=1e-12)
    # scikit-learn's oob_score: each row scored by the mean of the members that did not see it
    scored = unseen.any(axis=0)
    mean = np.array(
        [train.member_preds[unseen[:, row], row].mean(axis=0) for row in np.flatnonzero(scored)]
    )
    ensemble = manifest.out_of_sample
    assert ensemble.metrics == pytest.approx(
        classification_metrics(mean, train.y[scored]), rel=1e-9
    )
    assert (ensemble.n_rows, ensemble.n_rows_unscored) == (scored.sum(), (~scored).sum())
    assert ensemble.members_per_row == pytest.approx(unseen[:, scored].sum(axis=0).mean())
    if strategy == "kfold":  # every row is out of fold for exactly one member
        assert (ensemble.n_rows, ensemble.members_per_row) == (n_train, 1.0)


def test_strategies_without_resampling_have_no_out_of_sample_scores(trained_store: Path) -> None:
    manifest = ModelStore(trained_store).load_manifest("digits")  # snapshot
    assert manifest.out_of_sample is None
    assert all(member.out_of_sample is None for member in manifest.members)


@pytest.mark.parametrize("strategy", ["bagging", "kfold", "subsample", "repeat"])
def test_parallel_jobs_give_identical_members(tmp_path: Path, strategy: str) -> None:
    common = {"dataset": "wine", "strategy": strategy, "engine": "loop"}  # jobs: the loop's
    one = run_training(tiny_request(tmp_path / "a", jobs=1, **common))
    two = run_training(tiny_request(tmp_path / "b", jobs=2, **common))
    # Spawned workers run the same code on one torch thread each; the tolerance, far below
    # any training effect, keeps the test independent of kernel choices across processes.
    for first, second in zip(one.members, two.members, strict=True):
        for key in first.state:
            np.testing.assert_allclose(first.state[key], second.state[key], rtol=1e-6, atol=1e-7)
    metrics = one.manifest.combiners["mean"].test_metrics
    assert two.manifest.combiners["mean"].test_metrics == pytest.approx(metrics, rel=1e-5)


#: Train a second wine version with Ctrl-C arriving as the file ``argv[2]`` of the staging
#: folder is opened for writing: an audit hook raises KeyboardInterrupt at that moment, in
#: a process of its own (audit hooks cannot be removed).
CTRL_C_WHILE_WRITING = """
import sys
import logging
from pathlib import Path
from ensembles.training.pipeline import train_ensemble
from tests.conftest import tiny_request

def ctrl_c(event, args):
    path = str(args[0]) if event == "open" else ""
    if ".staging-" in path and path.endswith(sys.argv[2]) and args[1] not in (None, "r"):
        raise KeyboardInterrupt

sys.addaudithook(ctrl_c)
try:
    train_ensemble(tiny_request(Path(sys.argv[1]), dataset="wine", strategy="repeat"))
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.parametrize("moment", ["heldout.npz", "manifest.sha256"])
def test_interrupted_publish_leaves_no_visible_version(tmp_path: Path, moment: str) -> None:
    request = tiny_request(tmp_path, dataset="wine", strategy="repeat")
    train_ensemble(request)
    root = Path(__file__).parents[2]
    done = subprocess.run(
        [sys.executable, "-c", CTRL_C_WHILE_WRITING, str(tmp_path), moment],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 130, done.stderr[-4000:]
    store = ModelStore(request.store)
    assert store.versions("wine") == [1] and store.latest("wine") == 1
    assert not list((request.store / "wine").glob(".staging-*"))
    assert store.load_manifest("wine").version == 1


def test_weight_averaging_refuses_independent_members_unless_forced(tmp_path: Path) -> None:
    refused = tiny_request(
        tmp_path, dataset="wine", strategy="repeat", combiners=("weight_average",)
    )
    with pytest.raises(ConfigError, match="do not share a loss basin .* --force-weight-averaging"):
        train_ensemble(refused)
    assert not (tmp_path / "store").exists()
    forced = tiny_request(tmp_path, dataset="wine", strategy="repeat", force_weight_averaging=True)
    manifest = train_ensemble(forced)
    assert manifest.combiners["weight_average"].state["forced"] is True


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"strategy": "horizontal", "members": 5},
            r"horizontal needs \(members - 1\) x spacing \+ 1 = 5 epochs for 5 checkpoints, "
            "got --epochs 4: raise --epochs",
        ),
        ({"strategy": "snapshot", "config": {"patience": 3}}, "--patience .* contradicts"),
        ({"strategy": "kfold", "members": 1}, "--members must be at least 2 for kfold"),
        ({"strategy": "boosting"}, "unknown --strategy 'boosting'"),
        ({"combiners": ("mean", "median")}, "unknown combiner 'median'"),
        ({"default_combiner": "vote", "combiners": ("mean",)}, "'vote' was not fitted"),
        (
            {"combiners": ("blend", "stack")},
            "^--combiners without mean needs --default-combiner NAME: the default is mean unless "
            "a learned combiner beats it on held-out rows; add mean to --combiners or name the "
            "default$",
        ),
        ({"dataset": "diabetes", "combiners": ("vote",)}, "combiner vote does not apply"),
    ],
)
def test_bad_options_fail_before_anything_is_written(
    tmp_path: Path, changes: dict, message: str
) -> None:
    request = tiny_request(tmp_path, **{"dataset": "wine", **changes})
    with pytest.raises(ConfigError, match=message):
        train_ensemble(request)
    assert ModelStore(request.store).names() == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"strategy": "kfold", "members": 90}, "training rows are too few for 90 folds"),
        ({"interval_level": 1.5}, "--interval-level must be between 0 and 1, got 1.5"),
        ({"strategy": "horizontal", "options": StrategyOptions(spacing=0)}, "--spacing must be at"),
        (
            {"strategy": "snapshot", "options": StrategyOptions(variants=[{"dropout": 0.2}])},
            "setting variants apply to --strategy repeat, not snapshot",
        ),
        (
            {"strategy": "subsample", "options": StrategyOptions(subsample_fraction=0)},
            "--subsample-fraction must be between 0 and 1, got 0",
        ),
        (
            {"strategy": "snapshot", "options": StrategyOptions(peak_learning_rate=0)},
            "--peak-learning-rate must be a positive finite number, got 0",
        ),
        (
            {"strategy": "snapshot", "options": StrategyOptions(peak_learning_rate=float("inf"))},
            "--peak-learning-rate must be a positive finite number, got inf",
        ),
        (
            {"pinned_settings": ("droput",)},
            r"pinned_settings names \['droput'\]; only \['activation', 'dropout', 'input_noise'\]",
        ),
    ],
)
def test_more_option_errors(tmp_path: Path, changes: dict, message: str) -> None:
    request = tiny_request(tmp_path, **{"dataset": "wine", **changes})
    with pytest.raises(ConfigError, match=message):
        train_ensemble(request)
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    ("strategy", "options", "config", "message"),
    [
        ("horizontal", StrategyOptions(spacing=0), {}, "--spacing must be at least 1, got 0"),
        ("horizontal", StrategyOptions(), {"patience": 3}, "--patience .* contradicts"),
        ("snapshot", StrategyOptions(peak_learning_rate=-1.0), {}, "finite number, got -1.0"),
        ("subsample", StrategyOptions(subsample_fraction=1.0), {}, "between 0 and 1, got 1.0"),
    ],
)
def test_strategy_options_are_checked_with_the_others_before_any_training(
    tmp_path: Path, strategy: str, options: StrategyOptions, config: dict, message: str
) -> None:
    """Not after the learning-rate range test or a probe run (validated_config comes first)."""
    request = tiny_request(
        tmp_path, dataset="wine", strategy=strategy, options=options, config=config
    )
    with pytest.raises(ConfigError, match=message):
        validated_config(request)


@pytest.mark.parametrize("strategy", ["repeat", "snapshot"])
def test_a_diverged_run_is_refused_with_advice(tmp_path: Path, strategy: str) -> None:
    config = {"optimizer": "sgd", "learning_rate": 1e8, "gaussian_head": False}
    request = tiny_request(tmp_path, dataset="diabetes", strategy=strategy, config=config)
    with pytest.raises(ConfigError, match="diverged at epoch 1 .* lower --learning-rate"):
        train_ensemble(request)
    assert not (tmp_path / "store").exists()


def test_an_export_that_does_not_match_torch_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ensembles.export.PARITY_TOLERANCE", -1.0)
    request = tiny_request(tmp_path, dataset="wine", strategy="repeat")
    with pytest.raises(ExportError, match="m000.onnx: onnxruntime and torch outputs differ by"):
        train_ensemble(request)
    assert not (request.store / "wine").exists()


def test_stacking_can_see_the_raw_features(tmp_path: Path) -> None:
    request = tiny_request(tmp_path, dataset="wine", strategy="repeat", stack_passthrough=True)
    manifest = train_ensemble(request)
    assert manifest.combiners["stack"].state["params"]["passthrough"] is True


def test_forced_weight_average_can_be_the_default(tmp_path: Path) -> None:
    request = tiny_request(
        tmp_path,
        dataset="wine",
        strategy="bagging",
        combiners=("mean",),
        force_weight_averaging=True,
        default_combiner="weight_average",
    )
    manifest = train_ensemble(request)
    assert manifest.default_combiner == "weight_average"
    assert set(manifest.combiners) == {"mean", "weight_average"}
    choice = manifest.default_choice
    assert choice.forced and choice.reason == "weight_average was named by --default-combiner"
    assert choice.comparisons["weight_average"].excluded == (
        "1.00 effective members (fewer than 2) would not keep the ensemble"
    )


def test_the_manifest_records_the_configuration_members_trained_with(tmp_path: Path) -> None:
    manifest = train_ensemble(tiny_request(tmp_path, dataset="wine", strategy="repeat", epochs=2))
    assert manifest.training["config"]["epochs"] == 2
    assert manifest.training["config"]["hidden_sizes"] == [16]


#: Members that diverge at once: a run refused for its combiners, not with "diverged", was
#: refused before any member trained.
DIVERGING = {"optimizer": "sgd", "learning_rate": 1e30}
#: The default combiners of a classifier, named: then each of them must be fitted.
CLASSIFICATION_COMBINERS = ("mean", "vote", "blend", "caruana", "stack")


def test_a_default_combiner_named_by_default_combiner_is_required(tmp_path: Path) -> None:
    request = tiny_request(
        tmp_path,
        config=DIVERGING,
        dataset="wine",
        strategy="repeat",
        validation_fraction=0.03,
        default_combiner="blend",
    )
    with pytest.raises(DataError, match="^the validation rows are too few to fit every"):
        train_ensemble(request)


def test_default_combiners_too_few_rows_can_fit_are_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Six validation rows: blend and caruana cannot be fitted; with no --combiners given
    the run publishes the others instead of refusing (an imbalanced table's rare class
    missing from a half did the same to stack)."""
    request = tiny_request(tmp_path, dataset="wine", strategy="snapshot", validation_fraction=0.03)
    with caplog.at_level(logging.WARNING, logger="ensembles.training.preflight"):
        manifest = train_ensemble(request)
    # what the other options imply stays: a snapshot ensemble is weight-averaged
    assert sorted(manifest.combiners) == ["mean", "stack", "vote", "weight_average"]
    said = [r.getMessage() for r in caplog.records if r.name == "ensembles.training.preflight"]
    assert len(said) == 1
    assert said[0].startswith(
        "left out of the default combiners, as the validation rows are too few to fit them: "
        "blend fails on a cross-fitting half of the 6 fit rows"
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (  # 6 validation rows: cross-fitting halves of 3 are too few to blend (the
            # halves are stratified: each holds every class once, so stack fits)
            {
                "dataset": "wine",
                "strategy": "repeat",
                "validation_fraction": 0.03,
                "combiners": CLASSIFICATION_COMBINERS,
            },
            r"^the validation rows are too few to fit every combiner: blend fails on a "
            r"cross-fitting half of the 6 fit rows: BlendingCombiner needs at least 4 .*; "
            r"caruana fails on .*; add rows or raise --validation-fraction, "
            r"or fit only --combiners mean vote stack$",
        ),
        (  # 18 validation rows of 10 classes: a cross-fitting half lacks some classes
            {
                "dataset": "digits",
                "strategy": "snapshot",
                "validation_fraction": 0.01,
                "combiners": CLASSIFICATION_COMBINERS,
            },
            r"^the validation rows are too few to fit every combiner: stack fails on a "
            r"cross-fitting half of the 18 fit rows: StackingCombiner needs every class .*; "
            r"add rows or raise --validation-fraction, or fit only --combiners mean vote "
            r"blend caruana$",
        ),
        (  # regression: 5 validation rows
            {
                "dataset": "diabetes",
                "strategy": "repeat",
                "validation_fraction": 0.01,
                "combiners": ("mean", "blend", "caruana", "stack"),
            },
            r"^the validation rows are too few .*: blend fails on a cross-fitting half of the "
            r"5 fit rows: .* or fit only --combiners mean stack$",
        ),
        (  # bagging's out-of-bag rows are no fit rows: some member trained on each of them
            {
                "dataset": "wine",
                "strategy": "bagging",
                "validation_fraction": 0.03,
                "combiners": ("mean", "blend"),
            },
            r"^the validation rows are too few .*: blend fails .*; "
            r"add rows or raise --validation-fraction, or fit only --combiners mean$",
        ),
        (  # calibration splits the fit rows again
            {
                "dataset": "wine",
                "strategy": "repeat",
                "validation_fraction": 0.05,
                "calibrate": True,
                "combiners": ("mean", "stack"),
            },
            r"^the validation rows are too few .*: stack fails .*; add rows or raise "
            r"--validation-fraction, or fit only --combiners mean, or drop --calibrate$",
        ),
    ],
)
def test_too_few_rows_for_a_combiner_fail_before_any_member_trains(
    tmp_path: Path, changes: dict, message: str
) -> None:
    request = tiny_request(tmp_path, config=DIVERGING, **changes)
    with pytest.raises(DataError, match=message) as error:
        train_ensemble(request)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # under the budget rule the window (4 x 1000 + 1 epochs) is cut to the cap: fewer
        # members than asked were published, in silence
        (
            {
                "strategy": "horizontal",
                "members": 5,
                "options": StrategyOptions(spacing=1000),
                "config": {**DIVERGING, "epochs": None},
            },
            r"^horizontal needs \(members - 1\) x spacing \+ 1 = 4001 epochs for 5 "
            r"checkpoints, more than the budget rule's cap of 2000 epochs",
        ),
        (
            {"dataset": "diabetes", "calibrate": True},
            "^--calibrate \\(temperature scaling\\) applies to classification",
        ),
        (  # it published intervals of zero width and a Gaussian NLL of 2.7e12
            {
                "dataset": "diabetes",
                "members": 1,
                "config": {**DIVERGING, "gaussian_head": False},
            },
            "^--members 1 with --no-gaussian-head leaves a regression ensemble no variance",
        ),
        (
            {"strategy": "repeat", "weight_averaging": "greedy"},
            "^--weight-averaging greedy applies to a weight-averaged model, which --strategy "
            "repeat does not publish: drop it, or add --force-weight-averaging$",
        ),
        (
            {"stack_passthrough": True, "combiners": ("mean", "blend")},
            "^--stack-passthrough applies to the stack combiner",
        ),
        (
            {"ray_address": "127.0.0.1:6379", "engine": "loop"},
            "^--ray-address is for --engine ray, not --engine loop",
        ),
        (
            {"engine": "fast", "regularization": "maybe", "weight_averaging": "mean"},
            "unknown --engine 'fast': choose one of auto, loop, packed, ray; unknown "
            "--regularization 'maybe': choose one of auto, off; unknown --weight-averaging "
            "'mean': choose one of uniform, greedy",
        ),
    ],
)
def test_options_that_would_change_nothing_are_refused_before_any_member_trains(
    tmp_path: Path, changes: dict, message: str
) -> None:
    """The members would diverge (DIVERGING): the refusal comes before any of them trains."""
    changes = {"config": DIVERGING, "dataset": "wine", **changes}
    request = tiny_request(tmp_path, **changes)
    with pytest.raises(ConfigError, match=message):
        train_ensemble(request)
    assert not (tmp_path / "store").exists()


def test_the_ray_engine_without_ray_is_refused_before_the_range_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """None in sys.modules makes ``import ray`` fail as on a machine without it. Refused by
    validated_config, which run_training calls before the range test."""
    monkeypatch.setitem(sys.modules, "ray", None)
    request = tiny_request(tmp_path, dataset="wine", engine="ray", config={"learning_rate": None})
    with pytest.raises(ConfigError, match="^--engine ray needs Ray, which is not installed"):
        validated_config(request)


def test_the_diverging_members_would_have_failed_had_they_trained(tmp_path: Path) -> None:
    request = tiny_request(tmp_path, config=DIVERGING, dataset="wine", strategy="repeat")
    with pytest.raises(ConfigError, match="diverged at epoch"):
        train_ensemble(request)


def test_variant_problems_are_reported_with_the_other_options(tmp_path: Path) -> None:
    request = tiny_request(
        tmp_path,
        dataset="wine",
        strategy="repeat",
        members=0,
        force_weight_averaging=True,
        options=StrategyOptions(variants=[{"hidden_sizes": [8], "epochs": 2.5}, {}]),
    )
    with pytest.raises(ConfigError) as error:
        train_ensemble(request)
    assert str(error.value) == (
        "--members must be at least 1 for repeat, got 0; "
        "--variants item 1: epochs must be an integer, got 2.5"
    )
    valid = StrategyOptions(variants=[{"hidden_sizes": [8]}, {}])
    with pytest.raises(ConfigError) as error:
        train_ensemble(replace(request, members=2, options=valid))
    assert str(error.value) == (
        "--variants give members different hidden_sizes ([8] in item 1, [16] in item 2): "
        "forced weight averaging needs one layer layout; give every item the same "
        "hidden_sizes or drop --force-weight-averaging"
    )
    bagging = replace(request, members=2, options=valid, strategy="bagging")
    with pytest.raises(ConfigError, match="^setting variants apply to --strategy repeat, not "):
        train_ensemble(bagging)
    assert not (tmp_path / "store").exists()
