"""Options shared by every command that trains networks: network, learning and split groups."""

from __future__ import annotations

import argparse

from ensembles.training.config import TrainConfig


def add_network_options(parser: argparse.ArgumentParser) -> None:
    """The member network's options (group "member network")."""
    network = parser.add_argument_group("member network")
    network.add_argument(
        "--hidden-sizes", type=int, nargs="+", default=[128, 64], help="width of each hidden layer"
    )
    network.add_argument(
        "--activation",
        default="relu",
        choices=["relu", "tanh", "gelu", "elu", "leaky_relu"],
        help="hidden-layer activation",
    )
    network.add_argument(
        "--dropout", type=float, default=0.1, help="dropout after each hidden layer (0: none)"
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
        default=True,
        help="regression: predict mean and variance (Gaussian NLL) for aleatoric uncertainty",
    )


def add_learning_options(parser: argparse.ArgumentParser) -> None:
    """Optimizer, schedule and regularization options (group "learning")."""
    learning = parser.add_argument_group("learning")
    learning.add_argument(
        "--optimizer",
        default="adam",
        choices=["adam", "sgd"],
        help="adam is AdamW (decoupled --weight-decay); sgd uses --momentum",
    )
    learning.add_argument("--learning-rate", type=float, default=1e-3, help="optimizer step size")
    learning.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    learning.add_argument("--batch-size", type=int, default=64, help="rows per optimizer step")
    learning.add_argument("--epochs", type=int, default=30, help="passes over the training rows")
    learning.add_argument(
        "--weight-decay", type=float, default=0.0, help="L2 penalty on the weights (0: none)"
    )
    learning.add_argument("--grad-clip", type=float, default=None, help="max gradient norm")
    learning.add_argument(
        "--patience",
        type=int,
        default=None,
        help="early stopping patience in epochs; keeps the best weights (not with --strategy "
        "horizontal or snapshot)",
    )
    learning.add_argument("--input-noise", type=float, default=0.0, help="Gaussian input noise")


def add_split_options(parser: argparse.ArgumentParser) -> None:
    """The train / validation / test fractions (group "split")."""
    split = parser.add_argument_group("split")
    split.add_argument(
        "--validation-fraction",
        type=float,
        default=0.2,
        help="share of rows for validation (early stopping, combiner fitting)",
    )
    split.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="share of rows for the test split (never trained or fitted on)",
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` the network and learning options describe."""
    return TrainConfig(
        hidden_sizes=tuple(args.hidden_sizes),
        activation=args.activation,
        dropout=args.dropout,
        batch_norm=args.batch_norm,
        standardize=args.standardize,
        gaussian_head=args.gaussian_head,
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        epochs=args.epochs,
        grad_clip=args.grad_clip,
        patience=args.patience,
        input_noise=args.input_noise,
    )
