"""Training settings of one member network, validated in one place."""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from types import MappingProxyType
from typing import Any, Literal, get_args

from ensembles.errors import ConfigError

Activation = Literal["relu", "tanh", "gelu", "elu", "leaky_relu"]
Optimizer = Literal["adam", "sgd"]
ClassWeight = Literal["none", "balanced"]
ACTIVATIONS: tuple[str, ...] = ("relu", "tanh", "gelu", "elu", "leaky_relu")
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
CLASS_WEIGHTS: tuple[str, ...] = get_args(ClassWeight)
_CHOICES = {"activation": ACTIVATIONS, "optimizer": OPTIMIZERS, "class_weight": CLASS_WEIGHTS}
#: Why ``class_weight="balanced"`` is refused for a regression task; ``{setting}`` is the
#: setting as the user spelled it (``--class-weight``, a ``--variants`` item's key).
BALANCED_REGRESSION = "{setting} balanced applies to classification, not regression"
_FLAGS = ("batch_norm", "standardize", "gaussian_head")
_COUNTS = ("batch_size", "epochs", "patience")
_OPTIONAL = ("grad_clip", "patience", "epochs", "learning_rate")

#: Where independent members train: ``auto`` (packed when the members share one network
#: layout, else the loop), ``loop`` (one after another, or ``jobs`` processes), ``packed``
#: (all members as one batched network) or ``ray`` (tasks on a Ray cluster).
Engine = Literal["auto", "loop", "packed", "ray"]
ENGINES: tuple[str, ...] = get_args(Engine)
#: Whether independent members are trained again on training + validation rows for the
#: epochs the validation rows found (:mod:`ensembles.training.refit`): ``auto`` on small
#: data under the budget rule when the members peaked after its 500-step minimum, ``on``
#: for any independent members (not with weight averaging), ``off`` never.
Refit = Literal["auto", "on", "off"]
REFITS: tuple[str, ...] = get_args(Refit)
#: Whether a run on small data also trains its members with :data:`STRONGER_REGULARIZATION`
#: and keeps whichever ensemble has the lower validation loss
#: (:mod:`ensembles.training.regularization`): ``auto`` under the budget rule when
#: none of activation, dropout and input noise is given, ``off`` never.
Regularization = Literal["auto", "off"]
REGULARIZATIONS: tuple[str, ...] = get_args(Regularization)
#: How a weight-averaged model averages its members (:mod:`ensembles.training.weight_averaging`):
#: ``uniform`` (SWA) or ``greedy`` (a soup grown while the validation loss improves).
SoupMethod = Literal["uniform", "greedy"]
SOUP_METHODS: tuple[str, ...] = get_args(SoupMethod)
#: The stronger settings ``--regularization auto`` tries: what Boston housing wants and
#: Concrete refuses (``docs/benchmark.md``, "What Boston wants, the others refuse").
STRONGER_REGULARIZATION: Mapping[str, Any] = MappingProxyType(
    {"activation": "gelu", "dropout": 0.3, "input_noise": 0.1}
)


