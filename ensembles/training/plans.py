"""Member plans: which rows, which seed and which settings each member trains with.

A plan stores a row *rule* (a seed and a recipe), never the row list itself, so the rows a
member saw can be regenerated from the manifest, as scikit-learn's bagging does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ensembles.errors import ConfigError

_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class MemberPlan:
    """How one member is trained.

    Attributes
    ----------
    index : int
        Position of the member in the ensemble.
    seed : int
        Seeds weights, batch order and dropout (and the row rule's draw).
    rows : dict
        The row rule: ``{"rule": "all"}``, ``{"rule": "bootstrap", "seed": s}``,
        ``{"rule": "kfold", "seed": s, "n_folds": k, "fold": f}`` or
        ``{"rule": "subsample", "seed": s, "fraction": f}``.
    settings : dict
        Training settings that override the shared configuration (model averaging variants).
    """

    index: int
    seed: int
    rows: dict[str, Any] = field(default_factory=lambda: {"rule": "all"})
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def member_id(self) -> str:
        """The member's id, e.g. ``m003``."""
        return f"m{self.index:03d}"


def member_seed(base_seed: int, index: int) -> int:
    """The seed of member ``index`` of an ensemble trained with ``base_seed``."""
    return (base_seed * _SEED_STRIDE + 7919 * (index + 1)) % (2**31 - 1)


def training_rows(rule: dict[str, Any], n_rows: int) -> np.ndarray:
    """The training-row indices a rule selects from ``n_rows`` rows.

    Parameters
    ----------
    rule : dict
        A plan's row rule (see :class:`MemberPlan`), as stored in the manifest.
    n_rows : int
        Rows the rule draws from: the training split, or after a refit the training and
        then the validation rows (a manifest member's ``rows["of"]`` says which).

    Returns
    -------
    ndarray (n_selected,) of int
        Sorted indices into those rows; bootstrap rules repeat indices.

    Raises
    ------
    ConfigError
        For an unknown rule.
    """
    kind = rule["rule"]
    if kind == "all":
        return np.arange(n_rows)
    rng = np.random.default_rng(rule.get("seed"))
    if kind == "bootstrap":
        return np.sort(rng.integers(0, n_rows, n_rows))
    if kind == "subsample":
        size = max(1, round(rule["fraction"] * n_rows))
        return np.sort(rng.choice(n_rows, size=size, replace=False))
    if kind == "kfold":
        folds = np.array_split(rng.permutation(n_rows), rule["n_folds"])
        held_out = folds[rule["fold"]]
        return np.setdiff1d(np.arange(n_rows), held_out)
    raise ConfigError(f"unknown row rule {kind!r}")


def out_of_sample_rows(rule: dict[str, Any], n_rows: int) -> np.ndarray:
    """Training-split rows the member never saw (out-of-bag, out-of-fold, left out).

    Returns
    -------
    ndarray (n_unseen,) of int
        Sorted indices into the training split; empty for ``{"rule": "all"}``.
    """
    return np.setdiff1d(np.arange(n_rows), training_rows(rule, n_rows))


def bootstrap_plans(n_members: int, seed: int) -> list[MemberPlan]:
    """Bagging: each member trains on a bootstrap sample drawn from its own seed."""
    return [
        MemberPlan(i, member_seed(seed, i), {"rule": "bootstrap", "seed": member_seed(seed, i)})
        for i in range(n_members)
    ]


def kfold_plans(n_folds: int, seed: int) -> list[MemberPlan]:
    """K-fold: member ``f`` trains on every fold but ``f`` of one seeded permutation."""
    if n_folds < 2:
        raise ConfigError(f"kfold needs at least 2 members (folds), got {n_folds}")
    return [
        MemberPlan(
            f, member_seed(seed, f), {"rule": "kfold", "seed": seed, "n_folds": n_folds, "fold": f}
        )
        for f in range(n_folds)
    ]


def subsample_fraction_problem(fraction: float) -> str | None:
    """Why ``--subsample-fraction`` cannot be used (checked before any training); None if it can."""
    if 0 < fraction < 1:
        return None
    return f"--subsample-fraction must be between 0 and 1, got {fraction}"


def subsample_plans(n_members: int, seed: int, fraction: float) -> list[MemberPlan]:
    """Subsampling: each member trains on ``fraction`` of the rows drawn without replacement."""
    if problem := subsample_fraction_problem(fraction):
        raise ConfigError(problem)
    return [
        MemberPlan(
            i,
            member_seed(seed, i),
            {"rule": "subsample", "seed": member_seed(seed, i), "fraction": fraction},
        )
        for i in range(n_members)
    ]


def repeat_plans(
    n_members: int, seed: int, variants: list[dict[str, Any]] | None = None
) -> list[MemberPlan]:
    """Model averaging: independent runs with different seeds on all rows.

    With ``variants``, member ``i`` uses ``variants[i % len(variants)]`` as its setting
    overrides (a heterogeneous ensemble).
    """
    variants = variants or [{}]
    return [
        MemberPlan(i, member_seed(seed, i), {"rule": "all"}, dict(variants[i % len(variants)]))
        for i in range(n_members)
    ]
