"""The same-budget baseline: one network trained for as many epochs as the whole ensemble."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ensembles.benchmark.scoring import uncertainty_quality
from ensembles.data import split_dataset
from ensembles.evaluation import evaluate_predictions
from ensembles.heldout import SplitPredictions
from ensembles.training.loop import fit_member, member_outputs
from ensembles.training.pipeline import TrainRequest, load_dataset
from ensembles.training.plans import member_seed
from ensembles.training.strategies import TrainingData, build_network


def ensemble_epoch_budget(
    strategy: str, params: dict[str, Any], n_members: int, epochs: int
) -> int:
    """Epochs the ensemble trained in total: one run's length, or members x epochs.

    Parameters
    ----------
    strategy : str
    params : dict
        The manifest's strategy parameters (one-run strategies record ``epochs``).
    n_members, epochs : int
        Members and epochs per member of independent strategies.
    """
    if strategy in {"horizontal", "snapshot"} and "epochs" in params:
        return int(params["epochs"])
    return n_members * epochs


def train_single_network(request: TrainRequest, epochs: int) -> dict[str, float]:
    """Train one member network on the request's split for ``epochs`` epochs and score it.

    The split, network settings and seed rule are those of :func:`run_training` with the
    same request, so the network sees exactly the training rows the ensemble saw.

    Returns
    -------
    dict of str to float
        Test metrics (as for a combiner), uncertainty quality (regression with a Gaussian
        head; NaN otherwise) and ``train_seconds``.
    """
    start = time.perf_counter()
    splits = split_dataset(
        load_dataset(request), request.seed, request.validation_fraction, request.test_fraction
    )
    train, validation, test = splits.train, splits.validation, splits.test
    data = TrainingData(train.X, train.y, validation.X, validation.y, train.task, train.n_outputs)
    config = request.config.with_overrides({"epochs": epochs})
    seed = member_seed(request.seed, 0)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        network = build_network(data, config, np.arange(len(train.y)))
        fit_member(network, train.X, train.y, validation.X, validation.y, config, seed)
    finally:
        torch.set_num_threads(previous)
    seconds = time.perf_counter() - start
    outputs = member_outputs(network, test.X)
    variances = outputs[1][None] if len(outputs) > 1 else None
    split = SplitPredictions(test.X, test.y, outputs[0][None], variances)
    metrics = evaluate_predictions(split, outputs[0], None, request.interval_level)
    variance = outputs[1].mean(axis=1) if len(outputs) > 1 else None
    quality = uncertainty_quality(train.task, outputs[0], test.y, variance)
    return {**metrics, **quality, "train_seconds": seconds}
