"""The one training loop every strategy uses, with callbacks for schedules and checkpoints."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ensembles.errors import ConfigError
from ensembles.metrics import HALF_LOG_TWO_PI
from ensembles.training.config import BALANCED_REGRESSION, TrainConfig
from ensembles.training.network import MemberNetwork

State = dict[str, torch.Tensor]
#: ``(output, target) -> (..., n_rows)`` per-row loss terms of a batch (outputs ``(...,
#: n_rows, n_outputs)``: one network's, or every packed member's at once).
RowLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
    x_train, t_train = training_tensors(network, X_train, y_train)
    x_val, t_val = training_tensors(network, X_val, y_val)
    optimizer = make_optimizer(network, config)
    loss_fn = loss_function(network)
    plain = objective_is_plain(network, config)
    objective_terms = objective_rows(network, config, y_train)
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
            loss = objective_terms(output, t_train[rows]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(network.parameters(), config.grad_clip)
            optimizer.step()
            value = loss.item() if plain else _reported(loss_fn, output, t_train[rows])
            stopped = any([callback.on_step_end(step, value) for callback in callbacks])
            step += 1
            seen += len(rows)
            total_loss += value * len(rows)
            total_metric += metric_sum(network, output.detach(), t_train[rows])
            if stopped:
                break
        train_loss = total_loss / seen
        log = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_metric": finish_metric(network, total_metric, seen),
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


def training_tensors(
    network: MemberNetwork, X: np.ndarray, y: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows as the layers see them (imputed, standardized) and targets as the loss sees them."""
    with torch.no_grad():
        inputs = network.standardize(torch.as_tensor(X, dtype=torch.float32))
    if network.task == "classification":
        return inputs, torch.as_tensor(y, dtype=torch.long)
    targets = (torch.as_tensor(y, dtype=torch.float32) - network.target_mean) / network.target_scale
    return inputs, targets


def make_optimizer(
    network: nn.Module, config: TrainConfig, fused: bool = False
) -> torch.optim.Optimizer:
    """AdamW, or SGD with momentum, over ``network``'s parameters, as ``config`` says.

    ``fused`` runs torch's fused CPU kernel (one call for every parameter: 3.4x faster for
    a packed ensemble's few large tensors).
    """
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            network.parameters(),
            lr=config.learning_rate,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            **({"fused": True} if fused else {}),
        )
    return torch.optim.AdamW(
        network.parameters(),
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        **({"fused": True} if fused else {}),
    )


def row_losses(network: MemberNetwork) -> RowLoss:
    """Per-row terms of the loss every curve reports (its mean over the rows).

    Cross-entropy, squared error (averaged over the outputs) or the plain Gaussian NLL
    (averaged over the outputs) of ``(output, target)`` batches. Outputs are ``(..., rows,
    outputs)`` and the terms ``(..., rows)``: one network's batch, or every packed member's.
    """
    if network.task == "classification":
        return _cross_entropy
    if not network.gaussian:
        return lambda output, target: ((output - target) ** 2).mean(dim=-1)
    n = network.n_outputs

    def rows(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        variance = torch.exp(output[..., n:])
        nll = nn.functional.gaussian_nll_loss(
            output[..., :n], target, variance, full=True, reduction="none"
        )
        return nll.mean(dim=-1)

    return rows


def _cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy of logits ``(..., rows, classes)``: torch takes the classes in
    dimension 1 (the identity for one batch)."""
    return nn.functional.cross_entropy(output.movedim(-1, 1), target, reduction="none")


def loss_function(network: MemberNetwork) -> Any:
    """The loss every curve reports: cross-entropy, MSE or the plain Gaussian NLL."""
    rows = row_losses(network)
    return lambda output, target: rows(output, target).mean()


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


def objective_is_plain(network: MemberNetwork, config: TrainConfig) -> bool:
    """Whether the optimizer minimizes the reported loss itself (no beta-NLL, no weights)."""
    return not network.gaussian and config.class_weight != "balanced"


def objective_rows(network: MemberNetwork, config: TrainConfig, y_train: np.ndarray) -> RowLoss:
    """Per-row terms of what the optimizer minimizes: beta-NLL, class-weighted
    cross-entropy, or the reported loss (:func:`row_losses`)."""
    if network.gaussian:
        return _beta_nll(network, config.nll_beta)
    if config.class_weight == "balanced":
        weights = balanced_class_weights(y_train, network.n_outputs)
        return _weighted_cross_entropy(torch.as_tensor(weights, dtype=torch.float32))
    return row_losses(network)


def _weighted_cross_entropy(class_weights: torch.Tensor) -> RowLoss:
    """Cross-entropy with each row weighted by its class's weight (averaged by the caller).

    The batch mean of the weighted row losses, not torch's ``CrossEntropyLoss(weight=...)``
    (which divides by the batch's summed weights): the weights average to 1 over the
    member's rows, so the step size keeps its scale and a batch counts by its rows.
    """

    def rows(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return class_weights[target] * _cross_entropy(output, target)

    return rows


def _beta_nll(network: MemberNetwork, beta: float) -> RowLoss:
    """What the optimizer of a Gaussian head minimizes: beta-NLL.

    beta-NLL (Seitzer et al. 2022) weighs each row's Gaussian NLL by its predicted variance
    to the power ``beta``, with no gradient through the weight. Plain NLL (beta 0) lets the
    mean neglect the rows it has declared noisy (their gradients shrink by 1 / variance);
    beta 1 gives the mean the gradient of squared error, and 0.5 is the paper's advice.
    """
    n = network.n_outputs

    def rows(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mean, log_variance = output[..., :n], output[..., n:]
        variance = torch.exp(log_variance)
        nll = 0.5 * (log_variance + (mean - target) ** 2 / variance) + HALF_LOG_TWO_PI
        return (nll * variance.detach() ** beta).mean(dim=-1)

    return rows


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


def metric_sum(network: MemberNetwork, output: torch.Tensor, target: torch.Tensor) -> float:
    """Correct predictions (classification) or summed squared error in target units."""
    if network.task == "classification":
        return float((output.argmax(dim=1) == target).sum())
    error = (output[:, : network.n_outputs] - target) * network.target_scale
    return float((error**2).mean(dim=1).sum())


def finish_metric(network: MemberNetwork, total: float, n_rows: int) -> float:
    """Accuracy, or RMSE, from a :func:`metric_sum` over ``n_rows`` rows."""
    return total / n_rows if network.task == "classification" else math.sqrt(total / n_rows)


def _evaluate(
    network: MemberNetwork, loss_fn: Any, inputs: torch.Tensor, targets: torch.Tensor
) -> dict[str, float]:
    network.eval()
    with torch.no_grad():
        output = network(inputs)
        loss = float(loss_fn(output, targets))
        metric = finish_metric(network, metric_sum(network, output, targets), len(inputs))
    return {"val_loss": loss, "val_metric": metric}


def restore(network: nn.Module, state: State) -> None:
    """Load a state captured by :func:`snapshot_state`."""
    network.load_state_dict(copy.deepcopy(state))
