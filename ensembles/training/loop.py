"""The one training loop every strategy uses, with callbacks for schedules and checkpoints."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ensembles.errors import ConfigError
from ensembles.training.config import BALANCED_REGRESSION, TrainConfig
from ensembles.training.network import MemberNetwork

State = dict[str, torch.Tensor]


class Callback:
    """Hooks into :func:`fit_member`; every method is optional."""

    def learning_rate(self, step: int, steps_per_epoch: int) -> float | None:
        """The learning rate for optimizer step ``step`` (0-based), or None to keep it."""
        return None

    def on_step_end(self, step: int, loss: float) -> bool:
        """Called after optimizer step ``step`` (0-based) with its loss; True stops training."""
        return False

    def on_epoch_end(self, epoch: int, network: MemberNetwork, log: dict[str, float]) -> bool:
        """Called after each epoch (1-based) with its log; return True to stop training."""
        return False

    def on_train_end(self, network: MemberNetwork) -> None:
        """Called once when training ends."""


@dataclass
class FitResult:
    """What one training run produced.

    Attributes
    ----------
    curves : list of dict
        One entry per epoch: epoch, train_loss, val_loss, train_metric, val_metric,
        learning_rate. The metric is accuracy (classification) or RMSE (regression).
    epochs_run : int
    diverged : bool
        True when the training loss became NaN or infinite (training then stops).
    """

    curves: list[dict[str, float]] = field(default_factory=list)
    epochs_run: int = 0
    diverged: bool = False


def snapshot_state(network: nn.Module) -> State:
    """A detached copy of a module's parameters and buffers."""
    return {key: value.detach().clone() for key, value in network.state_dict().items()}


