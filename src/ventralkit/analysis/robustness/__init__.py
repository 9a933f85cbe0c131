"""Robustness to common corruptions (ImageNet-C conventions, Hendrycks & Dietterich 2019).

* ``corrupt_dataset(src, dst)``: write ``dst/<corruption>/<severity>/<class>/<image>`` (generate.py)
* ``evaluate_robustness(model, c_root)``: accuracy per corruption and severity, CE, mCE, figures (evaluate.py)
* ``compare_robustness([run, ...])``: several models or runs in one table and figure (evaluate.py)
* the metrics and the AlexNet ImageNet-C baseline table (metrics.py); names, groups and severities (``data.imagenet_c``)
"""

from ...data.imagenet_c import ALL, BENCHMARK, EXTRA, GROUPS, ORIGINAL_CSV_ORDER, resolve_corruptions, resolve_severities
from .evaluate import RobustnessReport, compare_robustness, evaluate_robustness, scan_corruption_root, write_report
from .generate import CorruptionRun, corrupt_dataset, corrupt_image, job_seed
from .metrics import (
    ALEXNET_CLEAN_ERROR,
    ALEXNET_MEAN_ERRORS,
    Baseline,
    alexnet_baseline,
    corruption_error,
    format_summary,
    load_baseline,
    read_results_csv,
    relative_corruption_error,
    summarize,
    write_results_csv,
)

__all__ = [
    "ALEXNET_CLEAN_ERROR", "ALEXNET_MEAN_ERRORS", "ALL", "BENCHMARK", "EXTRA", "GROUPS", "ORIGINAL_CSV_ORDER",
    "Baseline", "CorruptionRun", "RobustnessReport",
    "alexnet_baseline", "compare_robustness", "corrupt_dataset", "corrupt_image", "corruption_error",
    "evaluate_robustness", "format_summary", "job_seed", "load_baseline", "read_results_csv",
    "relative_corruption_error", "resolve_corruptions", "resolve_severities", "scan_corruption_root", "summarize",
    "write_report", "write_results_csv",
]
