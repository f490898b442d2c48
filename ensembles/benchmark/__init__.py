"""Benchmark of combiners and strategies: accuracy, uncertainty, shift, OOD, cost, diversity."""

from ensembles.benchmark.diversity import error_correlation, member_errors, pairwise_disagreement
from ensembles.benchmark.ood import fpr_at_tpr
from ensembles.benchmark.runner import ALL_STRATEGIES, BenchmarkRequest, run_benchmark
from ensembles.benchmark.uncertainty_quality import (
    detection_auroc,
    misclassification_auroc,
    selective_rows,
    spearman_uncertainty_error,
)

__all__ = [
    "ALL_STRATEGIES",
    "BenchmarkRequest",
    "detection_auroc",
    "error_correlation",
    "fpr_at_tpr",
    "member_errors",
    "misclassification_auroc",
    "pairwise_disagreement",
    "run_benchmark",
    "selective_rows",
    "spearman_uncertainty_error",
]
