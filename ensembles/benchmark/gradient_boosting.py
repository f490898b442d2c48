"""scikit-learn's HistGradientBoosting beside the ensembles: its input, its fits, its scores.

It is the model a user would otherwise pick for tabular data, so both benchmarks score it on
the rows the ensembles are scored on: the UCI protocol (``uci.hgb_scores``) and the main
benchmark (:func:`hgb_baseline`). A table goes in natively (:func:`native_features`):
numeric and boolean columns as floats with NaN for missing cells, categorical columns as
categories, so it is not handicapped by the one-hot encoding the members take. Every fit and
prediction runs on one OpenMP thread, as each member trains on one torch thread: on a few
shared cores scikit-learn's OpenMP threads beside torch's spin and take many times longer,
and the seconds compare like with like.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ensembles import defaults
from ensembles.benchmark.cost import BATCH_ROWS, TIMING_REPEATS, median_seconds
from ensembles.benchmark.scoring import record_model, single_uncertainty
from ensembles.metrics import classification_metrics, interval_coverage, regression_metrics

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    from ensembles.data import Dataset, Splits
    from ensembles.manifest import Task

#: The model's name in every table and record.
HGB = "HistGradientBoosting"
#: Folds of the cross-validation whose out-of-fold residuals give the regressor's variance.
VARIANCE_FOLDS = 5

EarlyStopping = bool | Literal["auto"]


def category_codes(fit_cells: np.ndarray, cells: np.ndarray, max_levels: int) -> np.ndarray:
    """Ordinal codes of a categorical column, learned from the rows the model is fitted on.

    Parameters
    ----------
    fit_cells : np.ndarray of object, shape (n_fit,)
        The column on the fit rows (``str``, ``None`` where missing).
    cells : np.ndarray of object, shape (n_samples,)
        The rows to code.
    max_levels : int
        The ``max_levels`` most frequent levels of ``fit_cells`` get a code (ties by name).

    Returns
    -------
    np.ndarray of float64, shape (n_samples,)
        ``0 .. max_levels - 1``; NaN for a missing cell, a level the fit rows lack and a
        level beyond the ``max_levels`` most frequent (HistGradientBoosting takes NaN as
        missing).
    """
    counts = Counter(cell for cell in fit_cells if cell is not None)
    levels = sorted(counts, key=lambda level: (-counts[level], level))[:max_levels]
    index = {level: float(code) for code, level in enumerate(levels)}
    return np.array([index.get(cell, np.nan) for cell in cells], dtype=np.float64)


def native_features(
    fit: Dataset, test: Dataset, max_levels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The fit and test rows as HistGradientBoosting takes them.

    Parameters
    ----------
    fit, test : Dataset
        The rows it is fitted on and scored on; with ``table`` set, their raw columns.
    max_levels : int
        Codes per categorical column (the model's ``max_bins``).

    Returns
    -------
    X_fit : np.ndarray, shape (n_fit, n_columns)
    X_test : np.ndarray, shape (n_samples, n_columns)
        For a table, one column per input column in the spec's order: numeric and boolean
        columns as floats with NaN where missing, categorical columns as
        :func:`category_codes` of the fit rows. Otherwise the datasets' ``X``.
    categorical : np.ndarray of bool, shape (n_columns,), or None
        Which columns are categorical (``categorical_features``); None without a table.
    """
    if fit.table is None or test.table is None or fit.tabular is None:
        return fit.X, test.X, None
    fit_columns, test_columns, categorical = [], [], []
    for column in fit.tabular.columns:
        fit_cells, test_cells = fit.table[column.name], test.table[column.name]
        is_category = column.kind == "categorical"
        if is_category:
            fit_cells, test_cells = (
                category_codes(fit_cells, fit_cells, max_levels),
                category_codes(fit_cells, test_cells, max_levels),
            )
        fit_columns.append(np.asarray(fit_cells, dtype=np.float64))
        test_columns.append(np.asarray(test_cells, dtype=np.float64))
        categorical.append(is_category)
    return np.column_stack(fit_columns), np.column_stack(test_columns), np.array(categorical)


