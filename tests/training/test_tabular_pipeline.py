"""Tables in training: per-member imputation, its ONNX export, and mixed CSVs end to end.

The end-to-end check re-reads the raw test rows from the CSV file, encodes them with the
stored spec and runs the stored ONNX members: what training recorded must come back.
"""

from __future__ import annotations

import re
from pathlib import Path
from statistics import median

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ensembles.cli.train import main
from ensembles.data import load_csv, split_dataset
from ensembles.export import export_member
from ensembles.heldout import HeldoutPredictions
from ensembles.manifest import WEIGHT_AVERAGE, Manifest
from ensembles.reproduction import TEST_OUTPUTS_FILE
from ensembles.store import ModelStore
from ensembles.tabular import TabularSpec, table_from_records
from ensembles.training.config import TrainConfig
from ensembles.training.members import TrainingData, build_network, member_imputation
from ensembles.training.network import Imputation, MemberNetwork
from ensembles.training.pipeline import train_ensemble
from ensembles.training.plans import bootstrap_plans, training_rows
from tests.conftest import STRATEGY_PARAMS, TINY, tiny_request
from tests.tabular_toys import (
    AGE,
    CLASSES,
    ID,
    KINDS,
    LABEL,
    PLAN,
    VALUE,
    WITH_MISSING,
    mixed_records,
    split_rows,
    write_mixed_csv,
)

#: onnxruntime and torch run the same float32 graph with different kernels: a few ulps apart,
#: far below the export's own parity tolerance (1e-5), which is what training promised.
PARITY = 1e-5


@pytest.fixture(scope="module")
def mixed_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mixed_csv(tmp_path_factory.mktemp("mixed") / "mixed.csv")


@pytest.fixture(scope="module")
def mixed_data(mixed_csv: Path) -> tuple:
    splits = split_dataset(load_csv(mixed_csv, LABEL), seed=0)
    return splits, TrainingData.from_splits(splits)


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def value_index(spec: TabularSpec, name: str) -> int:
    return spec.feature_names.index(name)


# --- per-member imputation ------------------------------------------------------------------


def test_each_member_fills_with_the_median_of_its_own_rows(mixed_data: tuple) -> None:
    splits, data = mixed_data
    spec = splits.train.tabular
    assert data.imputed == tuple(spec.imputed_columns())
    flagged = [spec.feature_names[value] for value, _ in data.imputed]
    assert sorted(flagged) == sorted(WITH_MISSING[1:])  # plan and age; state is one-hot
    config = TrainConfig(**TINY)
    fills = []
    for plan in bootstrap_plans(3, seed=0):
        rows = training_rows(plan.rows, len(data.y_train))  # bootstrap: rows repeat
        network = build_network(data, config, rows)
        assert network.imputes
        for k, name in enumerate(flagged):
            cells = splits.train.table[name][rows]  # the raw cells of the member's rows
            by_hand = median([c for c in cells.tolist() if not np.isnan(c)])
            # the member computes in float32: one rounding of a float64 median
            assert network.impute_fill[k].item() == pytest.approx(by_hand, rel=1e-6)
        fills.append(network.impute_fill[flagged.index(AGE)].item())
    # so the check tells a member's own median from the training split's
    assert any(fill != pytest.approx(spec.column(AGE).fill) for fill in fills)


def test_a_column_missing_on_every_row_of_a_member_keeps_the_placeholder() -> None:
    X = np.array([[7.5, 1.0, 2.0, 0.0], [7.5, 1.0, 4.0, 0.0], [7.5, 1.0, 9.0, 0.0]])
    imputation = member_imputation(X, ((0, 1), (2, 3)))
    np.testing.assert_array_equal(imputation.values, [0, 2])
    np.testing.assert_array_equal(imputation.indicators, [1, 3])
    np.testing.assert_array_equal(imputation.fill, [7.5, 4.0])  # placeholder; median(2, 4, 9)
    assert member_imputation(X, ()) is None


def hand_network() -> MemberNetwork:
    """Features a, b, a:missing, b:missing; a member filling a with 10 and b with -3."""
    torch.manual_seed(0)
    imputation = Imputation(np.array([0, 1]), np.array([2, 3]), np.array([10.0, -3.0]))
    mean, scale = np.array([4.0, 1.0, 0.5, 0.5]), np.array([2.0, 4.0, 0.5, 0.5])
    config = TrainConfig(hidden_sizes=(8,), dropout=0.0)
    return MemberNetwork(4, 3, "classification", config, mean, scale, imputation=imputation).eval()