def fit_member(
    network: MemberNetwork,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainConfig,
    seed: int,
    callbacks: list[Callback] | None = None,
) -> FitResult:
    """Train ``network`` in place and record its learning curves.

    The optimizer minimizes beta-NLL for a Gaussian head and, with ``class_weight``
    ``balanced``, the class-weighted cross-entropy of :func:`balanced_class_weights` on
    ``y_train``; the curves (and the step losses callbacks see) report the plain loss.

    Parameters
    ----------
    network : MemberNetwork
    X_train : ndarray (n_train, n_features)
    y_train : ndarray (n_train,) int class indices or (n_train, n_outputs) float values
    X_val, y_val : the validation rows, same layout
    config : TrainConfig
    seed : int
        Seeds batch order, dropout and input noise.
    callbacks : list of Callback

    Returns
    -------
    FitResult

    Raises
    ------
    ConfigError
        When the rate or the epochs are still "auto", or ``class_weight`` is ``balanced``
        for a regression network.
    """
    if not config.resolved:
        raise ConfigError(
            "fit_member needs a numeric learning rate and epochs; resolve 'auto' first "
            "(ensembles.training.members.resolve_learning_rate and the budget rule)"
        )
    if config.class_weight == "balanced" and network.task != "classification":
        raise ConfigError(BALANCED_REGRESSION.format(setting="class_weight"))
    callbacks = callbacks or []
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x_train, t_train = _tensors(network, X_train, y_train)
    x_val, t_val = _tensors(network, X_val, y_val)
    optimizer = _optimizer(network, config)
    loss_fn = _loss_function(network)
    objective = _objective(network, config, y_train, loss_fn)
    n_rows = len(x_train)
    starts = batch_starts(n_rows, config.batch_size, network.has_batch_norm)
    steps_per_epoch = len(starts)
    result = FitResult()
    step = 0
    stopped = False
    for epoch in range(1, config.epochs + 1):
        network.train()
        order = torch.randperm(n_rows, generator=generator)
        total_loss, total_metric, seen = 0.0, 0.0, 0
        learning_rate = optimizer.param_groups[0]["lr"]
        for start, stop in zip(starts, [*starts[1:], n_rows], strict=True):
            rows = order[start:stop]
            learning_rate = _scheduled_rate(callbacks, step, steps_per_epoch, optimizer)
            inputs = x_train[rows]
            if config.input_noise > 0:
                inputs = inputs + config.input_noise * torch.randn(
                    inputs.shape, generator=generator
                )
            output = network(inputs)
            loss = objective(output, t_train[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(network.parameters(), config.grad_clip)
            optimizer.step()
            value = (
                loss.item() if objective is loss_fn else _reported(loss_fn, output, t_train[rows])
            )
            stopped = any([callback.on_step_end(step, value) for callback in callbacks])
            step += 1
            seen += len(rows)
            total_loss += value * len(rows)
            total_metric += _metric_sum(network, output.detach(), t_train[rows])
            if stopped:
                break
        train_loss = total_loss / seen
        log = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_metric": _finish_metric(network, total_metric, seen),
            **_evaluate(network, loss_fn, x_val, t_val),
            "learning_rate": learning_rate,
        }
        result.curves.append(log)
        result.epochs_run = epoch
        if not math.isfinite(train_loss):
            result.diverged = True
            break
        stop = [callback.on_epoch_end(epoch, network, log) for callback in callbacks]
        if stopped or any(stop):
            break
    for callback in callbacks:
        callback.on_train_end(network)
    network.eval()
    return result


def batch_starts(n_rows: int, batch_size: int, batch_norm: bool) -> list[int]:
    """First row of every mini-batch of an epoch.

    With batch norm a final batch of one row cannot be normalized, so it joins the batch
    before it; every epoch then has the same number of steps, which the learning-rate
    schedules count on.
    """
    starts = list(range(0, n_rows, batch_size))
    if batch_norm and len(starts) > 1 and n_rows - starts[-1] == 1:
        starts.pop()
    return starts


def member_outputs(network: MemberNetwork, X: np.ndarray) -> tuple[np.ndarray, ...]:
    """Served outputs on raw features, as numpy: ``(probabilities,)`` or ``(value[, variance])``."""
    network.eval()
    with torch.no_grad():
        outputs = network.predict(torch.as_tensor(X, dtype=torch.float32))
    return tuple(output.numpy().astype(np.float64) for output in outputs)


def _tensors(
    network: MemberNetwork, X: np.ndarray, y: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        inputs = network.standardize(torch.as_tensor(X, dtype=torch.float32))
    if network.task == "classification":
        return inputs, torch.as_tensor(y, dtype=torch.long)
    targets = (torch.as_tensor(y, dtype=torch.float32) - network.target_mean) / network.target_scale
    return inputs, targets


def _optimizer(network: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            network.parameters(),
            lr=config.learning_rate,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    return torch.optim.AdamW(
        network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )


def _loss_function(network: MemberNetwork) -> Any:
    """The loss every curve reports: cross-entropy, MSE or the plain Gaussian NLL."""
    if network.task == "classification":
        return nn.CrossEntropyLoss()
    if not network.gaussian:
        return nn.MSELoss()
    gaussian_nll = nn.GaussianNLLLoss(full=True)
    n = network.n_outputs

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return gaussian_nll(output[:, :n], target, torch.exp(output[:, n:]))

    return loss


def balanced_class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """scikit-learn's "balanced" class weights of the rows ``y``.

    ``n_rows / (n_present * count_c)`` for each class ``c`` present in ``y``, where
    ``n_present`` counts the classes present (``compute_class_weight("balanced",
    classes=np.unique(y), y=y)``): the rows' weights then average to 1. A class absent
    from ``y`` gets 0 (no row carries it).

    Parameters
    ----------
    y : np.ndarray of int, shape (n_rows,)
        Class indices in ``0..n_classes - 1``.
    n_classes : int

    Returns
    -------
    np.ndarray, shape (n_classes,)
    """
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = len(y) / (present.sum() * counts[present])
    return weights


def _objective(
    network: MemberNetwork, config: TrainConfig, y_train: np.ndarray, loss_fn: Any
) -> Any:
    """What the optimizer minimizes: beta-NLL, class-weighted cross-entropy or ``loss_fn``."""
    if network.gaussian:
        return _beta_nll(network, config.nll_beta)
    if config.class_weight == "balanced":
        weights = balanced_class_weights(y_train, network.n_outputs)
        return _weighted_cross_entropy(torch.as_tensor(weights, dtype=torch.float32))
    return loss_fn


def _weighted_cross_entropy(class_weights: torch.Tensor) -> Any:
    """Cross-entropy with each row weighted by its class's weight, averaged over the batch.

    The batch mean of the weighted row losses, not torch's ``CrossEntropyLoss(weight=...)``
    (which divides by the batch's summed weights): the weights average to 1 over the
    member's rows, so the step size keeps its scale and a batch counts by its rows.
    """

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        rows = nn.functional.cross_entropy(output, target, reduction="none")
        return (class_weights[target] * rows).mean()

    return loss


def _beta_nll(network: MemberNetwork, beta: float) -> Any:
    """What the optimizer of a Gaussian head minimizes: beta-NLL.

    beta-NLL (Seitzer et al. 2022) weighs each row's Gaussian NLL by its predicted variance
    to the power ``beta``, with no gradient through the weight. Plain NLL (beta 0) lets the
    mean neglect the rows it has declared noisy (their gradients shrink by 1 / variance);
    beta 1 gives the mean the gradient of squared error, and 0.5 is the paper's advice.
    """
    n = network.n_outputs
    half_log_two_pi = 0.5 * math.log(2 * math.pi)

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mean, log_variance = output[:, :n], output[:, n:]
        variance = torch.exp(log_variance)
        nll = 0.5 * (log_variance + (mean - target) ** 2 / variance) + half_log_two_pi
        return (nll * variance.detach() ** beta).mean()

    return loss


def _reported(loss_fn: Any, output: torch.Tensor, target: torch.Tensor) -> float:
    """The reported loss of a batch whose optimizer minimized another objective."""
    with torch.no_grad():
        return float(loss_fn(output, target))


def _scheduled_rate(
    callbacks: list[Callback], step: int, steps_per_epoch: int, optimizer: torch.optim.Optimizer
) -> float:
    for callback in callbacks:
        rate = callback.learning_rate(step, steps_per_epoch)
        if rate is not None:
            for group in optimizer.param_groups:
                group["lr"] = rate
    return float(optimizer.param_groups[0]["lr"])


def _metric_sum(network: MemberNetwork, output: torch.Tensor, target: torch.Tensor) -> float:
    """Correct predictions (classification) or summed squared error in target units."""
    if network.task == "classification":
        return float((output.argmax(dim=1) == target).sum())
    error = (output[:, : network.n_outputs] - target) * network.target_scale
    return float((error**2).mean(dim=1).sum())


def _finish_metric(network: MemberNetwork, total: float, n_rows: int) -> float:
    return total / n_rows if network.task == "classification" else math.sqrt(total / n_rows)


def _evaluate(
    network: MemberNetwork, loss_fn: Any, inputs: torch.Tensor, targets: torch.Tensor
) -> dict[str, float]:
    network.eval()
    with torch.no_grad():
        output = network(inputs)
        loss = float(loss_fn(output, targets))
        metric = _finish_metric(network, _metric_sum(network, output, targets), len(inputs))
    return {"val_loss": loss, "val_metric": metric}


def restore(network: nn.Module, state: State) -> None:
    """Load a state captured by :func:`snapshot_state`."""
    network.load_state_dict(copy.deepcopy(state))