def hgb_model(
    task: Task,
    seed: int,
    categorical: np.ndarray | None = None,
    early_stopping: EarlyStopping = "auto",
    **loss: Any,
) -> HistGradientBoostingClassifier | HistGradientBoostingRegressor:
    """An unfitted HistGradientBoosting model: scikit-learn's defaults but the seed.

    Parameters
    ----------
    task : {"classification", "regression"}
    seed : int
        ``random_state``.
    categorical : np.ndarray of bool, shape (n_columns,), optional
        ``categorical_features``; None: no categorical column.
    early_stopping : bool or "auto"
        scikit-learn's default ``"auto"`` stops early on its own internal validation split
        only above 10,000 rows.
    **loss
        Further parameters (``loss="quantile"``, ``quantile=0.05``).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    kind = (
        HistGradientBoostingClassifier
        if task == "classification"
        else HistGradientBoostingRegressor
    )
    return kind(
        early_stopping=early_stopping,
        categorical_features=categorical,
        random_state=seed,
        **loss,
    )


def fit_hgb(
    task: Task,
    X: np.ndarray,
    y: np.ndarray,
    seed: int,
    categorical: np.ndarray | None = None,
    early_stopping: EarlyStopping = "auto",
) -> tuple[HistGradientBoostingClassifier | HistGradientBoostingRegressor, float]:
    """Fit :func:`hgb_model` on one OpenMP thread.

    Parameters
    ----------
    task : {"classification", "regression"}
    X : np.ndarray, shape (n_samples, n_columns)
    y : np.ndarray, shape (n_samples,)
        Class indices or values.
    seed, categorical, early_stopping
        As :func:`hgb_model`.

    Returns
    -------
    model
        The fitted model.
    seconds : float
        Wall clock of the fit.
    """
    from threadpoolctl import threadpool_limits

    model = hgb_model(task, seed, categorical, early_stopping)
    start = time.perf_counter()
    with threadpool_limits(1, user_api="openmp"):
        model.fit(X, y)
    return model, time.perf_counter() - start


def hgb_interval(
    X_fit: np.ndarray,
    y_fit: np.ndarray,
    X_test: np.ndarray,
    seed: int,
    level: float = defaults.INTERVAL_LEVEL,
    categorical: np.ndarray | None = None,
    early_stopping: EarlyStopping = "auto",
) -> tuple[float, np.ndarray, np.ndarray, float]:
    """The regressor's constant variance and its quantile interval on the test rows.

    The variance is one constant, the mean squared out-of-fold residual of
    :data:`VARIANCE_FOLDS`-fold cross-validation (``cross_val_predict``) on the fit rows, so
    no test row informs it. The interval is that of two quantile models at
    ``(1 - level) / 2`` and ``(1 + level) / 2`` (crossed bounds swapped).

    Parameters
    ----------
    X_fit : np.ndarray, shape (n_fit, n_columns)
    y_fit : np.ndarray, shape (n_fit,)
    X_test : np.ndarray, shape (n_samples, n_columns)
    seed : int
        ``random_state`` of every model and of the folds.
    level : float
        Central interval level.
    categorical, early_stopping
        As :func:`hgb_model`.

    Returns
    -------
    variance : float
    lower, upper : np.ndarray, shape (n_samples,)
    seconds : float
        Wall clock of the seven fits and their predictions.
    """
    from sklearn.model_selection import KFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    with threadpool_limits(1, user_api="openmp"):
        folds = KFold(VARIANCE_FOLDS, shuffle=True, random_state=seed)
        point = hgb_model("regression", seed, categorical, early_stopping)
        residuals = y_fit - cross_val_predict(point, X_fit, y_fit, cv=folds)
        bounds = [
            hgb_model("regression", seed, categorical, early_stopping, loss="quantile", quantile=q)
            .fit(X_fit, y_fit)
            .predict(X_test)
            for q in ((1 - level) / 2, (1 + level) / 2)
        ]
    variance = float(np.mean(residuals**2))
    return variance, np.minimum(*bounds), np.maximum(*bounds), time.perf_counter() - start


def hgb_baseline(
    splits: Splits,
    seed: int,
    level: float = defaults.INTERVAL_LEVEL,
    timing_repeats: int = TIMING_REPEATS,
) -> dict[str, Any]:
    """HistGradientBoosting on one split of the main benchmark, shaped like a model's scores.

    It is fitted on the training and validation rows together: the rows the ensemble
    learned from and chose its epochs, combiner and calibration on, and the rows a user
    would hand it (its own early stopping, off below 10,000 rows by default, splits its
    validation rows off what it is given). Tables go in natively
    (:func:`native_features`). Classification is scored by its probabilities, with their
    predictive entropy as its uncertainty (as a single network's). Regression has no
    per-row variance: its Gaussian NLL and coverage use the constant variance of
    :func:`hgb_interval` (so the uncertainty-quality scores are NaN), and its quantile
    interval's coverage is ``quantile_coverage``.

    Parameters
    ----------
    splits : Splits
        The repeat's split, exactly as the pipeline makes it for the same seed.
    seed : int
        ``random_state`` (the repeat's seed).
    level : float
        Interval level of the regression coverage.
    timing_repeats : int
        Timed predictions on a :data:`~ensembles.benchmark.cost.BATCH_ROWS`-row batch (the
        median is kept).

    Returns
    -------
    dict
        ``models``, ``calibration`` and ``uncertainty_error``, each with one entry
        :data:`HGB` shaped like a combiner's (see
        :func:`~ensembles.benchmark.scoring.score_version`); its model entry adds
        ``train_seconds`` (every fit: for regression the point model, the
        cross-validation folds and both quantile models), ``fit_seconds`` (the point
        model alone) and ``infer_us_per_row``.
    """
    from threadpoolctl import threadpool_limits

    test, task = splits.test, splits.test.task
    fit = _pooled(splits.train, splits.validation)
    max_levels = hgb_model(task, seed).max_bins
    X_fit, X_test, categorical = native_features(fit, test, max_levels)
    y_fit = fit.y if task == "classification" else np.ravel(fit.y).astype(np.float64)
    model, fit_seconds = fit_hgb(task, X_fit, y_fit, seed, categorical)
    predict = model.predict_proba if task == "classification" else model.predict
    with threadpool_limits(1, user_api="openmp"):
        outputs = predict(X_test)
        batch = np.resize(X_test, (BATCH_ROWS, X_test.shape[1]))
        infer = median_seconds(lambda: predict(batch), timing_repeats)
    scores: dict[str, Any] = {"models": {}, "calibration": {}, "uncertainty_error": {}}
    seconds = fit_seconds
    if task == "classification":
        probs = np.zeros((len(test.y), test.n_outputs))
        probs[:, model.classes_] = outputs
        metrics = classification_metrics(probs, test.y)
        entropy = single_uncertainty(task, probs)
        record_model(scores, HGB, metrics, task, probs, test.y, entropy, None)
    else:
        pred = outputs[:, None]
        variance, lower, upper, interval_seconds = hgb_interval(
            X_fit, y_fit, X_test, seed, level, categorical
        )
        seconds += interval_seconds
        metrics = regression_metrics(pred, test.y, np.full_like(pred, variance), level)
        metrics["quantile_coverage"] = interval_coverage(lower[:, None], upper[:, None], test.y)
        metrics["residual_variance"] = variance
        record_model(scores, HGB, metrics, task, pred, test.y, None, None)
    scores["models"][HGB].update(
        train_seconds=seconds, fit_seconds=fit_seconds, infer_us_per_row=infer * 1e6 / BATCH_ROWS
    )
    return scores


def _pooled(first: Dataset, second: Dataset) -> Dataset:
    """The rows of both (same encoding), first's then second's."""
    table = None
    if first.table is not None and second.table is not None:
        table = {
            name: np.concatenate([cells, second.table[name]]) for name, cells in first.table.items()
        }
    return replace(
        first,
        X=np.concatenate([first.X, second.X]),
        y=np.concatenate([first.y, second.y]),
        table=table,
    )
