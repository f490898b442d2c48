"""What a runtime is built from: one verified version's member graphs, combiners and averaged
model, and the check that together they reproduce what was trained (the server runs it at
load, ``ensembles-store check`` on every version).

Everything here reads only the verified bytes of a :class:`~ensembles.store.StoredVersion`
(never a path) and raises :class:`~ensembles.errors.IntegrityError` naming the file or the
combiner at fault, with paths relative to the store root.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from ensembles.combiners import Combiner, combiner_from_state
from ensembles.errors import EnsembleError, IntegrityError
from ensembles.fused import FusedMembers, session_options
from ensembles.heldout import SplitPredictions
from ensembles.manifest import WEIGHT_AVERAGE
from ensembles.onnx_signature import load_onnx
from ensembles.reproduction import (
    check_member_reproduction,
    check_reproduction,
    stored_test_data,
    verify_combiners,
)
from ensembles.store import StoredVersion

#: What the weight-averaged model returns: its values, and its own variance head or None.
AveragedOutputs = tuple[np.ndarray, np.ndarray | None]


@dataclass(frozen=True)
class WeightAverage:
    """The weight-averaged model: its own session and the outputs it is run for.

    ``output_names`` is the value output, then the variance head's output when the model
    has one (Gaussian-head members average into a Gaussian-head model).
    """

    session: ort.InferenceSession
    input_name: str
    output_names: tuple[str, ...]

    def __call__(self, X: np.ndarray) -> AveragedOutputs:
        """Values ``(n_samples, n_outputs)`` and own variance (or None) on float32 ``X``."""
        results = self.session.run(list(self.output_names), {self.input_name: X})
        return results[0], results[1] if len(results) > 1 else None


class VersionParts:
    """Build the parts of one verified version.

    Parameters
    ----------
    stored : StoredVersion
        The manifest and the verified bytes of every file it lists.
    options : ort.SessionOptions
        onnxruntime settings of every session.
    """

    def __init__(self, stored: StoredVersion, options: ort.SessionOptions) -> None:
        self.stored = stored
        self.manifest = stored.manifest
        self.options = options
        #: The version relative to the store root, for messages (never absolute).
        self.label = f"{self.manifest.name}/{self.manifest.version}"

    def members(self) -> FusedMembers:
        """Every member graph, signature-checked, fused into one session."""
        if not self.manifest.members:
            raise IntegrityError(f"{self.label}/manifest.json lists no members")
        models = [self._onnx(member.file) for member in self.manifest.members]
        try:
            return FusedMembers(models, options=self.options)
        except EnsembleError as exc:
            raise IntegrityError(f"{self.label}: members cannot run together: {exc}") from exc

    def combiners(self) -> dict[str, Combiner | WeightAverage]:
        """Every fitted combiner rebuilt from its state (the averaged model as a session)."""
        combiners = {
            name: self._combiner(name, info.kind, info.state)
            for name, info in self.manifest.combiners.items()
        }
        default = self.manifest.default_combiner
        if default not in combiners:
            raise IntegrityError(
                f"{self.label}/manifest.json: default combiner '{default}' is not among the "
                f"fitted combiners {sorted(combiners)}"
            )
        return combiners

    def _file(self, file: str) -> bytes:
        """The verified bytes of a file the manifest lists."""
        data = self.stored.files.get(file)
        if data is None:
            raise IntegrityError(
                f"{self.label}/{file} is not listed in the manifest's checksums, so it cannot "
                "be verified"
            )
        return data

    def _onnx(self, file: str) -> Any:
        return load_onnx(self._file(file), self.manifest, f"{self.label}/{file}")

    def _combiner(self, name: str, kind: str, state: dict[str, Any]) -> Combiner | WeightAverage:
        if kind != WEIGHT_AVERAGE:
            try:
                return combiner_from_state(state)
            except EnsembleError as exc:
                raise IntegrityError(f"combiner '{name}' cannot be rebuilt: {exc}") from exc
        file, ids = state.get("file"), state.get("members")
        if not isinstance(file, str) or file not in self.manifest.files:
            raise IntegrityError(f"combiner '{name}' names file {file!r}, absent from the manifest")
        known = [member.id for member in self.manifest.members]
        unknown = [i for i in ids or [] if i not in known]
        if not ids or unknown:
            raise IntegrityError(f"combiner '{name}' averages unknown members {unknown or ids}")
        session = ort.InferenceSession(
            self._onnx(file).SerializeToString(),
            sess_options=self.options,
            providers=["CPUExecutionProvider"],
        )
        output = self.manifest.output
        names = (output.name, output.variance_name) if output.variance_name else (output.name,)
        return WeightAverage(session, self.manifest.input.name, names)


def verify_reproduction(
    label: str | None,
    members: FusedMembers,
    combiners: dict[str, Combiner | WeightAverage],
    test: SplitPredictions,
    expected: dict[str, np.ndarray],
) -> None:
    """Refuse a version unless its members reproduce their stored test predictions and every
    combiner (the averaged graph too) its stored test outputs.

    Parameters
    ----------
    label : str or None
        The version (``name/version``) that prefixes messages; None for none.
    members, combiners
        The version's parts (:class:`VersionParts`).
    test : SplitPredictions
        The stored test rows and member predictions.
    expected : dict of str to np.ndarray
        Every combiner's stored test outputs.

    Raises
    ------
    IntegrityError
        Naming the members or the combiner that differ.
    """
    X = np.ascontiguousarray(test.X, dtype=np.float32)
    rules = {n: c for n, c in combiners.items() if not isinstance(c, WeightAverage)}
    try:
        check_member_reproduction(members(X), test)
        verify_combiners(rules, test, expected)
        for name, rule in combiners.items():
            if isinstance(rule, WeightAverage):
                check_reproduction(name, rule(X)[0], expected, model=True)
    except EnsembleError as exc:
        raise IntegrityError(f"{label}: {exc}" if label else str(exc)) from exc


def verify_version(stored: StoredVersion) -> None:
    """Check a verified version as a server does before it serves it.

    Every member graph is parsed, signature-checked and fused; every combiner is rebuilt
    (the averaged model as a session); members and combiners must reproduce their stored
    test outputs.

    Raises
    ------
    IntegrityError
        Naming the file or the combiner at fault, or wrapping whatever else failed (the
        caller names the version).
    """
    try:
        parts = VersionParts(stored, session_options(1))
        heldout, expected = stored_test_data(stored)
        verify_reproduction(None, parts.members(), parts.combiners(), heldout.test, expected)
    except IntegrityError:
        raise
    except Exception as exc:  # onnx and onnxruntime raise their own classes, a bad state others
        raise IntegrityError(f"cannot be loaded: {type(exc).__name__}: {exc}") from exc
