"""The default combiner: ``mean`` unless a learned combiner beats it beyond noise, row by row."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from ensembles.errors import ConfigError
from ensembles.heldout import SplitPredictions
from ensembles.manifest import CombinerInfo, ComparisonInfo, DefaultChoiceInfo, RankingLoss

#: The combiner every other one must beat: the Deep Ensembles rule.
REFERENCE = "mean"
#: Fewest effective members (1 / sum of squared weights) a default may keep.
MIN_EFFECTIVE_MEMBERS = 2.0
#: The chance that noise alone replaces mean when no eligible combiner is truly better: each
#: eligible combiner is tested one-sided at this level divided by their number (Bonferroni).
FAMILY_ERROR = 0.05
#: A mean difference below this share of mean's loss is rounding, not a difference: a
#: blend whose weights fell back to uniform computes mean's outputs in another order.
ROUNDING = 1e-9
#: The refusal of ``--combiners`` without mean and without ``--default-combiner``.
MEAN_MISSING = (
    "--combiners without mean needs --default-combiner NAME: the default is mean unless a "
    "learned combiner beats it on held-out rows; add mean to --combiners or name the default"
)


def ranking_loss(split: SplitPredictions) -> RankingLoss:
    """The loss the default is chosen by: log loss, Gaussian NLL or squared error.

    Gaussian NLL only when the members have Gaussian heads (``member_variances``): on the
    spread of point predictions alone it would rank the ensemble's variance estimate, not
    its predictions, so other regression members are ranked by squared error (RMSE).
    """
    if split.y.ndim == 1:
        return "nll"
    return "gaussian_nll" if split.member_variances is not None else "squared_error"


def effective_members(weights: np.ndarray | None, n_members: int) -> float:
    """The effective number of members ``1 / sum(w ** 2)`` of weights summing to one.

    Parameters
    ----------
    weights : np.ndarray, shape (n_members,), or None
        A combiner's ``member_weights`` (normalized here); None weighs members equally.
    n_members : int

    Returns
    -------
    float
        ``n_members`` for equal weights, 1 when one member carries all the weight.
    """
    if weights is None:
        return float(n_members)
    shares = np.asarray(weights, dtype=float) / np.sum(weights)
    return float(1.0 / np.sum(shares**2))


def mean_mistakes(split: SplitPredictions) -> int | None:
    """Rows whose class the members' plain mean gets wrong.

    Mean learns nothing, so these are its mistakes on the compared rows as well.

    Parameters
    ----------
    split : SplitPredictions
        The compared rows: ``y`` of shape (n_samples,) for classification and
        ``member_preds`` of shape (n_members, n_samples, n_classes).

    Returns
    -------
    int or None
        The count of rows whose mean probabilities' top class is not ``y``; None for
        regression (``y`` of shape (n_samples, n_outputs)).
    """
    if split.y.ndim != 1:
        return None
    return int(np.sum(split.member_preds.mean(axis=0).argmax(axis=1) != split.y))


def choose_default(
    results: dict[str, CombinerInfo],
    losses: dict[str, np.ndarray],
    loss: RankingLoss,
    n_members: int,
    override: str | None = None,
    mistakes: int | None = None,
) -> tuple[str, DefaultChoiceInfo]:
    """The default combiner and the comparison behind it.

    ``mean`` is the default unless an eligible combiner has a lower held-out loss by more
    than :func:`required_standard_errors` standard errors of the paired per-row differences
    (and by more than rounding, :data:`ROUNDING`); among those, the lowest mean loss wins.
    The bar grows with the number of eligible combiners, so that trying more of them does
    not make noise likelier to win (:data:`FAMILY_ERROR`). When mean classifies every
    compared row right, mean stays whatever the comparison says: log loss then rewards any
    combiner for being sharper, and no row shows what sharpening costs when it is wrong
    (a stack at 4 standard errors on 114 such rows lost 0.066 NLL on test). A combiner is
    not eligible when it is ``vote`` (hard votes are not a proper probability forecast),
    when its members were chosen on the compared rows (a greedy soup), or when it keeps
    fewer than 2 effective members of an ensemble of 2 or more (it would not keep the
    ensemble).

    Parameters
    ----------
    results : dict of str to CombinerInfo
        Every published combiner, with ``effective_members`` set.
    losses : dict of str to np.ndarray, shape (n_rows,)
        Each combiner's held-out loss on every fit row (cross-fitted), same rows for all.
    loss : {"nll", "gaussian_nll", "squared_error"}
        The loss in ``losses``.
    n_members : int
    override : str, optional
        The ``--default-combiner``; the comparison is still recorded.
    mistakes : int, optional
        Classification: the compared rows mean classifies wrongly (:func:`mean_mistakes`).

    Returns
    -------
    tuple of (str, DefaultChoiceInfo)

    Raises
    ------
    ConfigError
        When ``override`` was not fitted, or no override is given and ``mean`` was not.
    """
    if override is not None and override not in results:
        raise ConfigError(
            f"--default-combiner '{override}' was not fitted; fitted: {', '.join(results)}"
        )
    if override is None and REFERENCE not in losses:
        raise ConfigError(MEAN_MISSING)
    exclusions = {
        name: _exclusion(info, float(info.effective_members), n_members)
        for name, info in results.items()
    }
    n_eligible = sum(excluded is None for name, excluded in exclusions.items() if name != REFERENCE)
    bar = required_standard_errors(n_eligible)
    comparisons = {}
    if REFERENCE in losses:
        comparisons = {
            name: _compare(info, losses[name], losses[REFERENCE], exclusions[name], bar)
            for name, info in results.items()
        }
    n_rows = len(next(iter(losses.values())))
    name, reason = override, f"{override} was named by --default-combiner"
    if override is None:
        name, reason = _automatic_choice(comparisons, loss, bar, n_eligible, mistakes, n_rows)
    record = DefaultChoiceInfo(
        loss=loss,
        n_rows=n_rows,
        forced=override is not None,
        reason=reason,
        standard_errors=bar,
        mean_mistakes=mistakes,
        comparisons=comparisons,
    )
    return name, record


def required_standard_errors(n_eligible: int) -> float:
    """How many standard errors an eligible combiner must beat mean by to replace it.

    The one-sided normal quantile at ``FAMILY_ERROR / n_eligible``: 1.64 for one eligible
    combiner, 1.96 for two, 2.13 for three (blend, Caruana and stack, the most there are:
    a weight average is one network, never eligible).

    Parameters
    ----------
    n_eligible : int
        Combiners other than mean that could be the default; 0 is counted as 1 (the bar is
        then recorded but never applied).

    Returns
    -------
    float
    """
    return NormalDist().inv_cdf(1 - FAMILY_ERROR / max(n_eligible, 1))


def _automatic_choice(
    comparisons: dict[str, ComparisonInfo],
    loss: RankingLoss,
    bar: float,
    n_eligible: int,
    mistakes: int | None,
    n_rows: int,
) -> tuple[str, str]:
    """The default without an override, and the one-line reason."""
    if not n_eligible:
        return REFERENCE, "no combiner besides mean is eligible"
    if mistakes == 0:
        return REFERENCE, (
            f"mean classifies all {n_rows} compared rows right: any sharper combiner would "
            "score better on them, and none of them shows what sharpening costs when wrong"
        )
    better = [name for name, info in comparisons.items() if info.beats_mean and not info.excluded]
    if not better:
        return REFERENCE, (
            f"no eligible combiner has a lower held-out {loss} than mean by more than "
            f"{bar:.2f} standard errors (a one-sided {FAMILY_ERROR:.0%} test shared by "
            f"{n_eligible} eligible combiner{'s' if n_eligible > 1 else ''})"
        )
    best = min(better, key=lambda name: comparisons[name].mean_difference)
    chosen = comparisons[best]
    return best, (
        f"{best} has a lower held-out {loss} than mean by {-chosen.mean_difference:.4g} per "
        f"row, more than {bar:.2f} standard errors ({chosen.standard_error:.4g} each)"
    )


def _compare(
    info: CombinerInfo,
    losses: np.ndarray,
    reference: np.ndarray,
    excluded: str | None,
    bar: float,
) -> ComparisonInfo:
    differences = losses - reference
    standard_error = float(np.std(differences, ddof=1) / np.sqrt(len(differences)))
    mean_difference = float(np.mean(differences))
    margin = max(bar * standard_error, ROUNDING * float(np.mean(np.abs(reference))))
    return ComparisonInfo(
        mean_loss=float(np.mean(losses)),
        mean_difference=mean_difference,
        standard_error=standard_error,
        beats_mean=mean_difference < -margin,
        effective_members=float(info.effective_members),
        excluded=excluded,
    )


def _exclusion(info: CombinerInfo, effective: float, n_members: int) -> str | None:
    """Why a combiner can never be the default, or None."""
    if info.kind == "vote":
        return "hard votes are not a proper probability forecast"
    if info.fitted_on.get("selection"):
        return "its members were chosen on these rows, so its loss on them is optimistic"
    if n_members >= 2 and effective < MIN_EFFECTIVE_MEMBERS:
        shown = math.floor(effective * 100 + 1e-9) / 100  # 1.9998: 1.99, not 2.00
        return (
            f"{shown:.2f} effective members (fewer than {MIN_EFFECTIVE_MEMBERS:g}) would "
            "not keep the ensemble"
        )
    return None