def test_imputation_in_torch_by_hand() -> None:
    network = hand_network()
    x = np.array(
        [
            [99.0, 2.0, 1.0, 0.0],
            [1.0, 99.0, 0.0, 1.0],
            [99.0, 99.0, 1.0, 1.0],
            [1.0, 2.0, 0.0, 0.0],
        ],
        dtype=np.float32,
    )
    expected = np.array(
        [[10.0, 2.0, 1.0, 0.0], [1.0, -3.0, 0.0, 1.0], [10.0, -3.0, 1.0, 1.0], [1.0, 2.0, 0.0, 0.0]]
    )
    with torch.no_grad():
        imputed = network.impute(torch.from_numpy(x)).numpy()
        standardized = network.standardize(torch.from_numpy(x)).numpy()
        on_filled = network.predict(torch.from_numpy(expected.astype(np.float32)))[0].numpy()
        on_placeholders = network.predict(torch.from_numpy(x))[0].numpy()
    # products with 0/1 selections are exact in float32; 1e-6 allows kernel rounding anyway
    np.testing.assert_allclose(imputed, expected, atol=1e-6)
    by_hand = (expected - [4.0, 1.0, 0.5, 0.5]) / [2.0, 4.0, 0.5, 0.5]
    np.testing.assert_allclose(standardized, by_hand, atol=1e-6)
    np.testing.assert_allclose(on_placeholders, on_filled, atol=1e-6)


def test_no_imputation_without_flagged_columns() -> None:
    config = TrainConfig(hidden_sizes=(8,), dropout=0.0)
    network = MemberNetwork(2, 2, "classification", config, np.zeros(2), np.ones(2))
    x = torch.tensor([[3.0, 4.0]])
    assert not network.imputes and torch.equal(network.impute(x), x)
    assert "impute_fill" not in network.state_dict()


def test_onnx_export_of_an_imputing_member_matches_torch(mixed_data: tuple, tmp_path: Path) -> None:
    splits, data = mixed_data
    plan = bootstrap_plans(1, seed=4)[0]
    torch.manual_seed(plan.seed)
    network = build_network(data, TrainConfig(**TINY), training_rows(plan.rows, len(data.y_train)))
    network.eval()
    indicators = [indicator for _, indicator in data.imputed]
    X = splits.test.X[(splits.test.X[:, indicators] > 0.5).any(axis=1)]  # rows with a gap
    assert len(X) >= 5
    path = tmp_path / "member.onnx"
    assert export_member(network, path, X) <= PARITY
    onnx_out = session(path).run(None, {"input": X})[0]
    with torch.no_grad():
        torch_out = network.predict(torch.from_numpy(X))[0].numpy()
    np.testing.assert_allclose(onnx_out, torch_out, rtol=PARITY, atol=PARITY)
    # the graph imputes: whatever the placeholder under an indicator, the output is the same
    moved = X.copy()
    for value, indicator in data.imputed:
        moved[:, value] = np.where(X[:, indicator] > 0.5, 1e3, X[:, value])
    assert not np.array_equal(moved, X)
    np.testing.assert_allclose(
        session(path).run(None, {"input": moved})[0], onnx_out, rtol=PARITY, atol=PARITY
    )


# --- mixed CSVs end to end ------------------------------------------------------------------


def encoded_test_rows(path: Path, target: str, spec: TabularSpec, seed: int) -> np.ndarray:
    """The raw test rows of ``path``, re-read as records and encoded by the stored spec."""
    test = split_rows(load_csv(path, target), seed)["test"]
    records = mixed_records(path, spec.column_names)
    return spec.encode(table_from_records(spec, [records[i] for i in test])).X


def check_stored_members_reproduce_training(
    store: Path, name: str, path: Path, target: str
) -> Manifest:
    manifest = ModelStore(store).load_manifest(name)
    folder = ModelStore(store).path(name, manifest.version)
    heldout = HeldoutPredictions.load(folder / "heldout.npz")
    spec = manifest.preprocessing
    X = encoded_test_rows(path, target, spec, seed=0)
    # float64 cells parsed by pandas (training) and by float() here, both cast to float32
    np.testing.assert_allclose(X, heldout.test.X, rtol=1e-6, atol=0)
    indicators = [indicator for _, indicator in spec.imputed_columns()]
    assert (X[:, indicators] > 0.5).any()  # the check covers rows with missing cells
    for index, member in enumerate(manifest.members):
        output = session(folder / member.file).run(None, {"input": X})[0]
        expected = heldout.test.member_preds[index]
        # check_parity measures regression values in units of the target's scale
        scale = 1.0 if manifest.task == "classification" else float(np.std(heldout.test.y))
        atol = PARITY * max(scale, 1.0)
        np.testing.assert_allclose(output, expected, rtol=PARITY, atol=atol)
    return manifest


