"""The uncertainty of what is served: measures of the served output and of member disagreement.

Two kinds of measure, one definition each, computed by :func:`served_uncertainty` in
training metrics, the benchmark and serving alike:

* measures of the **served output** (after temperature, vote shares, stacking or the
  weight-averaged model): ``predictive_entropy`` and ``max_probability``; for regression
  the interval is centred on the served value and the aleatoric part is the served
  model's own variance where it has one;
* measures of **member disagreement** over the whole member pool with uniform weights,
  whatever the combiner: ``variance``, ``expected_entropy``, ``mutual_information``,
  and ``agreement``, the share of the pool whose argmax is the served label (so the
  combiner moves it only through that label). A combiner that selects or weighs members
  still reports how much the pool disagrees, and so does the weight-averaged model.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Literal

import numpy as np

from ensembles import defaults
from ensembles.errors import ConfigError, DataError, ShapeError

#: Keys of the dicts :func:`served_uncertainty` returns per task, in the order returned.
#: ``aleatoric_variance`` is present only when an aleatoric variance is known
#: (Gaussian-head members, or the served model's own variance head).
UNCERTAINTY_NAMES: dict[str, tuple[str, ...]] = {
    "classification": (
        "variance",
        "predictive_entropy",
        "max_probability",
        "expected_entropy",
        "mutual_information",
        "agreement",
    ),
    "regression": (
        "variance",
        "aleatoric_variance",
        "total_variance",
        "interval_lower",
        "interval_upper",
    ),
}


def check_member_preds(member_preds: np.ndarray) -> np.ndarray:
    """``member_preds`` as a float array of shape (n_members, n_samples, n_outputs).

    Raises
    ------
    ShapeError
        When it has another number of axes or an empty one.
    """
    member_preds = np.asarray(member_preds, dtype=float)
    if member_preds.ndim != 3 or 0 in member_preds.shape:
        raise ShapeError(
            "member_preds must have shape (n_members, n_samples, n_outputs) with no empty "
            f"axis; got shape {member_preds.shape}."
        )
    return member_preds


def member_variance(member_preds: np.ndarray) -> np.ndarray:
    """Member disagreement: the variance across the whole pool, members weighed equally.

    Parameters
    ----------
    member_preds : np.ndarray, shape (n_members, n_samples, n_outputs)
        Member probabilities or values.

    Returns
    -------
    np.ndarray, shape (n_samples, n_outputs)
        ``mean_m (p_m - mean_m p_m)^2``; the ``variance`` of :func:`served_uncertainty`.
    """
    return _pool_variance(check_member_preds(member_preds))


def _pool_variance(member_preds: np.ndarray, pool_mean: np.ndarray | None = None) -> np.ndarray:
    """Unchecked :func:`member_variance` (for arrays already checked).

    ``numpy.var``'s arithmetic (mean, squared deviations, their mean) without its
    per-call overhead, which dominates for the small batches served; ``pool_mean``, when
    the caller has it, is :func:`_pool_mean` of the same members.
    """
    if pool_mean is None:
        pool_mean = _pool_mean(member_preds)
    deviation = member_preds - pool_mean
    return _pool_mean(deviation * deviation)


def _pool_mean(values: np.ndarray) -> np.ndarray:
    """The mean over the first axis, as ``values.mean(axis=0)`` computes it."""
    return np.add.reduce(values, axis=0) / len(values)


def _check_like(name: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(array, dtype=float)
    if array.shape != shape:
        raise ShapeError(f"{name} must have shape {shape} like the members; got {array.shape}.")
    return array


def _check_variance(name: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    array = _check_like(name, array, shape)
    if array.min() < 0:  # NaN compares False: non-finite rows are refused by their callers
        raise DataError(f"{name} must be non-negative; got a negative value.")
    return array


def _entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy in nats over the last axis, with ``0 log 0 = 0`` (and 0, not -0, for one-hot)."""
    # A reduction, not a product with ones: each row's value then does not depend on the
    # rows it is batched with, and no BLAS threads start.
    return 0.0 - np.add.reduce(probs * np.log(np.where(probs > 0, probs, 1.0)), axis=-1)


