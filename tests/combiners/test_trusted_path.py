"""``combine(check=False)``: the same output on valid input, the counts still checked."""

from __future__ import annotations

import numpy as np
import pytest

from ensembles.combiners import build_combiner
from ensembles.errors import ShapeError

RNG = np.random.default_rng(3)
PROBS = RNG.dirichlet(np.ones(4), size=(3, 40))
Y = RNG.integers(0, 4, 40)


@pytest.mark.parametrize("kind", ["mean", "vote", "blend", "stack"])
def test_unchecked_combine_matches_the_checked_one(kind: str) -> None:
    combiner = build_combiner(kind, "classification").fit(PROBS, Y)
    # The checked path works on a converted copy; BLAS kernels chosen by alignment may move
    # the last bits of stacking's products, never more.
    np.testing.assert_allclose(
        combiner.combine(PROBS, check=False), combiner.combine(PROBS), rtol=1e-12, atol=1e-14
    )


def test_unchecked_combine_still_checks_the_member_count() -> None:
    combiner = build_combiner("mean", "classification").fit(PROBS, Y)
    with pytest.raises(ShapeError, match="fitted on 3 members but got 2"):
        combiner.combine(PROBS[:2], check=False)
    with pytest.raises(ShapeError, match=r"needs member_preds of shape .* got shape \(40, 4\)"):
        combiner.combine(PROBS[0], check=False)