@pytest.mark.parametrize("strategy", list(STRATEGY_PARAMS))
def test_a_mixed_csv_trains_and_publishes_with_every_strategy(
    tmp_path: Path, mixed_csv: Path, strategy: str
) -> None:
    request = tiny_request(
        tmp_path,
        dataset=None,
        csv=mixed_csv,
        target=LABEL,
        strategy=strategy,
        **STRATEGY_PARAMS[strategy],
    )
    manifest = train_ensemble(request)
    spec = manifest.preprocessing
    assert manifest.n_members == 3 and manifest.classes == list(CLASSES)
    assert {column.name: column.kind for column in spec.columns} == KINDS
    assert [dropped.name for dropped in spec.dropped] == [ID]
    assert manifest.input.feature_names == spec.feature_names
    assert manifest.split["rows_without_target"] == 1
    assert spec.column(PLAN).indicator and spec.column(AGE).indicator
    check_stored_members_reproduce_training(request.store, "mixed", mixed_csv, LABEL)
    if strategy in {"horizontal", "snapshot"}:  # the averaged graph imputes as well
        folder = ModelStore(request.store).path("mixed", manifest.version)
        X = encoded_test_rows(mixed_csv, LABEL, spec, seed=0)
        averaged = session(folder / "averaged.onnx").run(None, {"input": X})[0]
        with np.load(folder / TEST_OUTPUTS_FILE) as outputs:
            stored = outputs[WEIGHT_AVERAGE]
        np.testing.assert_allclose(averaged, stored, rtol=PARITY, atol=PARITY)


def test_a_mixed_regression_csv_trains_and_reproduces(tmp_path: Path) -> None:
    path = write_mixed_csv(tmp_path / "prices.csv", task="regression")
    request = tiny_request(
        tmp_path, dataset=None, csv=path, target=VALUE, strategy="bagging", members=2
    )
    manifest = train_ensemble(request)
    assert manifest.task == "regression" and manifest.classes is None
    assert {column.name: column.kind for column in manifest.preprocessing.columns} == KINDS
    check_stored_members_reproduce_training(request.store, "prices", path, VALUE)


# --- the command line -----------------------------------------------------------------------

CLI_TINY = ["--hidden-sizes", "16", "--epochs", "3", "--learning-rate", "0.001", "--quiet"]


def test_the_train_command_prints_the_columns_block(
    tmp_path: Path, mixed_csv: Path, capsys: pytest.CaptureFixture
) -> None:
    store = tmp_path / "store"
    args = ["--csv", str(mixed_csv), "--target", LABEL, "--strategy", "repeat", "--members", "2"]
    assert main([*args, "--store", str(store), *CLI_TINY]) == 0
    out = capsys.readouterr().out
    spec = ModelStore(store).load_manifest("mixed").preprocessing
    state, plan, age = spec.column("state"), spec.column(PLAN), spec.column(AGE)
    assert state.other and state.missing  # the rare level, and enough empty cells
    block = (
        "columns:\n"
        f"  state: categorical ({len(state.levels)} levels + (missing) + (other))\n"
        f"  plan: boolean (yes/no, missing -> median {plan.fill:g} + indicator)\n"
        f"  age: numeric (number, missing -> median {age.fill:g} + indicator)\n"
        "  calls: numeric (number)\n"
        "  area_code: numeric (number)\n"
        "  id: dropped, distinct on 100% of its rows, so it identifies rows rather than "
        "describing them (an id?); name it with --categorical to keep it\n"
        "  dropped 1 row(s) with an empty target (cannot be trained or scored)\n\n"
    )
    assert out.startswith(block), out
    assert "published mixed version 1" in out


def test_an_unknown_categorical_column_is_one_line_and_exit_2(
    tmp_path: Path, mixed_csv: Path, capsys: pytest.CaptureFixture
) -> None:
    store = tmp_path / "store"
    args = ["--csv", str(mixed_csv), "--target", LABEL, "--categorical", "NOPE"]
    assert main([*args, "--store", str(store), *CLI_TINY]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1, error
    assert re.fullmatch(
        r"error: --categorical NOPE: no such column in mixed\.csv; columns are: "
        r"id, state, plan, age, calls, area_code\n",
        error,
    ), error
    assert not store.exists() or ModelStore(store).names() == []
