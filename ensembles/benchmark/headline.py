"""What users get: each strategy's default combiner against the baselines, paired over repeats."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Literal

from ensembles import defaults
from ensembles.benchmark.aggregate import format_cell, mean_std
from ensembles.benchmark.gradient_boosting import HGB
from ensembles.markdown import format_table

Direction = Literal["higher", "lower", "nominal"]

BASELINES: tuple[str, ...] = ("best_member", "average_member", "single_network")
#: Models from outside the ensemble (neither a combiner nor one of its networks): each is
#: compared with the default in a table of its own (:func:`against_table`), never picked
#: as the best baseline or the oracle.
OTHER_MODELS: tuple[str, ...] = (HGB,)
#: Confidence of the two-sided t interval of the mean paired gain.
GAIN_CONFIDENCE = 0.90
#: Headline metrics per task and which way is better; ``nominal``: closer to the
#: interval level the manifests record.
#: ROC AUC and average precision are scored for two classes only; other data sets skip them.
HEADLINE_METRICS: dict[str, tuple[tuple[str, Direction], ...]] = {
    "classification": (
        ("accuracy", "higher"),
        ("nll", "lower"),
        ("ece", "lower"),
        ("roc_auc", "higher"),
        ("average_precision", "higher"),
    ),
    "regression": (("rmse", "lower"), ("gaussian_nll", "lower"), ("coverage", "nominal")),
}
#: Verdict of :func:`paired_gain` when the repeats cannot tell: fewer than two, or every
#: repeat gave the same gain (a zero standard error is no evidence of anything).
TOO_FEW_REPEATS = "too few repeats"
#: Standard errors at or below this share of ``max(1, |mean gain|)`` count as zero: the
#: gains differ only by float rounding.
_ZERO_SE = 1e-9


def goodness(direction: Direction, value: float, level: float = defaults.INTERVAL_LEVEL) -> float:
    """``value`` signed so that larger is better (``-|value - level|`` for ``nominal``)."""
    if direction == "higher":
        return value
    if direction == "lower":
        return -value
    return -abs(value - level)


def paired_gain(gains: list[float], confidence: float = GAIN_CONFIDENCE) -> dict[str, Any]:
    """Mean paired gain, its standard error, a two-sided t interval and a verdict.

    Parameters
    ----------
    gains : list of float, length n_repeats
        Per-repeat gains (positive: the combiner is better); NaN values are skipped.
    confidence : float
        Confidence of the two-sided interval, 0.90 by default (the mean plus or minus the
        0.95 quantile of Student's t with n - 1 degrees of freedom times the standard error).

    Returns
    -------
    dict
        ``gain`` (mean), ``gain_std``, ``gain_se`` (std / sqrt(n)), ``n``, ``low``,
        ``high``, ``beyond_spread`` (True when the interval excludes zero) and ``verdict``:
        ``"yes"``, ``"no"`` or :data:`TOO_FEW_REPEATS` (n < 2, or a zero standard error:
        then ``low``, ``high`` are NaN and ``beyond_spread`` is False). With a few repeats
        this is a screening rule, not a significance test: repeats share the dataset, so
        they are not independent samples.
    """
    from scipy.stats import t

    stats = mean_std(gains)
    n = int(stats["n"])
    se = stats["std"] / math.sqrt(n) if n > 1 else math.nan
    result = {
        "gain": stats["mean"],
        "gain_std": stats["std"] if n > 1 else math.nan,
        "gain_se": se,
        "n": n,
        "low": math.nan,
        "high": math.nan,
        "beyond_spread": False,
        "verdict": TOO_FEW_REPEATS,
    }
    if n < 2 or se <= _ZERO_SE * max(1.0, abs(stats["mean"])):
        return result
    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * se
    low, high = stats["mean"] - half, stats["mean"] + half
    beyond = bool(low > 0 or high < 0)
    return {**result, "low": low, "high": high, "beyond_spread": beyond, "verdict": _yes(beyond)}


def is_combiner(name: str) -> bool:
    """Whether model ``name`` of a run is one of the version's combiners."""
    return name not in BASELINES and name not in OTHER_MODELS


def headline(
    results: dict[str, Any], baselines: tuple[str, ...] = BASELINES
) -> list[dict[str, Any]]:
    """Per headline metric and strategy: the default combiner against the best baseline.

    The default is what a user gets: the manifest's ``default_combiner``, chosen without
    the test split, in each repeat. The baseline is the best of ``baselines`` (default
    :data:`BASELINES`; ``(HGB,)`` for :func:`against_table`) by its mean over repeats on
    the test split (a conservative choice). The gain is paired repeat
    by repeat (same split, same members), so split-to-split variation cancels; see
    :func:`paired_gain`. The *oracle* is the combiner with the best mean on the test split,
    which no user could have picked: reported for reference only.

    Returns
    -------
    list of dict
        ``strategy``, ``metric``, ``default`` (name, or names with counts when repeats
        chose differently), ``default_mean``, ``default_std``, ``effective_members``
        (mean/std/n over repeats) and ``min_effective_members``, ``baseline``,
        ``baseline_mean``, ``baseline_std``, ``oracle``, ``oracle_mean`` and the
        :func:`paired_gain` keys (positive gain: the default is better).
    """
    level = float(results["settings"].get("interval_level", defaults.INTERVAL_LEVEL))
    found = []
    for metric, direction in HEADLINE_METRICS[results["task"]]:
        for strategy, group in results["summary"].items():
            runs = [run for run in results["runs"] if run["strategy"] == strategy]
            item = _compare(runs, group["models"], metric, direction, level, baselines)
            if item is not None:
                found.append({"strategy": strategy, "metric": metric, **item})
    return found


def _compare(
    runs: list[dict[str, Any]],
    models: dict[str, dict],
    metric: str,
    direction: Direction,
    level: float,
    candidates: tuple[str, ...] = BASELINES,
) -> dict[str, Any] | None:
    """One :func:`headline` entry; None when the default or every baseline lacks ``metric``."""
    scored = {
        name: m[metric]
        for name, m in models.items()
        if metric in m and math.isfinite(m[metric]["mean"])
    }
    baselines = [name for name in candidates if name in scored]
    combiners = [name for name in scored if is_combiner(name)]
    defaults = [run["models"][run["default_combiner"]] for run in runs]
    values = [model.get(metric, math.nan) for model in defaults]
    default = mean_std(values)
    if not baselines or not combiners or not math.isfinite(default["mean"]):
        return None
    base, oracle = (
        max(names, key=lambda n: goodness(direction, scored[n]["mean"], level))
        for names in (baselines, combiners)
    )
    baseline_values = [run["models"].get(base, {}).get(metric, math.nan) for run in runs]
    gains = [
        goodness(direction, value, level) - goodness(direction, other, level)
        for value, other in zip(values, baseline_values, strict=True)
    ]
    effective = [model.get("effective_members", math.nan) for model in defaults]
    return {
        "default": default_label(runs),
        "default_mean": default["mean"],
        "default_std": default["std"],
        "effective_members": mean_std(effective),
        "min_effective_members": min((e for e in effective if math.isfinite(e)), default=math.nan),
        "baseline": base,
        "baseline_mean": scored[base]["mean"],
        "baseline_std": scored[base]["std"],
        "oracle": oracle,
        "oracle_mean": scored[oracle]["mean"],
        **paired_gain(gains),
    }


def headline_table(results: dict[str, Any]) -> str:
    """:func:`headline` as a Markdown table, the oracle in the last column."""
    rows = []
    for item in headline(results):
        rows.append(
            (
                item["strategy"],
                item["metric"],
                item["default"],
                _effective_cell(item["effective_members"], item["min_effective_members"]),
                format_cell(_stats(item, "default", item["n"]), 4),
                item["baseline"],
                format_cell(_stats(item, "baseline", item["n"]), 4),
                format_gain(item, 4),
                item["n"],
                _interval(item),
                item["verdict"],
                f"{item['oracle']} {item['oracle_mean']:.4f}",
            )
        )
    header = [
        "strategy",
        "metric",
        "default",
        "eff. members",
        "mean ± std",
        "best baseline",
        "mean ± std",
        "paired gain ± se",
        "n",
        f"{GAIN_CONFIDENCE:.0%} t interval",
        "beyond spread",
        "oracle: best on test",
    ]
    return format_table(header, rows)


def against_table(results: dict[str, Any], model: str = HGB) -> str:
    """The default combiner against one of :data:`OTHER_MODELS`, paired over repeats.

    Rows as :func:`headline_table`'s, with ``model`` in place of the best baseline and no
    effective members or oracle. Empty when no run scored ``model``.
    """
    rows = []
    for item in headline(results, (model,)):
        rows.append(
            (
                item["strategy"],
                item["metric"],
                item["default"],
                format_cell(_stats(item, "default", item["n"]), 4),
                format_cell(_stats(item, "baseline", item["n"]), 4),
                format_gain(item, 4),
                item["n"],
                _interval(item),
                item["verdict"],
            )
        )
    if not rows:
        return ""
    header = [
        "strategy",
        "metric",
        "default",
        "mean ± std",
        f"{model} mean ± std",
        "paired gain ± se",
        "n",
        f"{GAIN_CONFIDENCE:.0%} t interval",
        "beyond spread",
    ]
    return format_table(header, rows)


def format_gain(paired: dict[str, Any], decimals: int) -> str:
    """``+0.0123 ± 0.0045``: a :func:`paired_gain` as text (no ``±`` without a spread).

    A gain whose verdict is :data:`TOO_FEW_REPEATS` says so, so that a zero standard error
    never reads as evidence wherever the gain is shown alone.
    """
    if not math.isfinite(paired["gain"]):
        return "—"
    text = f"{paired['gain']:+.{decimals}f}"
    if paired.get("verdict") == TOO_FEW_REPEATS:
        return f"{text} ({TOO_FEW_REPEATS})"
    if math.isfinite(paired["gain_se"]):
        text += f" ± {paired['gain_se']:.{decimals}f}"
    return text


def default_label(runs: list[dict[str, Any]]) -> str:
    """The default combiner of ``runs``, with counts when repeats chose differently.

    Returns
    -------
    str
        ``mean``, or ``mean ×4, blend ×1`` (most frequent first).
    """
    counts = Counter(run["default_combiner"] for run in runs).most_common()
    if len(counts) == 1:
        return counts[0][0]
    return ", ".join(f"{name} ×{count}" for name, count in counts)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _interval(item: dict[str, Any]) -> str:
    if not math.isfinite(item["low"]):
        return "—"
    return f"[{item['low']:+.4f}, {item['high']:+.4f}]"


def _stats(item: dict[str, Any], prefix: str, n: int) -> dict[str, float]:
    return {"mean": item[f"{prefix}_mean"], "std": item[f"{prefix}_std"], "n": n}


def _effective_cell(stats: dict[str, float], smallest: float) -> str:
    if not math.isfinite(stats["mean"]):
        return "—"
    text = f"{stats['mean']:.1f}"
    if smallest < stats["mean"] - 0.05:
        text += f" (min {smallest:.1f})"
    return text
