"""The UCI protocol's report: tables beside the published results, targets, the JSON file."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ensembles.benchmark.report import json_safe
from ensembles.errors import ConfigError
from ensembles.markdown import format_table


@dataclass(frozen=True)
class PublishedResult:
    """A published test RMSE and Gaussian NLL, each ``(mean, ± as published)``; None: unknown."""

    method: str
    rmse: tuple[float, float | None] | None
    gaussian_nll: tuple[float, float | None] | None


#: Published results under the same protocol (20 random 90/10 splits, test RMSE and
#: Gaussian NLL in the target's units). Each ± is quoted as the paper reports it.
#:
#: - Deep Ensembles: Lakshminarayanan, Pritzel and Blundell, "Simple and Scalable Predictive
#:   Uncertainty Estimation using Deep Ensembles", NeurIPS 2017, Table 1.
#: - MC dropout, re-run: Gal, github.com/yaringal/DropoutUncertaintyExps (2018), the
#:   "convergence" re-run of Gal and Ghahramani 2016 with 4000 epochs.
#: - NGBoost: Duan et al., "NGBoost: Natural Gradient Boosting for Probabilistic
#:   Prediction", 2019, Table 1.
#: - WGBoost: Wasserstein gradient boosting (2024); Concrete only (no ± reported here).
PUBLISHED: dict[str, tuple[PublishedResult, ...]] = {
    "boston": (
        PublishedResult(
            "Deep Ensembles (Lakshminarayanan et al. 2017)", (3.28, 0.22), (2.41, 0.25)
        ),
        PublishedResult("MC dropout, 4000 epochs (Gal 2018)", (2.90, 0.18), (2.40, 0.04)),
        PublishedResult("NGBoost (Duan et al. 2019)", (2.94, 0.53), (2.43, 0.15)),
        PublishedResult("WGBoost (2024)", None, None),
    ),
    "concrete": (
        PublishedResult(
            "Deep Ensembles (Lakshminarayanan et al. 2017)", (6.03, 0.13), (3.06, 0.18)
        ),
        PublishedResult("MC dropout, 4000 epochs (Gal 2018)", (4.82, 0.16), (2.93, 0.02)),
        PublishedResult("NGBoost (Duan et al. 2019)", (5.06, 0.61), (3.04, 0.17)),
        PublishedResult("WGBoost (2024)", (4.15, None), (2.83, None)),
    ),
}

#: The issue's targets for the default setup: the mean over splits must not exceed these.
TARGETS: dict[str, dict[str, float]] = {
    "boston": {"rmse": 2.90, "gaussian_nll": 2.40},
    "concrete": {"rmse": 4.80, "gaussian_nll": 2.93},
}


NOTES = (
    "*one network*: the average served member of the repeat run (each member's variance "
    "calibrated on the validation rows, as the ensemble's is), no extra training; its "
    "seconds are one member's training, both runs when refit. *HistGradientBoosting*: "
    "scikit-learn's defaults with early stopping; "
    "Gaussian NLL with a constant variance, the mean squared out-of-fold residual of 5-fold "
    "cross-validation on the 90% train part; coverage of the interval between two quantile "
    "models (5% and 95%); its seconds cover all eight fits. *epochs*: the epoch each member's "
    "kept weights come from (mean; under the budget rule the member trained on past it by its "
    "patience; a refit trains this many on training + validation rows), or the last "
    "member's epoch for snapshot and horizontal."
)


def markdown_section(
    results: Mapping[str, Any],
    published: Sequence[PublishedResult] | None = None,
    targets: Mapping[str, float] | None = None,
) -> str:
    """One dataset's table (setups, then published results), its notes and target lines.

    ``published`` and ``targets`` default to those known for ``results["dataset"]``.
    """
    name = results["dataset"]
    published = PUBLISHED.get(name, ()) if published is None else published
    targets = TARGETS.get(name) if targets is None else targets
    n_splits = len(results["splits"])
    header = ["setup", "RMSE", "Gaussian NLL", "90% coverage", "seconds per run"]
    header += ["epochs", "splits"]
    rows = []
    for setup in results["setups"]:
        row = results["summary"][setup]
        rmse, nll = (_cell(row[key], 2) for key in ("rmse", "gaussian_nll"))
        rows.append([setup, rmse, nll, _cell(row["coverage"], 3), _cell(row["seconds"], 1)])
        rows[-1] += [_cell(row["epochs"], 1, se=False), row["rmse"]["n"]]
    rows += [
        [f"published: {p.method}", _published(p.rmse), _published(p.gaussian_nll)] + ["—"] * 4
        for p in published
    ]
    title = (
        f"**{name}** ({results['n_rows']} rows, {n_splits} random 90/10 "
        f"split{'s' if n_splits != 1 else ''}, "
        f"{results['members']} members; mean ± standard error over splits)"
    )
    lines = [title, "", format_table(header, rows), "", NOTES]
    lines += [target_line(results, setup, targets) for setup in results["targets"] if targets]
    return "\n".join(lines)


def target_line(results: Mapping[str, Any], setup: str, targets: Mapping[str, float]) -> str:
    """Whether the row's mean over splits meets each target.

    E.g. ``boston targets, default (repeat): RMSE 2.81 (target ≤ 2.90): met; ...``.
    """
    words = {"rmse": "RMSE", "gaussian_nll": "Gaussian NLL"}
    parts = []
    for key, bound in targets.items():
        mean = results["summary"][setup][key]["mean"]
        verdict = "met" if mean <= bound else "not met"  # NaN is not met
        parts.append(f"{words.get(key, key)} {mean:.2f} (target ≤ {bound:.2f}): {verdict}")
    return f"\n{results['dataset']} targets, {setup}: " + "; ".join(parts)


def save_results(sections: Sequence[Mapping[str, Any]], markdown: str, path: Path) -> Path:
    """Write ``markdown`` to ``path`` and every per-split figure beside it; the JSON path.

    The JSON file has the markdown file's name with the suffix ``.json`` (NaN as null).
    """
    path = Path(path)
    data = path.with_suffix(".json")
    if data == path:
        raise ConfigError(f"--output names the Markdown file, e.g. uci.md; got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown + "\n")
    data.write_text(json.dumps(json_safe(list(sections)), indent=1) + "\n")
    return data


def _cell(entry: Mapping[str, float], digits: int, se: bool = True) -> str:
    mean, error = entry["mean"], entry["se"]
    if not math.isfinite(mean):
        return "—"
    if not se or not math.isfinite(error):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {error:.{digits}f}"


def _published(value: tuple[float, float | None] | None) -> str:
    if value is None:
        return "—"
    mean, error = value
    return f"{mean:.2f}" if error is None else f"{mean:.2f} ± {error:.2f}"
