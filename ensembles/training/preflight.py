"""What can be known from the data before any member trains: the rows combiners will fit on."""

from __future__ import annotations

import numpy as np

from ensembles.data import Dataset, Splits
from ensembles.heldout import HeldoutPredictions, SplitPredictions
from ensembles.training.plans import MemberPlan, out_of_sample_rows


def placeholder_heldout(
    splits: Splits,
    n_members: int,
    plans: list[MemberPlan] | None = None,
    in_sample: bool = False,
) -> HeldoutPredictions:
    """Held-out predictions of members not trained yet: real rows, placeholder outputs.

    Every member "predicts" uniform class probabilities (classification) or zeros
    (regression). The rows are what training will produce: with the ``plans`` of a
    resampling strategy, each member's own training rows are NaN in the training split,
    as :func:`~ensembles.training.pipeline.predict_heldout` marks them, so
    :func:`~ensembles.heldout.combiner_fit_set` assembles exactly the rows and targets
    the combiners will be fitted on.

    Parameters
    ----------
    splits : Splits
    n_members : int
        Members the strategy will train.
    plans : list of MemberPlan, optional
        The plans of a resampling strategy (bagging, kfold, subsample); None for the others.
    in_sample : bool
        Also hold in-sample predictions on the training split (``combiner_fit="in_sample"``).

    Returns
    -------
    HeldoutPredictions
        Member outputs of shape (n_members, n_samples, n_outputs) on each split.
    """

    def split(dataset: Dataset) -> SplitPredictions:
        n_outputs = dataset.n_outputs
        value = 1.0 / n_outputs if dataset.task == "classification" else 0.0
        preds = np.full((n_members, len(dataset.y), n_outputs), value)
        return SplitPredictions(dataset.X, dataset.y, preds)

    train = None
    if plans is not None:
        full = split(splits.train)
        n_train = len(full.y)
        trained_on = np.ones((len(plans), n_train), dtype=bool)
        for index, plan in enumerate(plans):
            trained_on[index, out_of_sample_rows(plan.rows, n_train)] = False
        preds = np.where(trained_on[:, :, None], np.nan, full.member_preds)
        train = SplitPredictions(full.X, full.y, preds)
    return HeldoutPredictions(
        split(splits.validation),
        split(splits.test),
        train,
        split(splits.train) if in_sample else None,
    )
