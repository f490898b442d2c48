"""Mean and spread over repeats of every number a benchmark run produced, and its text."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: The parts of a run that :func:`summarize_runs` aggregates over repeats.
SUMMARIZED_PARTS: tuple[str, ...] = ("models", "diversity", "ensemble_size", "shift", "ood")


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value) and count of the finite values.

    Parameters
    ----------
    values : sequence of float, length n_repeats

    Returns
    -------
    dict
        ``mean``, ``std`` and ``n``; NaN mean and std when no value is finite.
    """
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if finite.size == 0:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    std = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    return {"mean": float(finite.mean()), "std": std, "n": int(finite.size)}


def format_cell(stats: dict[str, float] | None, decimals: int, repeats: int = 1) -> str:
    """``mean ± std`` with ``decimals`` decimals; an em dash when there is no number.

    A number defined in fewer than ``repeats`` repeats says so: ``0.93 (n=1)``.
    """
    if not stats or not math.isfinite(stats.get("mean", math.nan)):
        return "—"
    n = int(stats.get("n", 1))
    text = f"{stats['mean']:.{decimals}f}"
    if n > 1:
        text += f" ± {stats['std']:.{decimals}f}"
    return text + (f" (n={n})" if n < repeats else "")


def summarize_tree(trees: list[Any]) -> Any:
    """:func:`mean_std` of every number in same-shaped trees, one tree per repeat.

    Parameters
    ----------
    trees : list
        Nested dicts and lists with numbers at the leaves; a dict key missing from some
        trees is summarized over the trees that have it, lists must have equal lengths.

    Returns
    -------
    The same shape, with ``mean``/``std``/``n`` dicts at the leaves.
    """
    first = trees[0]
    if isinstance(first, dict):
        keys = dict.fromkeys(key for tree in trees for key in tree)
        return {key: summarize_tree([tree[key] for tree in trees if key in tree]) for key in keys}
    if isinstance(first, list):
        return [summarize_tree(list(column)) for column in zip(*trees, strict=True)]
    return mean_std(trees)


def summarize_runs(runs: list[dict]) -> dict[str, dict]:
    """Aggregate per-repeat runs by strategy.

    Parameters
    ----------
    runs : list of dict
        Each with ``strategy``, ``models`` (name -> metric -> value), ``diversity``,
        ``ensemble_size`` (metric -> list over k) and optionally ``shift`` and ``ood``.

    Returns
    -------
    dict
        strategy -> the parts of :data:`SUMMARIZED_PARTS` its runs have, each with
        ``mean``/``std``/``n`` over repeats in place of every number (see
        :func:`summarize_tree`).
    """
    summary: dict[str, dict] = {}
    for strategy in dict.fromkeys(run["strategy"] for run in runs):
        group = [run for run in runs if run["strategy"] == strategy]
        summary[strategy] = {
            part: summarize_tree([run[part] for run in group])
            for part in SUMMARIZED_PARTS
            if part in group[0]
        }
    return summary
