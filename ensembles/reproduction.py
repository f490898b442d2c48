"""Stored test outputs (``test_outputs.npz``) and the check that a loaded version reproduces them.

At publish time every combiner is rebuilt from its JSON state, exactly as serving will
rebuild it, and its output on the stored test member predictions is saved. At load time the
rebuilt combiners run on the same stored inputs and must give the same outputs within a
tolerance: a weight, temperature or coefficient changed after training, by hand or by a tool
that rewrote the manifest and its checksum, is refused with the combiner's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ensembles.combiners import Combiner, combiner_from_state
from ensembles.errors import IntegrityError
from ensembles.heldout import HELDOUT_FILE, HeldoutPredictions, SplitPredictions, read_npz
from ensembles.manifest import WEIGHT_AVERAGE, CombinerInfo
from ensembles.store import StoredVersion

TEST_OUTPUTS_FILE = "test_outputs.npz"
#: Combiners recompute in float64 from the very same stored inputs: only BLAS kernels and
#: summation order differ between machines, which moves the last bits (about 1e-15
#: relative). A changed weight, temperature or coefficient moves outputs by orders more.
#: The absolute part scales with the outputs' magnitude (an output near 0 made of large
#: terms, as stacking on large regression targets, keeps their rounding).
COMBINER_RTOL = 1e-7
COMBINER_ATOL = 1e-10
#: The averaged graph runs in float32 (onnxruntime, possibly another CPU than the one that
#: exported it): ten times the export parity tolerance, relative to the output's spread so
#: that it holds for regression targets in any unit.
MODEL_TOLERANCE = 1e-4


def save_test_outputs(path: Path, outputs: Mapping[str, np.ndarray]) -> None:
    """Write one float64 array ``(n_test, n_outputs)`` per combiner name (no pickles)."""
    np.savez(path, **{name: np.asarray(out, dtype=np.float64) for name, out in outputs.items()})


def load_test_outputs(data: bytes, source: str = TEST_OUTPUTS_FILE) -> dict[str, np.ndarray]:
    """Read the bytes of a file written by :func:`save_test_outputs`.

    Raises
    ------
    IntegrityError
        When the bytes are not such a file (the message names ``source``).
    """
    return read_npz(data, source)


def combiner_test_outputs(
    combiners: Mapping[str, CombinerInfo], test: SplitPredictions
) -> dict[str, np.ndarray]:
    """What every combiner rebuilt from its stored state outputs on the test split.

    Weight averaging is left out: its output comes from its own graph (the caller adds it).

    Returns
    -------
    dict of str to ndarray (n_test, n_outputs), float64
    """
    return {
        name: combiner_from_state(info.state).combine(test.member_preds, test.X)
        for name, info in combiners.items()
        if info.kind != WEIGHT_AVERAGE
    }


def check_reproduction(
    name: str, actual: np.ndarray, expected: Mapping[str, np.ndarray], *, model: bool = False
) -> None:
    """Refuse a combiner (or, with ``model``, the averaged graph) that does not reproduce.

    Parameters
    ----------
    name : str
        The combiner's published name.
    actual : ndarray (n_test, n_outputs)
        What it outputs now on the stored test inputs.
    expected : mapping of str to ndarray
        The stored test outputs.
    model : bool
        Compare with the float32 model tolerance instead of the combiner one.

    Raises
    ------
    IntegrityError
        When no output is stored for ``name``, or the outputs differ beyond the tolerance.
    """
    if name not in expected:
        raise IntegrityError(
            f"combiner '{name}' has no stored test output in {TEST_OUTPUTS_FILE}: the version "
            "cannot prove that it serves what was trained"
        )
    stored = expected[name]
    actual = np.asarray(actual, dtype=np.float64)
    if stored.shape != actual.shape:
        raise IntegrityError(
            f"combiner '{name}' outputs shape {list(actual.shape)} on the stored test rows; "
            f"{TEST_OUTPUTS_FILE} holds {list(stored.shape)}"
        )
    if model:
        spread = float(np.std(stored)) if stored.size else 0.0
        rtol, atol = MODEL_TOLERANCE, MODEL_TOLERANCE * max(1.0, spread)
    else:
        magnitude = float(np.max(np.abs(stored))) if stored.size else 0.0
        rtol, atol = COMBINER_RTOL, COMBINER_ATOL * max(1.0, magnitude)
    difference = np.abs(actual - stored)
    if not np.all(difference <= atol + rtol * np.abs(stored)):
        worst = float(np.nanmax(difference)) if np.isfinite(difference).any() else float("nan")
        raise IntegrityError(
            f"combiner '{name}' does not reproduce its stored test outputs (largest difference "
            f"{worst:.3g}): its state (weights, temperature or coefficients) or its model "
            "changed after training; publish the ensemble again"
        )


def check_member_reproduction(
    outputs: np.ndarray | tuple[np.ndarray, np.ndarray | None], test: SplitPredictions
) -> None:
    """Refuse members whose outputs on the stored test rows differ from those stored.

    Parameters
    ----------
    outputs : ndarray (n_members, n_test, n_outputs), or (values, variances)
        What the members (as loaded) output on ``test.X``.
    test : SplitPredictions
        The stored test split; ``member_preds`` (and ``member_variances``) are what the
        members output when they were trained.

    Raises
    ------
    IntegrityError
        When the shapes or values differ beyond the float32 model tolerance.
    """
    values, variances = outputs if isinstance(outputs, tuple) else (outputs, None)
    pairs = [("member outputs", values, test.member_preds)]
    if variances is not None and test.member_variances is not None:
        pairs.append(("member variances", variances, test.member_variances))
    for what, actual, stored in pairs:
        stored = np.asarray(stored, dtype=np.float64)
        actual = np.asarray(actual, dtype=np.float64)
        spread = float(np.std(stored)) if stored.size else 0.0
        atol = MODEL_TOLERANCE * max(1.0, spread)
        if actual.shape != stored.shape or not np.allclose(
            actual, stored, rtol=MODEL_TOLERANCE, atol=atol
        ):
            raise IntegrityError(
                f"the {what} on the stored test rows differ from those stored at training: "
                "the member graphs are not the ones trained; publish the ensemble again"
            )


def verify_combiners(
    combiners: Mapping[str, Combiner], test: SplitPredictions, expected: Mapping[str, np.ndarray]
) -> None:
    """Run every rebuilt combiner on the stored test member predictions and compare.

    Parameters
    ----------
    combiners : mapping of str to Combiner
        Rebuilt from the manifest (weight averaging excluded).
    test : SplitPredictions
        The stored test split (``heldout.npz``).
    expected : mapping of str to ndarray
        The stored test outputs.

    Raises
    ------
    IntegrityError
        Naming the first combiner that does not reproduce, or cannot run.
    """
    for name, combiner in combiners.items():
        try:
            outputs = combiner.combine(test.member_preds, test.X)
        except (TypeError, ValueError, IndexError) as exc:  # a state of the wrong shape
            raise IntegrityError(
                f"combiner '{name}' cannot run on the stored test rows: {exc}"
            ) from exc
        check_reproduction(name, outputs, expected)


def stored_test_data(stored: StoredVersion) -> tuple[HeldoutPredictions, dict[str, np.ndarray]]:
    """The held-out predictions and stored test outputs of a verified version.

    Raises
    ------
    IntegrityError
        When either file is absent from the manifest or unreadable (the message names it).
    """
    label = f"{stored.manifest.name}/{stored.manifest.version}"

    def data(file: str) -> bytes:
        if file not in stored.files:
            raise IntegrityError(
                f"{label}/{file} is not listed in the manifest's checksums, so it cannot be "
                "verified"
            )
        return stored.files[file]

    heldout = HeldoutPredictions.load(data(HELDOUT_FILE), f"{label}/{HELDOUT_FILE}")
    return heldout, load_test_outputs(data(TEST_OUTPUTS_FILE), f"{label}/{TEST_OUTPUTS_FILE}")
