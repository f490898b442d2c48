"""What can be known from the data before any member trains: the rows combiners will fit on."""

from __future__ import annotations

import numpy as np

from ensembles.data import Dataset, Splits
from ensembles.heldout import HeldoutPredictions, SplitPredictions


def placeholder_heldout(splits: Splits, n_members: int) -> HeldoutPredictions:
    """Held-out predictions of members not trained yet: real rows, placeholder outputs.

    Every member "predicts" uniform class probabilities (classification) or zeros
    (regression) on the validation and test splits, so
    :func:`~ensembles.heldout.combiner_fit_set` assembles exactly the rows and targets the
    combiners will be fitted on (the validation split, for every strategy).

    Parameters
    ----------
    splits : Splits
    n_members : int
        Members the strategy will train.

    Returns
    -------
    HeldoutPredictions
        Member outputs of shape (n_members, n_samples, n_outputs) on each split; no
        training-split predictions.
    """

    def split(dataset: Dataset) -> SplitPredictions:
        n_outputs = dataset.n_outputs
        value = 1.0 / n_outputs if dataset.task == "classification" else 0.0
        preds = np.full((n_members, len(dataset.y), n_outputs), value)
        return SplitPredictions(dataset.X, dataset.y, preds)

    return HeldoutPredictions(split(splits.validation), split(splits.test))
