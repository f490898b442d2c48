"""The training budget from the data: how long a member trains when ``--epochs`` is not given.

A member trains until its validation loss stops improving and keeps its best weights. The
rule counts optimizer steps, not epochs, so it means the same on 400 rows and on 400,000:
an epoch of a small dataset is a handful of steps, one of a large dataset thousands.

- **patience**: stop after ``PATIENCE_STEPS`` optimizer steps (at least ``MIN_PATIENCE_EPOCHS``
  epochs) without a new best validation loss;
- **minimum**: never stop before ``MIN_STEPS`` steps, so an early lucky epoch on a few
  validation rows does not end training before it has started;
- **cap**: at most ``MAX_STEPS`` steps and ``MAX_EPOCHS`` epochs, a generous limit that a
  network still improving after it is reported as such (``stopped: "cap"``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

PATIENCE_STEPS = 1000
MIN_PATIENCE_EPOCHS = 3
MIN_STEPS = 500
MAX_STEPS = 40_000
MAX_EPOCHS = 2_000

StopReason = Literal["patience", "cap", "epochs", "diverged"]


@dataclass(frozen=True)
class Budget:
    """How long one run may train.

    Attributes
    ----------
    max_epochs : int
        Epochs at most (the cap, or the explicit ``--epochs``).
    patience : int or None
        Epochs without a better validation loss before stopping (None: never stop early).
    min_epochs : int
        Epochs before early stopping may end the run.
    steps_per_epoch : int
    rule : {"data", "epochs"}
        ``data``: chosen by this module's rule; ``epochs``: the explicit ``--epochs``.
    """

    max_epochs: int
    patience: int | None
    min_epochs: int
    steps_per_epoch: int
    rule: Literal["data", "epochs"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe budget."""
        return asdict(self)


def budget_from_data(steps_per_epoch: int) -> Budget:
    """The data-driven budget of a run with ``steps_per_epoch`` optimizer steps per epoch.

    Parameters
    ----------
    steps_per_epoch : int
        Mini-batches per epoch (rows over batch size, rounded up).

    Returns
    -------
    Budget
        With ``rule="data"``.
    """
    steps = max(1, steps_per_epoch)
    patience = max(MIN_PATIENCE_EPOCHS, math.ceil(PATIENCE_STEPS / steps))
    min_epochs = math.ceil(MIN_STEPS / steps)
    cap = max(min_epochs + patience, min(MAX_EPOCHS, math.ceil(MAX_STEPS / steps)))
    return Budget(cap, patience, min_epochs, steps, "data")


def explicit_budget(epochs: int, patience: int | None, steps_per_epoch: int) -> Budget:
    """The budget of an explicit ``--epochs`` (and optional ``--patience``): as given."""
    return Budget(epochs, patience, 0, steps_per_epoch, "epochs")


def stop_reason(epochs_run: int, budget: Budget, diverged: bool) -> StopReason:
    """Why a run ended: early stopping, the cap, the explicit epochs, or divergence."""
    if diverged:
        return "diverged"
    if epochs_run < budget.max_epochs:
        return "patience"
    return "cap" if budget.rule == "data" else "epochs"
