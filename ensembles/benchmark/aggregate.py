"""Mean and spread over repeats of every number a benchmark run produced."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


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


def summarize_runs(runs: list[dict]) -> dict[str, dict]:
    """Aggregate per-repeat runs by strategy.

    Parameters
    ----------
    runs : list of dict
        Each with ``strategy``, ``models`` (name -> metric -> value), ``diversity`` and
        ``ensemble_size`` (metric -> list over k).

    Returns
    -------
    dict
        strategy -> ``models`` (name -> metric -> mean/std/n), ``diversity`` (metric ->
        mean/std/n) and ``ensemble_size`` (metric -> list of mean/std/n over k).
    """
    summary: dict[str, dict] = {}
    for strategy in dict.fromkeys(run["strategy"] for run in runs):
        group = [run for run in runs if run["strategy"] == strategy]
        models: dict[str, dict] = {}
        for name in dict.fromkeys(name for run in group for name in run["models"]):
            present = [run["models"][name] for run in group if name in run["models"]]
            keys = dict.fromkeys(key for metrics in present for key in metrics)
            models[name] = {
                key: mean_std([metrics.get(key, math.nan) for metrics in present]) for key in keys
            }
        diversity = {
            key: mean_std([run["diversity"][key] for run in group]) for key in group[0]["diversity"]
        }
        size = {}
        for key in group[0]["ensemble_size"]:
            columns = zip(*[run["ensemble_size"][key] for run in group], strict=True)
            size[key] = [mean_std(list(column)) for column in columns]
        summary[strategy] = {"models": models, "diversity": diversity, "ensemble_size": size}
    return summary