def settings_words(settings: Mapping[str, Any]) -> str:
    """Settings as a reader says them: ``{"input_noise": 0.1}`` -> ``input noise 0.1``."""
    return ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in settings.items())


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
    nll_beta : float
        Gaussian head: train on beta-NLL (Seitzer et al. 2022), each row's NLL weighted by
        its predicted variance to this power; 0 is plain NLL. Curves and early stopping
        still read the plain NLL.
    optimizer : {"adam", "sgd"}
        SGD uses ``momentum``.
    learning_rate : float or None
        None (the default, ``--learning-rate auto``): chosen from the data by the
        learning-rate range test before training (:mod:`ensembles.training.learning_rate`).
    momentum, weight_decay : float
    batch_size : int
    epochs : int or None
        None (the default): train until the validation loss stops improving, by the budget
        rule of :mod:`ensembles.training.budget`; a number trains exactly that many epochs
        (or fewer with ``patience``).
    grad_clip : float or None
        Clip the gradient norm to this value.
    patience : int or None
        Early stopping: stop when the validation loss has not improved for this many epochs
        and restore the best weights. With ``epochs`` None it replaces the budget rule's.
    input_noise : float
        Standard deviation of Gaussian noise added to standardized inputs while training.
    class_weight : {"none", "balanced"}
        Classification only (refused for regression): ``balanced`` weights each row's
        training loss by ``n_rows / (n_classes * count_c)`` of its class ``c``, counted on
        the member's own training rows (scikit-learn's "balanced" rule), so that rare
        classes weigh as much as common ones. Curves and early stopping still read the
        unweighted NLL.
    """

    hidden_sizes: tuple[int, ...] = (128, 64)
    activation: Activation = "relu"
    dropout: float = 0.2
    batch_norm: bool = False
    standardize: bool = True
    gaussian_head: bool = True
    nll_beta: float = 0.5
    optimizer: Optimizer = "adam"
    learning_rate: float | None = None
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 64
    epochs: int | None = None
    grad_clip: float | None = None
    patience: int | None = None
    input_noise: float = 0.0
    class_weight: ClassWeight = "none"

    def __post_init__(self) -> None:
        problems = _setting_problems(asdict(self), lambda name: "--" + name.replace("_", "-"))
        if not problems and self.batch_norm and self.batch_size < 2:
            # a batch of one row has no batch statistics (torch refuses it mid-training)
            problems.append("--batch-norm needs --batch-size 2 or more, got 1")
        if problems:
            raise ConfigError("; ".join(problems))
        object.__setattr__(self, "hidden_sizes", tuple(int(size) for size in self.hidden_sizes))

    def override_problems(self, overrides: Mapping[str, Any]) -> list[str]:
        """Every problem of a set of setting overrides, one line each (empty when valid).

        Unknown keys come with a "did you mean" suggestion; known ones are checked for
        their type (``2.5`` is no epoch count, ``"64"`` no list of sizes) and their range.
        """
        known = [field.name for field in fields(self)]
        problems = []
        unknown = [key for key in overrides if key not in known]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), known, n=1)
                hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            problems.append(f"unknown training setting {', '.join(hints)}")
        given = {key: value for key, value in overrides.items() if key in known}
        return problems + _setting_problems(given, str)

    def with_overrides(self, overrides: Mapping[str, Any]) -> TrainConfig:
        """A copy with some settings changed.

        Raises
        ------
        ConfigError
            Listing every problem :meth:`override_problems` finds, on one line.
        """
        problems = self.override_problems(overrides)
        if problems:
            raise ConfigError("; ".join(problems))
        return replace(self, **overrides)

    @property
    def resolved(self) -> bool:
        """True when the rate and the epochs are numbers, as a training run needs."""
        return self.learning_rate is not None and self.epochs is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe settings."""
        data = asdict(self)
        data["hidden_sizes"] = list(self.hidden_sizes)
        return data


def _setting_problems(values: Mapping[str, Any], spell: Callable[[str], str]) -> list[str]:
    """One line per invalid entry of ``values`` (setting name -> value), in their order.

    A value of the wrong type gets a type message and no range check; ``spell`` turns a
    setting name into the word the user typed (``--learning-rate`` for the options,
    ``learning_rate`` for ``--variants`` keys).
    """
    problems = []
    for name, value in values.items():
        if value is None and name in _OPTIONAL:
            continue
        word = spell(name)
        if name == "hidden_sizes":
            if (
                not isinstance(value, (list, tuple))
                or not value
                or not all(_is_int(size) and size >= 1 for size in value)
            ):
                shown = list(value) if isinstance(value, tuple) else value
                problems.append(f"{word} must be a list of positive integers, got {shown!r}")
        elif name in _CHOICES:
            if not isinstance(value, str) or value not in _CHOICES[name]:
                problems.append(f"{word} must be one of {', '.join(_CHOICES[name])}, got {value!r}")
        elif name in _FLAGS:
            if not isinstance(value, bool):
                problems.append(f"{word} must be true or false, got {value!r}")
        elif name in _COUNTS:
            if not _is_int(value):
                problems.append(f"{word} must be an integer, got {value!r}")
            elif value < 1:
                problems.append(f"{word} must be at least 1, got {value}")
        elif isinstance(value, bool) or not isinstance(value, numbers.Real):
            problems.append(f"{word} must be a number, got {value!r}")
        elif not math.isfinite(value):
            problems.append(f"{word} must be finite, got {value}")
        elif name == "nll_beta" and not 0 <= value <= 1:
            problems.append(f"{word} must be in [0, 1], got {value}")
        elif name in ("dropout", "momentum") and not 0 <= value < 1:
            problems.append(f"{word} must be in [0, 1), got {value}")
        elif name in ("learning_rate", "grad_clip") and not value > 0:
            problems.append(f"{word} must be positive, got {value}")
        elif value < 0:
            problems.append(f"{word} must be >= 0, got {value}")
    return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
