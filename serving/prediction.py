"""What a runtime returns for a batch, and the held-out baseline that drift is measured against."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ensembles.heldout import SplitPredictions
from ensembles.manifest import Manifest
from ensembles.uncertainty import member_variance

#: Most quantile bins per feature of the feature-drift signal (deciles of the validation rows).
MAX_DRIFT_BINS = 10
#: Validation rows per bin at least (fewer bins for small validation splits): a PSI of
#: ``n_bins`` bins against ``n`` validation rows is about ``(n_bins - 1) / n`` from sampling
#: noise alone, under 0.04 this way.
ROWS_PER_DRIFT_BIN = 25
#: Bin shares below this count as this much in the PSI (an empty bin would be infinite).
PSI_FLOOR = 1e-4


@dataclass(frozen=True)
class Baseline:
    """Held-out statistics a version is compared with to report drift.

    Attributes
    ----------
    feature_mean, feature_std : np.ndarray, shape (n_features,)
        Of the validation rows (a constant feature's std is 1).
    mean_abs_z : float
        Mean absolute z-score of the validation rows themselves (the no-drift level).
    mean_variance : float
        Mean member disagreement (:func:`~ensembles.uncertainty.member_variance`, the
        served ``variance``) on the validation rows: the no-drift uncertainty level.
    feature_edges : np.ndarray of float32, shape (n_features, n_bins - 1)
        Inner quantile edges of each feature on the validation rows (deciles; fewer bins
        with under 250 validation rows, see :data:`ROWS_PER_DRIFT_BIN`). Bin ``b`` of a
        feature holds the values above ``b`` of its edges (repeated edges leave empty bins
        that no value can reach).
    feature_shares : np.ndarray, shape (n_features, n_bins)
        Share of the validation rows in each bin of each feature.
    """

    feature_mean: np.ndarray
    feature_std: np.ndarray
    mean_abs_z: float
    mean_variance: float
    feature_edges: np.ndarray
    feature_shares: np.ndarray

    def bin_counts(self, X: np.ndarray) -> np.ndarray:
        """How many rows of ``X`` fall into each bin of each feature.

        Parameters
        ----------
        X : np.ndarray of float32, shape (n_samples, n_features)
            Rows as served (float32, so values on an edge bin as the validation rows did).

        Returns
        -------
        np.ndarray of int, shape (n_features, n_bins)
        """
        return _bin_counts(X, self.feature_edges)

    def feature_psi(self, counts: np.ndarray) -> np.ndarray:
        """Population stability index of each feature's bin counts against the validation rows.

        ``PSI = sum_b (a_b - e_b) * ln(a_b / e_b)`` with ``a`` the shares of ``counts`` and
        ``e`` the validation shares, both floored at :data:`PSI_FLOOR`. About 0 without
        drift (a few hundredths from sampling noise), over 0.25 for a large shift.

        Parameters
        ----------
        counts : np.ndarray, shape (n_features, n_bins)
            Bin counts (or exponentially weighted counts) of recent rows.

        Returns
        -------
        np.ndarray, shape (n_features,)
        """
        total = counts.sum(axis=1, keepdims=True)
        actual = np.maximum(counts / np.where(total > 0, total, 1.0), PSI_FLOOR)
        expected = np.maximum(self.feature_shares, PSI_FLOOR)
        return ((actual - expected) * np.log(actual / expected)).sum(axis=1)


@dataclass
class Prediction:
    """What the runtime returns for a batch.

    Attributes
    ----------
    combiner : str
        Name of the combiner used.
    combined : np.ndarray, shape (n_samples, n_outputs)
        Class probabilities or values.
    labels : np.ndarray of int64, shape (n_samples,), or None
        Argmax class indices (classification only).
    uncertainty : dict of str to np.ndarray
        Each (n_samples, n_outputs) or (n_samples,); empty when not asked for.
    member_outputs : np.ndarray, shape (n_members, n_samples, n_outputs), or None
    member_variances : np.ndarray, shape (n_members, n_samples, n_outputs), or None
    finite : np.ndarray of bool, shape (n_samples,), or None
        Whether every output computed for the row (the members' included, whether or not
        they are returned) is finite; None when every row is (or when not checked).
    """

    combiner: str
    combined: np.ndarray
    labels: np.ndarray | None
    uncertainty: dict[str, np.ndarray] = field(default_factory=dict)
    member_outputs: np.ndarray | None = None
    member_variances: np.ndarray | None = None
    finite: np.ndarray | None = None

    def rows(self, start: int, stop: int) -> Prediction:
        """Rows ``start:stop`` of this prediction (views, no copies)."""
        return Prediction(
            combiner=self.combiner,
            combined=self.combined[start:stop],
            labels=None if self.labels is None else self.labels[start:stop],
            uncertainty={k: v[start:stop] for k, v in self.uncertainty.items()},
            member_outputs=None
            if self.member_outputs is None
            else self.member_outputs[:, start:stop],
            member_variances=None
            if self.member_variances is None
            else self.member_variances[:, start:stop],
            finite=None if self.finite is None else self.finite[start:stop],
        )

    def nonfinite_rows(self) -> list[int]:
        """Indices of the rows with a non-finite output (empty when all are finite)."""
        return [] if self.finite is None else np.flatnonzero(~self.finite).tolist()


def finite_rows(
    combined: np.ndarray, measures: dict[str, np.ndarray], *member_arrays: np.ndarray | None
) -> np.ndarray | None:
    """Whether the combined output, every measure and every member array
    ``(n_members, n_samples, n_outputs)`` given are finite on each row.

    Returns
    -------
    np.ndarray of bool, shape (n_samples,), or None
        None when every value is finite: the common case, found from one float64 sum per
        array (a NaN or infinity makes it non-finite). When a sum is not finite, every
        row is checked, so a sum that merely overflows costs that check, not a refusal.
    """
    arrays = [combined, *measures.values(), *(a for a in member_arrays if a is not None)]
    with np.errstate(over="ignore", invalid="ignore"):
        sums = [np.add.reduce(a, axis=None, dtype=np.float64) for a in arrays]
    if np.isfinite(sums).all():
        return None
    n_samples = len(combined)
    finite = np.isfinite(combined).reshape(n_samples, -1).all(axis=1)
    for array in measures.values():
        finite &= np.isfinite(array).reshape(n_samples, -1).all(axis=1)
    for per_member in member_arrays:
        if per_member is not None:
            finite &= np.isfinite(per_member).all(axis=(0, 2))
    return finite


def baseline_from(validation: SplitPredictions, manifest: Manifest) -> Baseline | None:
    """The drift baseline of a version from its held-out validation rows.

    Parameters
    ----------
    validation : SplitPredictions
        The version's stored validation split (``heldout.npz``).
    manifest : Manifest
        Its verified manifest (for ``n_features``).

    Returns
    -------
    Baseline or None
        Feature means, standard deviations, quantile edges and bin shares of the validation
        rows, their mean absolute z-score and mean member disagreement; None when the
        validation rows are unusable (not (n_samples, n_features) with at least 2 rows).
    """
    X = np.asarray(validation.X, dtype=float)
    if X.ndim != 2 or X.shape[1] != manifest.input.n_features or len(X) < 2:
        return None
    mean, std = X.mean(axis=0), X.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    # Binned in float32, as requests are served: a value on an edge falls on one side for
    # the validation rows and the requests alike.
    served = X.astype(np.float32)
    n_bins = int(np.clip(len(X) // ROWS_PER_DRIFT_BIN, 2, MAX_DRIFT_BINS))
    quantiles = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    edges = np.quantile(served, quantiles, axis=0).T.astype(np.float32)
    return Baseline(
        feature_mean=mean,
        feature_std=std,
        mean_abs_z=float(np.abs((X - mean) / std).mean()) or 1.0,
        mean_variance=float(member_variance(validation.member_preds).mean()),
        feature_edges=edges,
        feature_shares=_bin_counts(served, edges) / len(X),
    )


def _bin_counts(X: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``(n_features, n_bins)`` counts of ``X`` in the bins ``edges`` delimit.

    A bin's count is the rows above its lower edge minus those above its upper one (the
    edges of a feature are sorted): one broadcast comparison, no Python loop.
    """
    above = np.count_nonzero(X.T[:, :, None] > edges[:, None, :], axis=1)  # (F, n_bins - 1)
    n_features, n_samples = edges.shape[0], len(X)
    cumulative = np.column_stack(
        [np.full(n_features, n_samples), above, np.zeros(n_features, dtype=above.dtype)]
    )
    return cumulative[:, :-1] - cumulative[:, 1:]
