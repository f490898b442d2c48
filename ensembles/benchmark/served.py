"""What serving returns for new rows: one combiner's output and every uncertainty measure.

Serving's runtime needs the serve extra (FastAPI); the benchmark runs with the train extra,
so :class:`ServedModel` runs the version's member ONNX files on the rows and hands their
outputs to :func:`~ensembles.benchmark.scoring.model_uncertainty`, the benchmark's account
of what serving returns for one combiner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ensembles.benchmark.scoring import model_uncertainty
from ensembles.benchmark.sessions import open_session, session_outputs
from ensembles.heldout import SplitPredictions
from ensembles.manifest import Manifest


class ServedModel:
    """One combiner of a published version, run on new rows as serving runs it.

    Parameters
    ----------
    folder : Path
        The version folder.
    manifest : Manifest
    name : str, optional
        The combiner (``weight_average`` included); the manifest's default when None.
    """

    def __init__(self, folder: Path, manifest: Manifest, name: str | None = None) -> None:
        self.folder = folder
        self.manifest = manifest
        self.name = name or manifest.default_combiner
        #: Interval level of regression intervals (the manifest's).
        self.level = manifest.interval_level
        self._members = [open_session(folder / member.file) for member in manifest.members]

    def member_outputs(self, index: int, X: np.ndarray) -> tuple[np.ndarray, ...]:
        """One member's outputs on ``X``: probabilities, or values (and variances)."""
        return tuple(session_outputs(self._members[index], X))

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The served output and every served uncertainty measure on ``X``.

        Parameters
        ----------
        X : np.ndarray, shape (n_samples, n_features)

        Returns
        -------
        served : np.ndarray, shape (n_samples, n_outputs)
            Probabilities or values.
        uncertainty : dict of str to np.ndarray
            Each ``(n_samples,)`` or ``(n_samples, n_outputs)``.
        """
        outputs = [session_outputs(session, X) for session in self._members]
        preds = np.stack([output[0] for output in outputs])
        variances = np.stack([output[1] for output in outputs]) if len(outputs[0]) > 1 else None
        no_targets = np.zeros(len(X), dtype=np.int64)  # model_uncertainty reads no target
        split = SplitPredictions(X, no_targets, preds, variances)
        info = self.manifest.combiners[self.name]
        return model_uncertainty(self.folder, self.manifest.task, info, split, self.level)
