"""Uncertainty measures computed from the member array ``(n_members, n_samples, n_outputs)``."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from ensembles.errors import ConfigError, DataError, ShapeError

#: Keys of the dicts returned per task, in the order they are returned.
#: ``aleatoric_variance`` and ``total_variance`` are present only when member variances
#: are given to :func:`regression_uncertainty`.
UNCERTAINTY_NAMES: dict[str, tuple[str, ...]] = {
    "classification": (
        "variance",
        "predictive_entropy",
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


def _normalized_weights(weights: np.ndarray | None, n_members: int) -> np.ndarray:
    if weights is None:
        return np.full(n_members, 1.0 / n_members)
    weights = np.asarray(weights, dtype=float)
    if weights.shape != (n_members,):
        raise ShapeError(
            f"Got {weights.size} weights for {n_members} members; pass one weight per member "
            "or weights=None."
        )
    if not np.isfinite(weights).all() or weights.min() < 0 or weights.sum() <= 0:
        raise ConfigError(
            f"Member weights must be finite, non-negative and sum to more than zero; got "
            f"{weights.tolist()}."
        )
    return weights / weights.sum()


def _check_combined(combined: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    if combined is None:
        return None
    combined = np.asarray(combined, dtype=float)
    if combined.shape != shape:
        raise ShapeError(
            f"combined must have shape (n_samples, n_outputs) = {shape} like the members; "
            f"got shape {combined.shape}."
        )
    return combined


def _entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy in nats over the last axis, with ``0 log 0 = 0``."""
    return -(probs * np.log(np.where(probs > 0, probs, 1.0))).sum(axis=-1)


def classification_uncertainty(
    member_preds: np.ndarray,
    weights: np.ndarray | None = None,
    combined: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Disagreement and entropy measures of a classification ensemble.

    Parameters
    ----------
    member_preds : np.ndarray, shape (n_members, n_samples, n_classes)
        Member class probabilities.
    weights : np.ndarray, shape (n_members,), optional
        Member weights (a combiner's ``member_weights``); None weighs members equally.
    combined : np.ndarray, shape (n_samples, n_classes), optional
        The combiner's output; agreement is measured against its argmax. Defaults to the
        weighted mean of the members.

    Returns
    -------
    dict of str to np.ndarray
        ``variance`` (n_samples, n_classes): weighted variance across members;
        ``predictive_entropy`` (n_samples,): entropy of the weighted mean (nats);
        ``expected_entropy`` (n_samples,): weighted mean of member entropies;
        ``mutual_information`` (n_samples,): predictive minus expected entropy, tiny
        negatives from rounding clipped to zero;
        ``agreement`` (n_samples,): weighted share of members whose argmax equals the
        argmax of ``combined``.
    """
    member_preds = check_member_preds(member_preds)
    n_members, n_samples, n_classes = member_preds.shape
    w = _normalized_weights(weights, n_members)
    combined = _check_combined(combined, (n_samples, n_classes))
    mean = np.tensordot(w, member_preds, axes=1)
    predictive = _entropy(mean)
    expected = np.tensordot(w, _entropy(member_preds), axes=1)
    reference = (mean if combined is None else combined).argmax(axis=1)
    agrees = member_preds.argmax(axis=2) == reference
    return {
        "variance": np.tensordot(w, (member_preds - mean) ** 2, axes=1),
        "predictive_entropy": predictive,
        "expected_entropy": expected,
        "mutual_information": np.clip(predictive - expected, 0.0, None),
        "agreement": np.tensordot(w, agrees.astype(float), axes=1),
    }


def regression_uncertainty(
    member_preds: np.ndarray,
    member_variances: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    level: float = 0.9,
    combined: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Epistemic (and aleatoric) variance and a central interval of a regression ensemble.

    Parameters
    ----------
    member_preds : np.ndarray, shape (n_members, n_samples, n_outputs)
        Member predicted values (means, for Gaussian-head members).
    member_variances : np.ndarray, shape (n_members, n_samples, n_outputs), optional
        Each member's predicted variance (aleatoric), from Gaussian-head members.
    weights : np.ndarray, shape (n_members,), optional
        Member weights (a combiner's ``member_weights``); None weighs members equally.
    level : float, default 0.9
        Probability mass of the central interval, in (0, 1).
    combined : np.ndarray, shape (n_samples, n_outputs), optional
        Centre of the interval (the combiner's output); defaults to the weighted mean.

    Returns
    -------
    dict of str to np.ndarray
        Each of shape (n_samples, n_outputs): ``variance`` (epistemic: weighted variance
        across members); with ``member_variances`` also ``aleatoric_variance`` (weighted
        mean of member variances) and ``total_variance`` (aleatoric + epistemic); always
        ``interval_lower`` and ``interval_upper``: ``centre -/+ z * sqrt(v)`` with ``z``
        the normal quantile at ``(1 + level) / 2`` and ``v`` the total variance when
        known, else the epistemic one.
    """
    if not 0.0 < level < 1.0:
        raise ConfigError(f"The interval level must be in (0, 1), e.g. 0.9; got {level!r}.")
    member_preds = check_member_preds(member_preds)
    n_members, n_samples, n_outputs = member_preds.shape
    w = _normalized_weights(weights, n_members)
    combined = _check_combined(combined, (n_samples, n_outputs))
    mean = np.tensordot(w, member_preds, axes=1)
    result = {"variance": np.tensordot(w, (member_preds - mean) ** 2, axes=1)}
    spread = result["variance"]
    if member_variances is not None:
        member_variances = np.asarray(member_variances, dtype=float)
        if member_variances.shape != member_preds.shape:
            raise ShapeError(
                f"member_variances must have the shape of member_preds {member_preds.shape}; "
                f"got shape {member_variances.shape}."
            )
        if member_variances.min() < 0:
            raise DataError("member_variances must be non-negative; got a negative value.")
        result["aleatoric_variance"] = np.tensordot(w, member_variances, axes=1)
        result["total_variance"] = result["aleatoric_variance"] + result["variance"]
        spread = result["total_variance"]
    centre = mean if combined is None else combined
    half_width = NormalDist().inv_cdf(0.5 + level / 2.0) * np.sqrt(spread)
    result["interval_lower"] = centre - half_width
    result["interval_upper"] = centre + half_width
    return result