def served_uncertainty(
    task: Literal["classification", "regression"],
    member_preds: np.ndarray,
    served: np.ndarray,
    member_variances: np.ndarray | None = None,
    served_variance: np.ndarray | None = None,
    level: float = defaults.INTERVAL_LEVEL,
    variance_scale: float = 1.0,
) -> dict[str, np.ndarray]:
    """Every uncertainty measure of one served output: of the output, and of the pool.

    Parameters
    ----------
    task : {"classification", "regression"}
    member_preds : np.ndarray, shape (n_members, n_samples, n_outputs)
        The whole member pool's probabilities or values (not only the members a combiner
        weighs or averaged).
    served : np.ndarray, shape (n_samples, n_outputs)
        What is served: the combiner's output (after temperature, vote shares, stacking)
        or the weight-averaged model's output.
    member_variances : np.ndarray, shape (n_members, n_samples, n_outputs), optional
        Gaussian-head members' own variances (regression).
    served_variance : np.ndarray, shape (n_samples, n_outputs), optional
        The served model's own variance head (the weight-averaged model's, regression);
        used as the aleatoric part instead of the members' mean.
    level : float, default 0.9
        Probability mass of the central regression interval, in (0, 1).
    variance_scale : float, default 1.0
        Regression: the factor the predictive variance is calibrated by
        (:func:`fit_variance_scale`, fitted on held-out rows when the version was trained).

    Returns
    -------
    dict of str to np.ndarray
        Keys of :data:`UNCERTAINTY_NAMES` ``[task]``. Classification, of the served
        probabilities: ``predictive_entropy`` (n_samples,), their entropy in nats, and
        ``max_probability`` (n_samples,); member disagreement over the pool, members
        weighed equally: ``variance`` (n_samples, n_classes) of the member
        probabilities, ``expected_entropy`` (n_samples,), the mean member entropy,
        ``mutual_information`` (n_samples,), the entropy of the pool mean minus
        ``expected_entropy`` (tiny negatives from rounding clipped to zero), and
        ``agreement`` (n_samples,), the share of members whose argmax is the served label
        (the served argmax, lowest index on ties). ``predictive_entropy`` minus
        ``expected_entropy`` equals ``mutual_information`` only when the served output is
        the pool mean. Regression, each (n_samples, n_outputs): ``variance``
        (epistemic: the pool's variance); with an aleatoric variance also
        ``aleatoric_variance`` (``served_variance``, else the members' mean variance);
        always ``total_variance``, the calibrated predictive variance ``variance_scale *
        (aleatoric + epistemic)`` (aleatoric 0 when unknown), and ``interval_lower`` and
        ``interval_upper``, ``served -/+ z * sqrt(total_variance)`` with ``z`` the normal
        quantile at ``(1 + level) / 2``. Metrics that use a variance (Gaussian NLL,
        coverage) use ``total_variance``.

    Raises
    ------
    ConfigError
        An unknown task or a level outside (0, 1).
    ShapeError
        Arrays whose shapes do not match the members'.
    DataError
        Negative variances.
    """
    member_preds = check_member_preds(member_preds)
    shape = member_preds.shape[1:]
    served = _check_like("served", served, shape)
    if task == "classification":
        pool_mean = _pool_mean(member_preds)
        # The members', the served output's and the pool mean's entropies in one pass: for
        # the batches served, numpy's cost is per call, not per value.
        entropies = _entropy(np.concatenate([member_preds, served[None], pool_mean[None]]))
        expected = _pool_mean(entropies[:-2])
        label = served.argmax(axis=1)
        agreeing = np.count_nonzero(member_preds.argmax(axis=2) == label, axis=0)
        return {
            "variance": _pool_variance(member_preds, pool_mean),
            "predictive_entropy": entropies[-2],
            "max_probability": served.max(axis=1),
            "expected_entropy": expected,
            "mutual_information": np.maximum(entropies[-1] - expected, 0.0),
            "agreement": agreeing / len(member_preds),
        }
    if task != "regression":
        raise ConfigError(f"The task must be 'classification' or 'regression'; got {task!r}.")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"The interval level must be in (0, 1), e.g. 0.9; got {level!r}.")
    result = {"variance": _pool_variance(member_preds)}
    spread = result["variance"]
    aleatoric = None
    if served_variance is not None:
        aleatoric = _check_variance("served_variance", served_variance, shape)
    elif member_variances is not None:
        members = _check_variance("member_variances", member_variances, member_preds.shape)
        aleatoric = members.mean(axis=0)
    if aleatoric is not None:
        result["aleatoric_variance"] = aleatoric
        spread = aleatoric + spread
    result["total_variance"] = spread = variance_scale * spread
    half_width = NormalDist().inv_cdf(0.5 + level / 2.0) * np.sqrt(spread)
    result["interval_lower"] = served - half_width
    result["interval_upper"] = served + half_width
    return result


#: The variance scale is kept within these bounds: beyond them the held-out rows say more
#: about a broken model than about its calibration.
VARIANCE_SCALE_RANGE = (1e-2, 1e2)


def fit_variance_scale(y: np.ndarray, served: np.ndarray, total_variance: np.ndarray) -> float:
    """The factor ``s`` that makes ``s * total_variance`` the maximum-likelihood Gaussian
    variance of held-out errors: ``mean((y - served) ** 2 / total_variance)``.

    Parameters
    ----------
    y, served, total_variance : np.ndarray, shape (n_samples, n_outputs)
        Held-out targets, the served values and their uncalibrated predictive variance.

    Returns
    -------
    float
        Within :data:`VARIANCE_SCALE_RANGE`; 1 when the rows say nothing (no finite ratio).
    """
    y = np.asarray(y, dtype=float).reshape(np.shape(served))
    ratios = (y - served) ** 2 / np.maximum(total_variance, 1e-12)
    ratios = ratios[np.isfinite(ratios)]
    if not ratios.size:
        return 1.0
    low, high = VARIANCE_SCALE_RANGE
    return float(np.clip(ratios.mean(), low, high))
