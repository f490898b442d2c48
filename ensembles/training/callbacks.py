"""Callbacks of the training loop: early stopping, horizontal checkpoints, snapshot cycles."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from ensembles.training.loop import Callback, State, restore, snapshot_state
from ensembles.training.network import MemberNetwork


@dataclass(frozen=True)
class CollectedState:
    """A network state kept by a collector, with the epoch (and cycle) it was taken at."""

    state: State
    epoch: int
    cycle: int | None = None


class EarlyStopping(Callback):
    """Stop when the validation loss has not improved for ``patience`` epochs; restore the best.

    Parameters
    ----------
    patience : int
    min_epochs : int
        Never stop before this epoch (the best weights are still restored).
    """

    def __init__(self, patience: int, min_epochs: int = 0) -> None:
        self.patience = patience
        self.min_epochs = min_epochs
        self.best_loss = math.inf
        self.best_epoch = 0
        self._best_state: State | None = None

    def on_epoch_end(self, epoch: int, network: MemberNetwork, log: dict[str, float]) -> bool:
        """Track the best validation loss; ask to stop after ``patience`` epochs without it."""
        if log["val_loss"] < self.best_loss:
            self.best_loss, self.best_epoch = log["val_loss"], epoch
            self._best_state = snapshot_state(network)
        return epoch >= self.min_epochs and epoch - self.best_epoch >= self.patience

    def on_train_end(self, network: MemberNetwork) -> None:
        """Put the best weights back."""
        if self._best_state is not None:
            restore(network, self._best_state)


class CheckpointCollector(Callback):
    """Keep the network state at the given epochs (horizontal ensembles).

    Parameters
    ----------
    epochs : iterable of int
        1-based epochs whose end-of-epoch state becomes a member.
    """

    def __init__(self, epochs: list[int]) -> None:
        self.epochs = sorted(epochs)
        self.collected: list[CollectedState] = []

    def on_epoch_end(self, epoch: int, network: MemberNetwork, log: dict[str, float]) -> bool:
        """Copy the state when ``epoch`` is one of ours."""
        if epoch in self.epochs:
            self.collected.append(CollectedState(snapshot_state(network), epoch))
        return False


def horizontal_epochs(epochs: int, n_members: int, spacing: int = 1) -> list[int]:
    """The last ``n_members`` epochs, ``spacing`` apart, ending at the final epoch (1-based)."""
    return [epochs - spacing * (n_members - 1 - i) for i in range(n_members)]


class CosineRestartSchedule:
    """Cyclic cosine annealing (Huang et al. 2017): restart at each cycle, anneal to the minimum.

    The rate at optimizer step ``t`` within a cycle of ``c`` steps is
    ``min_rate + (max_rate - min_rate) * (1 + cos(pi * t / c)) / 2``, so every cycle starts at
    ``max_rate`` and its last step, where the snapshot is taken, has the cycle's lowest rate.

    Parameters
    ----------
    max_rate : float
    steps_per_cycle : int
    min_rate : float
    """

    def __init__(self, max_rate: float, steps_per_cycle: int, min_rate: float = 0.0) -> None:
        self.max_rate = max_rate
        self.steps_per_cycle = steps_per_cycle
        self.min_rate = min_rate

    def __call__(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based)."""
        position = (step % self.steps_per_cycle) / self.steps_per_cycle
        return (
            self.min_rate + (self.max_rate - self.min_rate) * (1 + math.cos(math.pi * position)) / 2
        )


def align_cycles(epochs: int, cycles: int) -> tuple[int, int]:
    """Epochs per cycle and total epochs when ``epochs`` does not divide into ``cycles``.

    Each cycle gets ``ceil(epochs / cycles)`` epochs, so the total rounds up to a multiple of
    ``cycles`` and every snapshot still lands at a learning-rate minimum.
    """
    per_cycle = max(1, math.ceil(epochs / cycles))
    return per_cycle, per_cycle * cycles


class SnapshotCollector(Callback):
    """Owns the cyclic schedule and keeps the state at the end of every cycle.

    Parameters
    ----------
    max_rate : float
        Learning rate at each cycle's start.
    epochs_per_cycle : int
    """

    def __init__(self, max_rate: float, epochs_per_cycle: int) -> None:
        self.max_rate = max_rate
        self.epochs_per_cycle = epochs_per_cycle
        self.schedule: CosineRestartSchedule | None = None
        self.collected: list[CollectedState] = []

    def learning_rate(self, step: int, steps_per_epoch: int) -> float:
        """The cyclic rate of ``step``."""
        if self.schedule is None:
            self.schedule = CosineRestartSchedule(
                self.max_rate, steps_per_epoch * self.epochs_per_cycle
            )
        return self.schedule(step)

    def on_epoch_end(self, epoch: int, network: MemberNetwork, log: dict[str, float]) -> bool:
        """Take a snapshot when ``epoch`` closes a cycle."""
        if epoch % self.epochs_per_cycle == 0:
            cycle = epoch // self.epochs_per_cycle
            self.collected.append(CollectedState(snapshot_state(network), epoch, cycle))
        return False


class BestWindowCollector(Callback):
    """Horizontal ensembles under the budget rule: the checkpoints ending at the best epoch.

    The run trains with early stopping; the members are the ``n_members`` end-of-epoch
    states, ``spacing`` epochs apart, whose last one is the epoch of the best validation
    loss. A best epoch counts once the run has enough epochs behind it for a full window.

    Parameters
    ----------
    n_members, spacing : int
    patience, min_epochs : int
        Early stopping, as :class:`EarlyStopping`.
    """

    def __init__(self, n_members: int, spacing: int, patience: int, min_epochs: int) -> None:
        self.window = (n_members - 1) * spacing + 1
        self.spacing = spacing
        self.patience = patience
        self.min_epochs = max(min_epochs, self.window)
        self.best_loss = math.inf
        self.best_epoch = 0
        self.recent: deque[CollectedState] = deque(maxlen=self.window)
        self.collected: list[CollectedState] = []

    def on_epoch_end(self, epoch: int, network: MemberNetwork, log: dict[str, float]) -> bool:
        """Keep the recent states; take the window at every new best; stop on patience."""
        self.recent.append(CollectedState(snapshot_state(network), epoch))
        if len(self.recent) == self.window and log["val_loss"] < self.best_loss:
            self.best_loss, self.best_epoch = log["val_loss"], epoch
            self.collected = list(self.recent)[:: self.spacing]
        return epoch >= self.min_epochs and epoch - self.best_epoch >= self.patience

    def on_train_end(self, network: MemberNetwork) -> None:
        """Without a best epoch (the run ended first), the last window is the ensemble."""
        if not self.collected:
            self.collected = list(self.recent)[:: self.spacing]
