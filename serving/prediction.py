"""What a runtime returns for a batch, and the held-out baseline that drift is measured against."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ensembles.heldout import SplitPredictions
from ensembles.manifest import Manifest


@dataclass(frozen=True)
class Baseline:
    """Held-out statistics a version is compared with to report drift.

    Attributes
    ----------
    feature_mean, feature_std : np.ndarray, shape (n_features,)
        Of the validation rows.
    mean_abs_z : float
        Mean absolute z-score of the validation rows themselves (the no-drift level).
    mean_variance : float
        Mean member variance on the validation rows (the no-drift uncertainty level).
    """

    feature_mean: np.ndarray
    feature_std: np.ndarray
    mean_abs_z: float
    mean_variance: float


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
    """

    combiner: str
    combined: np.ndarray
    labels: np.ndarray | None
    uncertainty: dict[str, np.ndarray] = field(default_factory=dict)
    member_outputs: np.ndarray | None = None
    member_variances: np.ndarray | None = None

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
        )


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
        Feature mean and standard deviation (n_features,) of the validation rows, their
        mean absolute z-score and mean member variance; None when the validation rows are
        unusable (not (n_samples, n_features) with at least 2 rows).
    """
    X = np.asarray(validation.X, dtype=float)
    if X.ndim != 2 or X.shape[1] != manifest.input.n_features or len(X) < 2:
        return None
    mean, std = X.mean(axis=0), X.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    preds = np.asarray(validation.member_preds, dtype=float)
    return Baseline(
        feature_mean=mean,
        feature_std=std,
        mean_abs_z=float(np.abs((X - mean) / std).mean()) or 1.0,
        mean_variance=float(preds.var(axis=0).mean()),
    )
