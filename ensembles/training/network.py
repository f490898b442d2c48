"""The member network: an MLP with input standardization and output transform built in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ensembles.manifest import Task
from ensembles.training.config import TrainConfig

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}
_MIN_VARIANCE = 1e-6
#: The Gaussian head's log-variance, in standardized target units, is clamped to this range
#: inside the network (so inside the exported graph): variances from about 2e-9 (below the
#: 1e-6 floor added on top) to 4.9e8 times the target's variance, finite in float32 for any
#: target scale below 1e14, however far a row lies outside the training range.
LOG_VARIANCE_RANGE = (-20.0, 20.0)


class MemberNetwork(nn.Module):
    """An MLP member.

    ``forward`` returns what the loss needs: logits (classification), standardized values,
    or standardized mean and log-variance (Gaussian head). ``predict`` returns what is
    exported and served: probabilities, or values (and variances) in the target's units.
    Input and target statistics are buffers, so the exported graph takes raw features.

    Parameters
    ----------
    n_features, n_outputs : int
    task : {"classification", "regression"}
    config : TrainConfig
    input_mean, input_scale : ndarray (n_features,)
    target_mean, target_scale : ndarray (n_outputs,)
        Regression target statistics (ignored for classification).
    imputation : Imputation, optional
        Fill values of the member's own rows for the features that have missing-indicator
        columns (:meth:`~ensembles.tabular.TabularSpec.imputed_columns`).
    """

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        task: Task,
        config: TrainConfig,
        input_mean: np.ndarray,
        input_scale: np.ndarray,
        target_mean: np.ndarray | None = None,
        target_scale: np.ndarray | None = None,
        imputation: Imputation | None = None,
    ) -> None:
        super().__init__()
        self.task = task
        self.gaussian = task == "regression" and config.gaussian_head
        layers: list[nn.Module] = []
        width = n_features
        for size in config.hidden_sizes:
            layers.append(nn.Linear(width, size))
            if config.batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(_ACTIVATIONS[config.activation]())
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_outputs * (2 if self.gaussian else 1))
        self.n_outputs = n_outputs
        self.has_batch_norm = config.batch_norm
        ones = np.ones(n_outputs, dtype=np.float32)
        self.register_buffer("input_mean", _tensor(input_mean))
        self.register_buffer("input_scale", _tensor(input_scale))
        self.register_buffer(
            "target_mean", _tensor(target_mean if target_mean is not None else 0 * ones)
        )
        self.register_buffer(
            "target_scale", _tensor(target_scale if target_scale is not None else ones)
        )
        self.imputes = imputation is not None and len(imputation.fill) > 0
        if self.imputes:
            self.register_buffer("impute_values", _selection(imputation.values, n_features))
            self.register_buffer("impute_flags", _selection(imputation.indicators, n_features))
            self.register_buffer("impute_fill", _tensor(imputation.fill))

    def impute(self, x: torch.Tensor) -> torch.Tensor:
        """Missing cells (indicator 1) set to this member's own fill values.

        Dense selections (matrix products) rather than indexing, so the exported graph is
        plain MatMul and Mul: ``x + missing * (fill - value)`` on the flagged columns.
        """
        if not self.imputes:
            return x
        values = x @ self.impute_values.T
        missing = x @ self.impute_flags.T
        return x + (missing * (self.impute_fill - values)) @ self.impute_values

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """Raw features to the scale the layers see (missing cells imputed first)."""
        return (self.impute(x) - self.input_mean) / self.input_scale

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Training output on standardized inputs ``z`` (batch, n_features).

        Returns logits (batch, n_classes), standardized values (batch, n_outputs), or for a
        Gaussian head the standardized mean and log-variance side by side (batch, 2*n_outputs),
        the log-variance clamped to :data:`LOG_VARIANCE_RANGE`.
        """
        raw = self.head(self.body(z))
        if not self.gaussian:
            return raw
        mean, log_variance = raw[:, : self.n_outputs], raw[:, self.n_outputs :]
        return torch.cat([mean, log_variance.clamp(*LOG_VARIANCE_RANGE)], dim=1)

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Served outputs on raw features ``x`` (batch, n_features).

        Returns ``(probabilities,)``, ``(value,)`` or ``(value, variance)``, each
        (batch, n_outputs), in the target's units.
        """
        raw = self.forward(self.standardize(x))
        if self.task == "classification":
            return (torch.softmax(raw, dim=-1),)
        if not self.gaussian:
            return (raw * self.target_scale + self.target_mean,)
        mean, log_variance = raw[:, : self.n_outputs], raw[:, self.n_outputs :]
        variance = (torch.exp(log_variance) + _MIN_VARIANCE) * self.target_scale**2
        return mean * self.target_scale + self.target_mean, variance


class ExportedMember(nn.Module):
    """The exported face of a member: ``forward`` is ``MemberNetwork.predict``."""

    def __init__(self, network: MemberNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Probabilities, or values (and variances), on raw features."""
        return self.network.predict(x)


@dataclass(frozen=True)
class Imputation:
    """Per-member fill values of encoded columns that have a missing-indicator column.

    Attributes
    ----------
    values, indicators : ndarray (k,) int
        Encoded column of each value and of its indicator.
    fill : ndarray (k,)
        The median of the value over the member's own rows where it was present.
    """

    values: np.ndarray
    indicators: np.ndarray
    fill: np.ndarray


def _selection(columns: np.ndarray, n_features: int) -> torch.Tensor:
    """(k, n_features) rows that pick ``columns`` out of a feature row."""
    selection = np.zeros((len(columns), n_features), dtype=np.float32)
    selection[np.arange(len(columns)), columns] = 1.0
    return torch.as_tensor(selection)


def _tensor(values: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float32))
