"""Combiners: rules that reduce member outputs ``(n_members, n_samples, n_outputs)`` to one output.

Only numpy is imported here; scipy and scikit-learn are imported inside ``fit`` where a
combiner needs them, so a serving process rebuilds and applies combiners with numpy alone.
"""

from __future__ import annotations

import difflib
from typing import Any

from ensembles.combiners._averaging import MeanCombiner
from ensembles.combiners._base import Combiner, Task, split_rows
from ensembles.combiners._blending import BlendingCombiner
from ensembles.combiners._stacking import StackingCombiner
from ensembles.combiners._voting import VotingCombiner
from ensembles.errors import ConfigError

__all__ = [
    "COMBINER_KINDS",
    "BlendingCombiner",
    "Combiner",
    "MeanCombiner",
    "StackingCombiner",
    "Task",
    "VotingCombiner",
    "build_combiner",
    "combiner_from_state",
    "split_rows",
]

_REGISTRY: dict[str, type[Combiner]] = {
    cls.kind: cls for cls in (MeanCombiner, VotingCombiner, BlendingCombiner, StackingCombiner)
}

#: The ``kind`` strings stored in manifests, one per combiner class.
COMBINER_KINDS: tuple[str, ...] = tuple(sorted(_REGISTRY))


def _combiner_class(kind: Any) -> type[Combiner]:
    if kind not in _REGISTRY:
        close = difflib.get_close_matches(str(kind), COMBINER_KINDS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"Unknown combiner kind {kind!r}; expected one of {list(COMBINER_KINDS)}.{hint}"
        )
    return _REGISTRY[kind]


def build_combiner(kind: str, task: Task, **params: Any) -> Combiner:
    """Construct an unfitted combiner by its kind.

    Parameters
    ----------
    kind : {"blend", "mean", "stack", "vote"}
        The combiner's ``kind``.
    task : {"classification", "regression"}
        The task of the members.
    **params
        Further constructor parameters of that combiner.

    Returns
    -------
    Combiner
        The unfitted combiner.
    """
    cls = _combiner_class(kind)
    try:
        return cls(task=task, **params)
    except TypeError as exc:
        raise ConfigError(
            f"Bad parameters {sorted(params)} for {cls.__name__}: {exc}. "
            f"Its parameters are {list(cls._param_names)}."
        ) from exc


def combiner_from_state(state: dict[str, Any]) -> Combiner:
    """Rebuild any combiner from its JSON state, dispatching on ``state["kind"]``.

    Parameters
    ----------
    state : dict
        As written by ``Combiner.to_state``.

    Returns
    -------
    Combiner
        Fitted when the state was saved after ``fit``.
    """
    if not isinstance(state, dict) or "kind" not in state:
        raise ConfigError(
            "A combiner state must be a dict with a 'kind' key, as written by to_state(); "
            f"got {type(state).__name__}."
        )
    return _combiner_class(state["kind"]).from_state(state)
