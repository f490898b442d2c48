"""Covariate shift: test rows plus Gaussian noise of k feature standard deviations, scored per k.

The noise is drawn once per run from its seed and scaled by each strength, so every
strategy of a repeat (same split) sees the same shifted rows, and a larger k moves each
row further along the same direction. Feature standard deviations are those of the
validation rows (constant features get no noise). On a table only the observed cells of
numeric columns move (:func:`shifted_cells`): a boolean, one-hot or missing-indicator
column plus noise is no value a user could send, and a missing cell stays missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ensembles import defaults
from ensembles.benchmark.aggregate import format_cell
from ensembles.benchmark.headline import default_label
from ensembles.benchmark.served import ServedModel
from ensembles.heldout import HeldoutPredictions
from ensembles.markdown import format_table
from ensembles.metrics import VARIANCE_FLOOR, classification_metrics, regression_metrics
from ensembles.tabular import TabularSpec

#: Noise strengths k: the standard deviation of the added noise in feature std units.
SHIFT_STRENGTHS: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
#: Metrics reported per strength, by task.
SHIFT_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "nll", "ece"),
    "regression": ("rmse", "gaussian_nll", "coverage"),
}


def noisy_rows(
    X: np.ndarray, feature_std: np.ndarray, strength: float, noise: np.ndarray
) -> np.ndarray:
    """``X + strength * feature_std * noise``.

    Parameters
    ----------
    X, noise : np.ndarray, shape (n_samples, n_features)
        Rows and standard normal draws.
    feature_std : np.ndarray, shape (n_features,)
    strength : float
        k, in feature standard deviations.

    Returns
    -------
    np.ndarray, shape (n_samples, n_features), float32
    """
    return (X + strength * feature_std * noise).astype(np.float32)


def shifted_cells(X: np.ndarray, spec: TabularSpec | None) -> np.ndarray:
    """Which cells of encoded rows the noise moves.

    Parameters
    ----------
    X : np.ndarray, shape (n_samples, n_features)
        Rows as the members take them.
    spec : TabularSpec or None
        The version's encoding (``Manifest.preprocessing``); None for a plain matrix.

    Returns
    -------
    np.ndarray of bool, shape (n_samples, n_features)
        Every cell without a spec; else the value columns of numeric input columns (the
        encoded matrix starts with one value column per non-categorical input column),
        except rows whose missing indicator is set.
    """
    if spec is None:
        return np.ones(X.shape, dtype=bool)
    numeric = [column.kind == "numeric" for column in spec.columns if column.kind != "categorical"]
    cells = np.zeros(X.shape, dtype=bool)
    cells[:, : len(numeric)] = numeric
    for value, indicator in spec.imputed_columns():
        cells[:, value] &= X[:, indicator] == 0
    return cells


def shift_metrics(
    task: str,
    combined: np.ndarray,
    y: np.ndarray,
    variance: np.ndarray | None = None,
    level: float = defaults.INTERVAL_LEVEL,
) -> dict[str, float]:
    """Test metrics of one model's output on shifted rows.

    Parameters
    ----------
    task : {"classification", "regression"}
    combined : np.ndarray, shape (n_samples, n_outputs)
        Probabilities or values.
    y : np.ndarray
        Class indices ``(n_samples,)`` or values ``(n_samples, n_outputs)``.
    variance : np.ndarray, shape (n_samples, n_outputs), optional
        Predicted variance (regression); floored at 1e-12.
    level : float
        Interval level of the regression coverage.

    Returns
    -------
    dict of str to float
        :func:`~ensembles.metrics.classification_metrics` or
        :func:`~ensembles.metrics.regression_metrics`.
    """
    if task == "classification":
        return classification_metrics(combined, y)
    if variance is not None:
        variance = np.maximum(variance, VARIANCE_FLOOR)
    return regression_metrics(combined, y, variance, level)


def shift_scores(
    served: ServedModel,
    heldout: HeldoutPredictions,
    seed: int,
    strengths: tuple[float, ...] = SHIFT_STRENGTHS,
    single: Callable[[np.ndarray], tuple[np.ndarray, ...]] | None = None,
) -> dict[str, Any]:
    """Metrics of the default combiner (and the single network) as the noise grows.

    Parameters
    ----------
    served : ServedModel
        The combiner users get; regression scores use its served (calibrated) total
        variance and interval level.
    heldout : HeldoutPredictions
        The version's held-out rows: validation (feature std) and test (shifted).
    seed : int
        Seed of the noise (the run's seed).
    strengths : tuple of float
    single : callable, optional
        ``single(X) -> (pred,)`` or ``(pred, variance)``: the same-budget single network.

    Returns
    -------
    dict
        ``strengths`` and ``models``: ``default`` (and ``single_network``) -> metric ->
        list over strengths.
    """
    test = heldout.test
    task = "classification" if test.y.ndim == 1 else "regression"
    feature_std = heldout.validation.X.std(axis=0)
    noise = np.random.default_rng(seed).standard_normal(test.X.shape)
    noise *= shifted_cells(test.X, served.manifest.preprocessing)
    models: dict[str, dict[str, list[float]]] = {}

    def record(model: str, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            models.setdefault(model, {}).setdefault(key, []).append(float(value))

    for strength in strengths:
        X = noisy_rows(test.X, feature_std, strength, noise)
        combined, measures = served.predict(X)
        variance = measures.get("total_variance")  # None for classification
        record("default", shift_metrics(task, combined, test.y, variance, served.level))
        if single is not None:
            outputs = single(X)
            own = outputs[1] if len(outputs) > 1 else None
            record("single_network", shift_metrics(task, outputs[0], test.y, own, served.level))
    return {"strengths": [float(k) for k in strengths], "models": models}


def shift_tables(results: dict[str, Any]) -> list[tuple[str, str]]:
    """One Markdown table per :data:`SHIFT_METRICS` metric: rows are models, columns k.

    Rows: each strategy's default combiner, then one row per distinct same-budget single
    network (strategies with the same epoch budget and seeds share it).

    Returns
    -------
    list of (metric, table)
    """
    first = results["runs"][0]["shift"]
    tables = []
    for metric in SHIFT_METRICS[results["task"]]:
        rows = []
        singles: dict[float, list] = {}
        for strategy, group in results["summary"].items():
            models = group["shift"]["models"]
            runs = [run for run in results["runs"] if run["strategy"] == strategy]
            label = f"default ({default_label(runs)})"
            rows.append((strategy, label, *_cells(models["default"], metric)))
            if "single_network" in models:
                epochs = group["models"]["single_network"]["epochs"]["mean"]
                singles.setdefault(epochs, _cells(models["single_network"], metric))
        for epochs, cells in singles.items():
            rows.append(("", f"single_network ({epochs:.0f} epochs)", *cells))
        header = ["strategy", "model", *(f"k={k:g}" for k in first["strengths"])]
        tables.append((metric, format_table(header, rows)))
    return tables


def _cells(model: dict[str, list], metric: str) -> list[str]:
    return [format_cell(point, 3) for point in model.get(metric, [])]
