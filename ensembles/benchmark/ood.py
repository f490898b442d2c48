"""Out-of-distribution detection: AUROC and FPR at 95% TPR of every served uncertainty.

Rows of held-out classes (see :mod:`ensembles.benchmark.class_holdout`) are the positives,
the in-distribution test rows the negatives; a measure detects well when it is higher on
the former. Everything is plain numpy: ties count half in the AUROC (the Mann-Whitney
statistic) and a threshold flags the rows scoring at or above it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ensembles.benchmark.aggregate import format_cell, mean_std
from ensembles.benchmark.headline import default_label, format_gain, paired_gain
from ensembles.benchmark.served import ServedModel
from ensembles.benchmark.uncertainty_quality import check_scores, detection_auroc
from ensembles.markdown import format_table

#: Share of out-of-distribution rows the FPR is measured at.
TARGET_TPR = 0.95
#: False-positive rates at which ROC curves are stored (for the plot).
ROC_GRID = np.linspace(0.0, 1.0, 51)
#: Served measures that are high when the model is sure: scored as ``1 - value``.
CERTAINTY_MEASURES: frozenset[str] = frozenset({"agreement", "max_probability"})
#: One-network references, in table order: the ensemble's best member (chosen on
#: validation) and the same-budget single network; each detects by its own entropy.
REFERENCES: tuple[str, ...] = ("best_member", "single_network")
REFERENCE_MEASURE = "predictive_entropy"
#: The served measure compared with each reference's entropy, repeat by repeat.
COMPARED_MEASURE = "mutual_information"


def fpr_at_tpr(in_scores: np.ndarray, out_scores: np.ndarray, tpr: float = TARGET_TPR) -> float:
    """Share of in-distribution rows flagged at the threshold that flags ``tpr`` of the rest.

    The threshold is the highest one that flags (score >= threshold) at least
    ``ceil(tpr * n_out)`` out-of-distribution rows: the lowest FPR at that TPR.

    Parameters
    ----------
    in_scores : np.ndarray, shape (n_in,)
    out_scores : np.ndarray, shape (n_out,)
    tpr : float, default 0.95

    Returns
    -------
    float
        In [0, 1]; lower is better, 1.0 for a constant score.
    """
    in_scores, out_scores = check_scores(in_scores, out_scores)
    needed = math.ceil(tpr * len(out_scores) - 1e-9)
    threshold = np.sort(out_scores)[::-1][max(needed, 1) - 1]
    return float(np.mean(in_scores >= threshold))


def roc_curve(
    in_scores: np.ndarray, out_scores: np.ndarray, grid: np.ndarray = ROC_GRID
) -> list[float]:
    """True-positive rate at each false-positive rate of ``grid`` (linear between points).

    Returns
    -------
    list of float, length len(grid)
        The ROC curve through every distinct threshold, read off at ``grid``; its area is
        :func:`detection_auroc`.
    """
    in_scores, out_scores = check_scores(in_scores, out_scores)
    thresholds = np.unique(np.concatenate([in_scores, out_scores]))[::-1]
    fpr = np.concatenate([[0.0], [np.mean(in_scores >= t) for t in thresholds]])
    tpr = np.concatenate([[0.0], [np.mean(out_scores >= t) for t in thresholds]])
    return np.interp(grid, fpr, tpr).tolist()


def detection_scores(measures: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every served measure as a per-row score that is higher when the model is less sure.

    Per-class arrays (``variance``) are averaged over classes; measures of sureness
    (:data:`CERTAINTY_MEASURES`) become ``1 - value``.

    Returns
    -------
    dict of str to np.ndarray, each shape (n_samples,)
    """
    scores = {}
    for name, values in measures.items():
        values = np.asarray(values, dtype=float)
        if values.ndim == 2:
            values = values.mean(axis=1)
        scores[name] = 1.0 - values if name in CERTAINTY_MEASURES else values
    return scores


def ood_scores(
    served: ServedModel,
    X_in: np.ndarray,
    X_out: np.ndarray,
    references: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
) -> dict[str, Any]:
    """AUROC, FPR at 95% TPR and ROC curve of every served measure of one version.

    Parameters
    ----------
    served : ServedModel
        The combiner users get (the manifest's default).
    X_in : np.ndarray, shape (n_in, n_features)
        In-distribution rows (the test split).
    X_out : np.ndarray, shape (n_out, n_features)
        Rows of the held-out classes.
    references : dict of str to callable, optional
        One-network references (:data:`REFERENCES`): ``reference(X) -> (n_samples,)``, its
        predictive entropy.

    Returns
    -------
    dict
        ``n_in``, ``n_out``; ``detection``: model (``default`` and each reference) ->
        measure -> ``auroc`` and ``fpr95``; ``roc``: model -> measure -> TPR at
        :data:`ROC_GRID`.
    """
    inside = detection_scores(served.predict(X_in)[1])
    outside = detection_scores(served.predict(X_out)[1])
    scores = {"default": {name: (inside[name], outside[name]) for name in inside}}
    for model, entropy in (references or {}).items():
        scores[model] = {REFERENCE_MEASURE: (entropy(X_in), entropy(X_out))}
    detection: dict[str, dict] = {}
    roc: dict[str, dict] = {}
    for model, measures in scores.items():
        detection[model] = {
            name: {"auroc": detection_auroc(*pair), "fpr95": fpr_at_tpr(*pair)}
            for name, pair in measures.items()
        }
        roc[model] = {name: roc_curve(*pair) for name, pair in measures.items()}
    return {"n_in": len(X_in), "n_out": len(X_out), "detection": detection, "roc": roc}


def measure_label(name: str) -> str:
    """Column header of a served measure: ``1−agreement`` for measures of sureness."""
    return f"1−{name}" if name in CERTAINTY_MEASURES else name


def ood_table(results: dict[str, Any], key: str = "auroc") -> str:
    """Per strategy: ``key`` (``auroc`` or ``fpr95``) of every measure of the default.

    Then each reference's entropy and, paired repeat by repeat, the default's
    :data:`COMPARED_MEASURE` minus that entropy (positive: the ensemble detects better;
    ``fpr95`` is lower when better, so its sign is flipped).
    """
    measures = list(
        dict.fromkeys(
            name for run in results["runs"] for name in run["ood"]["detection"]["default"]
        )
    )
    references = [
        name
        for name in REFERENCES
        if all(name in run["ood"]["detection"] for run in results["runs"])
    ]
    sign = 1.0 if key == "auroc" else -1.0
    rows = []
    for strategy, group in results["summary"].items():
        summary = group["ood"]["detection"]
        runs = [run for run in results["runs"] if run["strategy"] == strategy]
        cells = [format_cell(summary["default"].get(name, {}).get(key), 3) for name in measures]
        cells += [format_cell(summary[name][REFERENCE_MEASURE][key], 3) for name in references]
        for name in references:
            gains = [
                sign
                * (
                    run["ood"]["detection"]["default"].get(COMPARED_MEASURE, {}).get(key, math.nan)
                    - run["ood"]["detection"][name][REFERENCE_MEASURE][key]
                )
                for run in runs
            ]
            cells.append(format_gain(paired_gain(gains), 3))
        effective = mean_std(
            [run["models"][run["default_combiner"]]["effective_members"] for run in runs]
        )
        rows.append((strategy, default_label(runs), format_cell(effective, 1), *cells))
    header = [
        "strategy",
        "default",
        "eff. members",
        *map(measure_label, measures),
        *(f"{name} entropy" for name in references),
        *(f"MI − {name}" for name in references),
    ]
    return format_table(header, rows)
