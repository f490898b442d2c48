"""Options shared by every command that trains networks: network, learning and split groups."""

from __future__ import annotations

import argparse
from typing import Any

from ensembles import defaults
from ensembles.training.config import (
    ACTIVATIONS,
    CLASS_WEIGHTS,
    OPTIMIZERS,
    REGULARIZATIONS,
    STRONGER_REGULARIZATION,
    TrainConfig,
    settings_words,
)

#: The settings a flag left out stands for: the one place they are defined.
_DEFAULT = TrainConfig()


def add_network_options(parser: argparse.ArgumentParser) -> None:
    """The member network's options (group "member network")."""
    network = parser.add_argument_group("member network")
    network.add_argument(
        "--hidden-sizes",
        type=int,
        nargs="+",
        default=list(_DEFAULT.hidden_sizes),
        help="width of each hidden layer",
    )
    # The three settings --regularization auto may strengthen default to None, so that a
    # value given (even the default's) is told from one left out: see pinned_settings.
    network.add_argument(
        "--activation",
        default=None,
        choices=ACTIVATIONS,
        help=f"hidden-layer activation (default: {_DEFAULT.activation})",
    )
    network.add_argument(
        "--dropout",
        type=float,
        default=None,
        help=f"dropout after each hidden layer (0: none; default: {_DEFAULT.dropout})",
    )
    network.add_argument("--batch-norm", action="store_true", help="batch norm after each layer")
    network.add_argument(
        "--no-standardize",
        dest="standardize",
        action="store_false",
        help="feed raw features (statistics otherwise live inside the network)",
    )
    network.add_argument(
        "--gaussian-head",
        action=argparse.BooleanOptionalAction,
        default=_DEFAULT.gaussian_head,
        help="regression: predict mean and variance (Gaussian NLL) for aleatoric uncertainty",
    )
    network.add_argument(
        "--nll-beta",
        type=float,
        default=_DEFAULT.nll_beta,
        help="Gaussian head: train on beta-NLL, each row's NLL weighted by its predicted "
        "variance to this power (0: plain NLL; 0.5 keeps the mean from neglecting noisy rows)",
    )


def add_regularization_option(group: argparse._ActionsContainer) -> None:
    """``--regularization``, for the commands that train whole ensembles."""
    group.add_argument(
        "--regularization",
        default="auto",
        choices=REGULARIZATIONS,
        help=f"auto: on up to {defaults.REGULARIZATION_MAX_ROWS} rows, under the budget rule, "
        "with none of --activation, --dropout and --input-noise given, also train the members "
        f"with {settings_words(STRONGER_REGULARIZATION)} and keep the ensemble with the lower "
        "validation loss; off: train the settings as given",
    )


def add_learning_options(parser: argparse.ArgumentParser) -> None:
    """Optimizer, schedule and regularization options (group "learning")."""
    learning = parser.add_argument_group("learning")
    learning.add_argument(
        "--optimizer",
        default=_DEFAULT.optimizer,
        choices=OPTIMIZERS,
        help="adam is AdamW (decoupled --weight-decay); sgd uses --momentum",
    )
    learning.add_argument(
        "--learning-rate",
        type=learning_rate,
        default=None,
        metavar="RATE",
        help="optimizer step size, or auto: one tenth of the rate at the lowest loss of a "
        "learning-rate range test run before training (default: auto)",
    )
    learning.add_argument("--momentum", type=float, default=_DEFAULT.momentum, help="SGD momentum")
    learning.add_argument(
        "--batch-size", type=int, default=_DEFAULT.batch_size, help="rows per optimizer step"
    )
    learning.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="passes over the training rows (default: until the validation loss stops "
        "improving, with patience and a cap counted in optimizer steps; see docs/training.md)",
    )
    learning.add_argument(
        "--weight-decay",
        type=float,
        default=_DEFAULT.weight_decay,
        help="L2 penalty on the weights (0: none)",
    )
    learning.add_argument("--grad-clip", type=float, default=None, help="max gradient norm")
    learning.add_argument(
        "--patience",
        type=int,
        default=None,
        help="early stopping patience in epochs; keeps the best weights (not with --strategy "
        "horizontal or snapshot)",
    )
    learning.add_argument(
        "--input-noise",
        type=float,
        default=None,
        help="standard deviation of Gaussian noise on the standardized inputs while training "
        f"(default: {_DEFAULT.input_noise})",
    )
    learning.add_argument(
        "--class-weight",
        default=_DEFAULT.class_weight,
        choices=CLASS_WEIGHTS,
        help="classification: balanced weights each row's training loss by n_rows / "
        "(n_classes x its class's count) on the member's own rows, for imbalanced targets "
        "(curves and early stopping still read the unweighted NLL)",
    )


def learning_rate(text: str) -> float | None:
    """``--learning-rate``: a positive number, or ``auto`` (None: chosen from the data)."""
    if text.strip().lower() == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {text!r}") from None


def add_split_options(parser: argparse.ArgumentParser) -> None:
    """The train / validation / test fractions (group "split")."""
    split = parser.add_argument_group("split")
    split.add_argument(
        "--validation-fraction",
        type=float,
        default=None,
        help="share of rows for validation (early stopping, combiner fitting); default: "
        f"{defaults.VALIDATION_FRACTION * 100:.0f}%% of the rows, raised to "
        f"{defaults.MIN_VALIDATION_ROWS} rows but at most "
        f"{defaults.MAX_VALIDATION_FRACTION * 100:.0f}%%",
    )
    split.add_argument(
        "--test-fraction",
        type=float,
        default=defaults.TEST_FRACTION,
        help="share of rows for the test split (never trained or fitted on)",
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` the network and learning options describe."""
    return TrainConfig(
        hidden_sizes=tuple(args.hidden_sizes),
        activation=_given_or_default(args, "activation"),
        dropout=_given_or_default(args, "dropout"),
        batch_norm=args.batch_norm,
        standardize=args.standardize,
        gaussian_head=args.gaussian_head,
        nll_beta=args.nll_beta,
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        epochs=args.epochs,
        grad_clip=args.grad_clip,
        patience=args.patience,
        input_noise=_given_or_default(args, "input_noise"),
        class_weight=args.class_weight,
    )


def pinned_settings(args: argparse.Namespace) -> tuple[str, ...]:
    """The settings of :data:`STRONGER_REGULARIZATION` the user gave, at any value.

    ``--regularization auto`` leaves them as given: ``--dropout 0.2`` pins the dropout as
    much as ``--dropout 0.1`` does, though 0.2 is the default.
    """
    return tuple(name for name in STRONGER_REGULARIZATION if getattr(args, name) is not None)


def _given_or_default(args: argparse.Namespace, name: str) -> Any:
    value = getattr(args, name)
    return getattr(_DEFAULT, name) if value is None else value
