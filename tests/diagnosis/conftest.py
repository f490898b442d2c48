"""Shared toys for the diagnosis tests: seeded CSV problems and the command line of each case."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


def _two_class_csv(
    path: Path, n_rows: int, n_features: int, label_noise: float, separation: float, seed: int
) -> Path:
    """Two Gaussian classes apart along the first feature, with a share of labels flipped."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n_rows)
    X = rng.normal(size=(n_rows, n_features))
    X[:, 0] += separation * (2 * y - 1)
    y = np.where(rng.random(n_rows) < label_noise, 1 - y, y)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"x{i}" for i in range(n_features)] + ["label"])
        for row, label in zip(X, y, strict=True):
            writer.writerow([f"{value:.5f}" for value in row] + [int(label)])
    return path


def _smooth_regression_csv(path: Path, n_rows: int, seed: int) -> Path:
    """A learnable regression: ``y = sin(2 x0) + x1 x2 + x3 / 2`` plus noise of std 0.1."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, 4))
    y = np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.5 * X[:, 3] + 0.1 * rng.normal(size=n_rows)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"x{i}" for i in range(4)] + ["y"])
        for row, target in zip(X, y, strict=True):
            writer.writerow([f"{value:.5f}" for value in row] + [f"{target:.5f}"])
    return path


@pytest.fixture(scope="session")
def case_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``clean``: 400 separable rows; ``few``: 200 rows, 10 features, 10% flipped labels;
    ``noisy``: 300 rows, 2 features, overlapping classes and 10% flipped labels;
    ``smooth``: 400 rows of a learnable regression (target column ``y``)."""
    folder = tmp_path_factory.mktemp("cases")
    return {
        "clean": _two_class_csv(folder / "clean.csv", 400, 4, 0.0, 2.0, seed=1),
        "few": _two_class_csv(folder / "few.csv", 200, 10, 0.1, 2.0, seed=2),
        "noisy": _two_class_csv(folder / "noisy.csv", 300, 2, 0.1, 1.0, seed=3),
        "smooth": _smooth_regression_csv(folder / "smooth.csv", 400, seed=4),
    }


# The cases' documented figures were measured on these splits, whatever the project default.
CASE_SPLIT = ("--validation-fraction", "0.2", "--test-fraction", "0.2")

# The constructed cases: data file and the setup (training flags) with a known verdict.
CASES: dict[str, tuple[str, str]] = {
    # SGD at a learning rate about 400 times what the range test suggests: the loss explodes.
    "learning": ("clean", "--hidden-sizes 32 --epochs 20 --optimizer sgd --learning-rate 20"),
    # 256x256 units, no dropout, no weight decay, 120 training rows with noisy labels.
    "generalization": ("few", "--hidden-sizes 256 256 --dropout 0 --batch-size 16 --epochs 40"),
    # Overlapping classes, SGD with high momentum: runs and epochs disagree.
    "prediction": (
        "noisy",
        "--hidden-sizes 16 --dropout 0 --optimizer sgd --learning-rate 0.1 --momentum 0.95 "
        "--batch-size 16 --epochs 15 --runs 4",
    ),
    # A small network at a sensible rate on separable data.
    "none": ("clean", "--hidden-sizes 32 --learning-rate 0.01 --batch-size 32 --epochs 20"),
}


@pytest.fixture
def case_argv(case_files: dict[str, Path], tmp_path: Path) -> Callable[..., list[str]]:
    """``case_argv(name, *extra)``: the full ``main`` argument list of a constructed case."""

    def build(name: str, *extra: str) -> list[str]:
        data, flags = CASES[name]
        argv = ["--csv", str(case_files[data]), "--target", "label", "--runs", "3", *flags.split()]
        return [*argv, *CASE_SPLIT, "--quiet", "--output", str(tmp_path / name), *extra]

    return build
