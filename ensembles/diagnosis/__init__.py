"""Diagnose learning, generalization and prediction problems from learning curves.

The framework's step 1 (diagnose from training and validation curves over several seeds),
step 2 (recommend the matching techniques) and step 3 (apply one and diagnose again).
"""

from ensembles.diagnosis._curves import ProblemScale, RunSet, collect_runs, problem_scale
from ensembles.diagnosis._recommend import Recommendation, recommend, train_flags
from ensembles.diagnosis._report import (
    build_report,
    format_comparison,
    format_round,
    plot_curves,
    write_report,
)
from ensembles.diagnosis._rounds import Round, diagnose_setup, flagged_change, improve
from ensembles.diagnosis._verdicts import Diagnosis, Finding, Thresholds, diagnose_runs
from ensembles.training.learning_rate import ExponentialRateCallback, RangeTestResult

__all__ = [
    "Diagnosis",
    "ExponentialRateCallback",
    "Finding",
    "ProblemScale",
    "RangeTestResult",
    "Recommendation",
    "Round",
    "RunSet",
    "Thresholds",
    "build_report",
    "collect_runs",
    "diagnose_runs",
    "diagnose_setup",
    "flagged_change",
    "format_comparison",
    "format_round",
    "improve",
    "plot_curves",
    "problem_scale",
    "recommend",
    "train_flags",
    "write_report",
]
