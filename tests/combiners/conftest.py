"""Shared toys for the combiner tests: seeded member arrays and the combiner cases.

Tests reach them through fixtures (``make_toy``, ``combiner_cases``) and through the
``case``/``task`` parametrization below, never by importing this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from ensembles.combiners import (
    BlendingCombiner,
    Combiner,
    MeanCombiner,
    StackingCombiner,
    VotingCombiner,
)


@dataclass
class Toy:
    """Member outputs, targets and raw features of one small synthetic problem."""

    task: str
    member_preds: np.ndarray  # (n_members, n_samples, n_outputs)
    y: np.ndarray
    X: np.ndarray  # (n_samples, n_features)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def make_classification_toy(
    seed: int = 0, n_members: int = 4, n_samples: int = 160, n_classes: int = 3
) -> Toy:
    """Members are noisy views of the true class logits; y is drawn from the truth."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, 5))
    true_logits = X @ rng.normal(size=(5, n_classes))
    y = np.array([rng.choice(n_classes, p=p) for p in softmax(true_logits)])
    noise = rng.normal(scale=1.0, size=(n_members, n_samples, n_classes))
    scales = np.linspace(0.5, 1.5, n_members)[:, None, None]
    member_preds = softmax(true_logits[None] + noise * scales)
    return Toy("classification", member_preds, y, X)


def make_regression_toy(
    seed: int = 0, n_members: int = 4, n_samples: int = 160, n_outputs: int = 2
) -> Toy:
    """Members are the true values plus member-specific noise; y adds its own noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, 5))
    truth = X @ rng.normal(size=(5, n_outputs))
    y = truth + rng.normal(scale=0.3, size=truth.shape)
    scales = np.linspace(0.2, 1.0, n_members)[:, None, None]
    member_preds = truth[None] + rng.normal(size=(n_members, n_samples, n_outputs)) * scales
    return Toy("regression", member_preds, y, X)


@dataclass
class Case:
    """One combiner configuration of the common suite.

    ``identical`` names what combining identical members must give: ``"member"`` (the
    member's own output), ``"one_hot"`` (vote), ``"temperature"`` (the member's output
    rescaled by the learned temperature) or ``"stack"`` (see the common test).
    """

    name: str
    make: Callable[[str], Combiner]
    tasks: tuple[str, ...]
    identical: str
    order_invariant: bool


CASES = [
    Case("mean", MeanCombiner, ("classification", "regression"), "member", True),
    Case("vote", VotingCombiner, ("classification",), "one_hot", True),
    Case("blend", BlendingCombiner, ("classification", "regression"), "member", False),
    Case(
        "blend-greedy",
        lambda task: BlendingCombiner(task, method="greedy", n_rounds=20),
        ("classification", "regression"),
        "member",
        False,
    ),
    Case("stack", StackingCombiner, ("classification", "regression"), "stack", False),
    Case(
        "stack-passthrough",
        lambda task: StackingCombiner(task, passthrough=True),
        ("classification", "regression"),
        "stack",
        False,
    ),
    Case(
        "mean-calibrated",
        lambda task: MeanCombiner(task, calibrate=True),
        ("classification",),
        "temperature",
        True,
    ),
    Case(
        "stack-calibrated",
        lambda task: StackingCombiner(task, calibrate=True),
        ("classification",),
        "stack",
        False,
    ),
]


def _make_toy(task: str, seed: int = 0, **sizes: int) -> Toy:
    if task == "classification":
        return make_classification_toy(seed, **sizes)
    return make_regression_toy(seed, **sizes)


@pytest.fixture(scope="session", autouse=True)
def _single_blas_thread() -> Iterator[None]:
    """One BLAS thread: the arrays are tiny, and idle threads spin on a shared 2-core box."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture
def make_toy() -> Callable[..., Toy]:
    """``make_toy(task, seed=0, n_members=..., n_samples=..., n_classes/n_outputs=...)``."""
    return _make_toy


@pytest.fixture
def combiner_cases() -> list[Case]:
    """Every case of the common suite."""
    return CASES


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that asks for ``case`` and ``task`` over each combiner and task."""
    if {"case", "task"} <= set(metafunc.fixturenames):
        metafunc.parametrize(
            ("case", "task"),
            [
                pytest.param(case, task, id=f"{case.name}-{task}")
                for case in CASES
                for task in case.tasks
            ],
        )
