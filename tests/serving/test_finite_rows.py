"""serving.prediction.finite_rows: the one-sum shortcut and the row-by-row check behind it."""

from __future__ import annotations

import numpy as np

from serving.prediction import finite_rows


def _arrays(n_rows: int = 4) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    members = rng.random((3, n_rows, 2)).astype(np.float32)
    combined = members.mean(axis=0, dtype=np.float64)
    return combined, {"variance": members.var(axis=0, dtype=np.float64)}, members


def test_all_finite_is_found_without_a_row_check():
    combined, measures, members = _arrays()
    assert finite_rows(combined, measures, members, None) is None


def test_a_non_finite_value_anywhere_names_its_row():
    for where in ("combined", "measure", "members"):
        combined, measures, members = _arrays()
        if where == "combined":
            combined[2, 1] = np.inf
        elif where == "measure":
            measures["variance"][2, 0] = np.nan
        else:
            members[1, 2, 0] = -np.inf
        finite = finite_rows(combined, measures, members, None)
        assert finite is not None, where
        assert finite.tolist() == [True, True, False, True], where


def test_finite_values_whose_sum_overflows_are_still_finite():
    combined, measures, members = _arrays()
    combined[:] = np.finfo(np.float64).max  # every value finite, their sum is not
    finite = finite_rows(combined, measures, members, None)
    assert finite is not None and finite.all()
