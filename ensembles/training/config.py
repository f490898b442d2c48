"""Training settings of one member network, validated in one place."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from ensembles.errors import ConfigError

Activation = Literal["relu", "tanh", "gelu", "elu", "leaky_relu"]
Optimizer = Literal["adam", "sgd"]
ACTIVATIONS: tuple[str, ...] = ("relu", "tanh", "gelu", "elu", "leaky_relu")
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")


@dataclass(frozen=True)
class TrainConfig:
    """How one member is built and trained: the "better learning" and "better
    generalization" levers.

    Attributes
    ----------
    hidden_sizes : tuple of int
        Width of each hidden layer.
    activation : {"relu", "tanh", "gelu", "elu", "leaky_relu"}
    dropout : float
        Dropout probability after each hidden layer (0 disables).
    batch_norm : bool
        Batch normalization after each hidden linear layer.
    standardize : bool
        Standardize inputs with training-row statistics stored inside the network.
    gaussian_head : bool
        Regression only (ignored for classification): predict a mean and a variance,
        trained with Gaussian NLL, so aleatoric variance is served.
    optimizer : {"adam", "sgd"}
        SGD uses ``momentum``.
    learning_rate, momentum, weight_decay : float
    batch_size, epochs : int
    grad_clip : float or None
        Clip the gradient norm to this value.
    patience : int or None
        Early stopping: stop when the validation loss has not improved for this many epochs
        and restore the best weights.
    input_noise : float
        Standard deviation of Gaussian noise added to standardized inputs while training.
    """

    hidden_sizes: tuple[int, ...] = (128, 64)
    activation: Activation = "relu"
    dropout: float = 0.1
    batch_norm: bool = False
    standardize: bool = True
    gaussian_head: bool = True
    optimizer: Optimizer = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 64
    epochs: int = 30
    grad_clip: float | None = None
    patience: int | None = None
    input_noise: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if not self.hidden_sizes or any(int(size) < 1 for size in self.hidden_sizes):
            problems.append(
                f"hidden sizes must be positive integers, got {list(self.hidden_sizes)}"
            )
        if self.activation not in ACTIVATIONS:
            problems.append(
                f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.optimizer not in OPTIMIZERS:
            problems.append(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("learning_rate",):
            if not getattr(self, name) > 0:
                problems.append(
                    f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}"
                )
        for name in ("weight_decay", "input_noise", "momentum"):
            if getattr(self, name) < 0:
                problems.append(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "epochs"):
            if int(getattr(self, name)) < 1:
                problems.append(
                    f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}"
                )
        if self.grad_clip is not None and not self.grad_clip > 0:
            problems.append(f"grad-clip must be positive, got {self.grad_clip}")
        if self.patience is not None and self.patience < 1:
            problems.append(f"patience must be at least 1, got {self.patience}")
        if problems:
            raise ConfigError("; ".join(problems))
        object.__setattr__(self, "hidden_sizes", tuple(int(size) for size in self.hidden_sizes))

    def with_overrides(self, overrides: dict[str, Any]) -> TrainConfig:
        """A copy with some settings changed; unknown keys raise with a suggestion."""
        known = {field.name for field in fields(self)}
        unknown = [key for key in overrides if key not in known]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, known, n=1)
                hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            raise ConfigError(f"unknown training setting {', '.join(hints)}")
        values = dict(overrides)
        if "hidden_sizes" in values:
            values["hidden_sizes"] = tuple(values["hidden_sizes"])
        return replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe settings."""
        data = asdict(self)
        data["hidden_sizes"] = list(self.hidden_sizes)
        return data
