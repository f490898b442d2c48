"""Weight averaging: members' parameters averaged into one network (SWA-style, or a greedy soup).

Only members of one training trajectory (horizontal, snapshot) share a loss basin; averaging
independently initialized networks lands between basins and predicts poorly, so it is refused
unless forced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, update_bn

from ensembles.data import Dataset
from ensembles.errors import ConfigError
from ensembles.manifest import ONE_RUN_STRATEGIES
from ensembles.training.config import SoupMethod
from ensembles.training.loop import member_outputs
from ensembles.training.network import MemberNetwork


def check_weight_averaging(strategy: str, force: bool) -> None:
    """Refuse to average members that do not share a training trajectory, unless forced.

    Raises
    ------
    ConfigError
        Naming the strategy and the reason.
    """
    if strategy in ONE_RUN_STRATEGIES or force:
        return
    raise ConfigError(
        f"weight averaging refuses the members of '{strategy}': they were initialized and "
        "trained independently, so their weights do not share a loss basin and their average "
        "predicts poorly (accuracy collapses). It applies to horizontal and snapshot ensembles; "
        "force it with --force-weight-averaging"
    )


def average_weights(networks: Sequence[MemberNetwork], X_train: np.ndarray) -> MemberNetwork:
    """One network whose parameters are the mean of the members'.

    Uses ``torch.optim.swa_utils.AveragedModel``; buffers (input statistics) come from the
    first member. When the network has batch norm its statistics are recomputed with
    ``update_bn`` over the training rows ``X_train`` (n_samples, n_features).
    """
    averaged = AveragedModel(networks[0])
    for network in networks:
        averaged.update_parameters(network)
    module: MemberNetwork = averaged.module
    if module.has_batch_norm:
        inputs = module.standardize(torch.as_tensor(X_train, dtype=torch.float32))
        batches = [inputs[start : start + 256] for start in range(0, len(inputs), 256)]
        update_bn(batches, module)
    return module.eval()


def greedy_soup(
    networks: Sequence[MemberNetwork],
    X_train: np.ndarray,
    validation_loss: Callable[[MemberNetwork], float],
) -> tuple[MemberNetwork, list[int]]:
    """Greedy soup (Wortsman et al. 2022): add members best-first while validation improves.

    Parameters
    ----------
    networks : sequence of MemberNetwork
    X_train : ndarray (n_samples, n_features)
        Rows for recomputing batch-norm statistics.
    validation_loss : callable
        Loss of a network on held-out rows; lower is better.

    Returns
    -------
    network : MemberNetwork
        The averaged network of the chosen members.
    chosen : list of int
        Indices of the members in the soup, in the order they were added.
    """
    order = sorted(range(len(networks)), key=lambda i: validation_loss(networks[i]))
    chosen = [order[0]]
    best = average_weights([networks[order[0]]], X_train)
    best_loss = validation_loss(best)
    for index in order[1:]:
        candidate = average_weights([networks[i] for i in [*chosen, index]], X_train)
        loss = validation_loss(candidate)
        if loss < best_loss:
            chosen.append(index)
            best, best_loss = candidate, loss
    return best, chosen


def averaged_network(
    method: SoupMethod,
    networks: Sequence[MemberNetwork],
    X_train: np.ndarray,
    validation: Dataset,
) -> tuple[MemberNetwork, list[int]]:
    """The weight-averaged network of a run and the indices of the members in it.

    Parameters
    ----------
    method : {"uniform", "greedy"}
        ``uniform`` averages every member (:func:`average_weights`); ``greedy`` builds a
        soup (:func:`greedy_soup`) ranked by validation loss: NLL of the true class, or
        mean squared error for regression.
    networks : sequence of MemberNetwork
    X_train : ndarray (n_samples, n_features)
        Rows for recomputing batch-norm statistics.
    validation : Dataset
        The rows a greedy soup is ranked on.

    Returns
    -------
    network : MemberNetwork
    chosen : list of int
    """
    if method == "uniform":
        return average_weights(networks, X_train), list(range(len(networks)))

    def loss(network: MemberNetwork) -> float:
        pred = member_outputs(network, validation.X)[0]
        if validation.task == "classification":
            true_class = pred[np.arange(len(pred)), validation.y]
            return float(-np.mean(np.log(np.clip(true_class, 1e-15, 1))))
        return float(np.mean((pred - validation.y) ** 2))

    return greedy_soup(networks, X_train, loss)
