"""Out-of-distribution data from held-out classes: train on the rest, keep theirs aside.

The training pipeline takes a built-in dataset or a CSV file; to train on a subset of the
classes, the benchmark writes the in-distribution rows to a CSV file in its temporary folder
and trains on that (:func:`holdout_request`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ensembles.data import Dataset, load_data
from ensembles.errors import ConfigError

if TYPE_CHECKING:  # the training modules import torch; this module stays torch-free
    from ensembles.training.pipeline import TrainRequest

#: Name of the target column of the written CSV (underscores added if a feature has it).
TARGET_COLUMN = "class"


def split_classes(dataset: Dataset, holdout: tuple[str, ...]) -> tuple[Dataset, np.ndarray]:
    """The rows of the other classes, and the features of the held-out classes' rows.

    Parameters
    ----------
    dataset : Dataset
        A classification dataset.
    holdout : tuple of str
        Class labels to leave out of training (as :attr:`Dataset.classes` spells them).

    Returns
    -------
    in_distribution : Dataset
        The rows of the remaining classes, class indices renumbered ``0..k-1``.
    X_out : np.ndarray, shape (n_out, n_features)
        Features of the held-out classes' rows.

    Raises
    ------
    ConfigError
        For a regression dataset, an unknown label, or fewer than two classes left.
    """
    if dataset.classes is None:
        raise ConfigError(
            f"--holdout-classes needs a classification dataset; {dataset.source} is regression"
        )
    unknown = [label for label in holdout if label not in dataset.classes]
    if unknown:
        raise ConfigError(
            f"unknown class {', '.join(map(repr, unknown))} in --holdout-classes: "
            f"{dataset.source} has classes {', '.join(dataset.classes)}"
        )
    kept = [label for label in dataset.classes if label not in holdout]
    if len(kept) < 2:
        raise ConfigError(
            f"--holdout-classes must leave at least two of the {len(dataset.classes)} classes "
            f"of {dataset.source} to train on; hold out fewer"
        )
    held = np.isin(dataset.y, [dataset.classes.index(label) for label in holdout])
    renumber = {dataset.classes.index(label): i for i, label in enumerate(kept)}
    y = np.array([renumber[int(c)] for c in dataset.y[~held]], dtype=np.int64)
    inside = Dataset(
        dataset.X[~held], y, "classification", dataset.feature_names, kept, dataset.source
    )
    return inside, dataset.X[held]


def write_csv(dataset: Dataset, path: Path) -> str:
    """Write a classification dataset as a CSV file :func:`~ensembles.data.load_csv` reads.

    Returns
    -------
    str
        The name of the target column (class labels as text).
    """
    import pandas as pd

    target = TARGET_COLUMN
    while target in dataset.feature_names:
        target = f"_{target}_"
    frame = pd.DataFrame(dataset.X, columns=dataset.feature_names)
    frame[target] = np.asarray(dataset.classes)[dataset.y]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return target


def holdout_request(
    template: TrainRequest, holdout: tuple[str, ...], folder: Path
) -> tuple[TrainRequest, np.ndarray]:
    """A training request on the classes not in ``holdout``, and the held-out rows.

    The in-distribution rows are written to ``folder/<name>-without-<labels>.csv``; the
    request trains on that file under the same name, so every split, member and baseline
    sees only those classes.

    Returns
    -------
    request : TrainRequest
    X_out : np.ndarray, shape (n_out, n_features)
        Features of the held-out classes' rows (never trained, fitted or tuned on).
    """
    dataset = load_data(
        template.dataset, template.csv, template.target, template.task, template.seed
    )
    inside, X_out = split_classes(dataset, holdout)
    labels = "-".join("".join(c if c.isalnum() else "-" for c in label) for label in holdout)
    name = f"{template.ensemble_name}-without-{labels}"[:48].strip("-_")
    target = write_csv(inside, folder / f"{name}.csv")
    request = replace(
        template,
        dataset=None,
        csv=folder / f"{name}.csv",
        target=target,
        task="classification",
        name=name,
    )
    return request, X_out
