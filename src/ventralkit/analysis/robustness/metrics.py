"""Corruption Error, mCE and relative mCE (Hendrycks & Dietterich, ICLR 2019), baselines, result CSVs.

With E_{s,c} the top-1 error at severity s of corruption c:

* CE_c = sum_s E^model_{s,c} / sum_s E^baseline_{s,c}
* relative CE_c = sum_s (E^model_{s,c} - E^model_clean) / sum_s (E^baseline_{s,c} - E^baseline_clean)
* mCE and relative mCE are the means over the 15 benchmark corruptions (never the 4 extras);
  the unnormalised "mean error" is the mean over the same corruptions of the mean over severities.

All values are fractions (0.767, not 76.7); text tables show percentages.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from ...data.imagenet_c import ALL, BENCHMARK, EXTRA, ORIGINAL_CSV_ORDER, SEVERITIES, group_of
from ...errors import ConfigError, DataError
from ...files import write_csv

#: AlexNet top-1 error on ImageNet-C, mean over severities 1-5 (the 15 benchmark corruptions).
#: Source: the AlexNet row of Hendrycks & Dietterich 2019 as tabulated in the hendrycks/robustness
#: README sheet and reused by mmpretrain's mCE metric and easyrobust (docs/reference/ecosystem.md section 1.4).
ALEXNET_MEAN_ERRORS: dict[str, float] = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
}
#: AlexNet clean ImageNet top-1 error, used only for relative mCE: 1 - 0.56522 (torchvision's
#: published AlexNet acc@1 56.522 %; docs/reference/ecosystem.md section 1.4 gives ~43.5 %).
ALEXNET_CLEAN_ERROR = 0.43478

#: header of eval/tiny_imagenet_c_eval.py's output (docs/reference/v1_resnet.md section 5)
RESULTS_HEADER = ("corruption_type", "difficulty", "valid_acc")
RESULTS_CSV = "tinyimagenetc_results.csv"
#: ventralkit's richer per-folder CSV (same first columns, plus a ``clean`` row)
DETAILS_CSV = "robustness_details.csv"
SUMMARY_JSON = "summary.json"

Errors = dict[str, dict[int, float]]


#: ImageNet class folders are WordNet ids (n01440764, ...)
_WNID = re.compile(r"^n\d{8}$")


@dataclass
class Baseline:
    """Errors to normalise by: per severity (an earlier run) or only the mean over 1..5 (AlexNet).

    ``dataset``/``num_classes`` say what the baseline's errors were measured on, when known (AlexNet:
    ImageNet-C, 1000 classes), so a run on other images can be told that its CE is a cross-dataset ratio.
    """

    name: str
    errors: Errors | None = None
    mean_errors: dict[str, float] | None = None
    clean_error: float | None = None
    dataset: str | None = None
    num_classes: int | None = None

    def has(self, corruption: str) -> bool:
        return bool((self.errors or {}).get(corruption)) or corruption in (self.mean_errors or {})

    def describe(self) -> dict:
        return {"name": self.name, "clean_error": self.clean_error, "dataset": self.dataset}


def alexnet_baseline(clean_error: float | None = None) -> Baseline:
    return Baseline("alexnet", mean_errors=dict(ALEXNET_MEAN_ERRORS),
                    clean_error=ALEXNET_CLEAN_ERROR if clean_error is None else float(clean_error),
                    dataset="ImageNet-C", num_classes=1000)


def baseline_caveat(baseline: Baseline | None, classes=None) -> str | None:
    """A one-line warning when ``baseline`` was measured on another dataset than the evaluated images.

    ``classes``: the evaluated class names (or their number). ImageNet-C has the 1000 ImageNet classes,
    named by WordNet id; any other class set (digits, CIFAR, Tiny-ImageNet's 200) is another dataset,
    whose errors differ from ImageNet's for reasons that have nothing to do with robustness.
    """
    if baseline is None or baseline.num_classes is None or classes is None:
        return None
    names = None if isinstance(classes, int) else [str(c) for c in classes]
    count = classes if isinstance(classes, int) else len(names)
    if count == baseline.num_classes and (names is None or all(_WNID.match(c) for c in names)):
        return None
    shown = f" ({', '.join(names[:3])}{', ...' if count > 3 else ''})" if names else ""
    return (f"the {baseline.name} baseline holds {baseline.dataset} errors ({baseline.num_classes} classes) but "
            f"these images have {count} classes{shown}: CE and mCE divide errors from two datasets, so they "
            f"are not robustness relative to {baseline.name}; compare with a baseline run on the same images "
            "(--baseline RUN_DIR)")


# ---------------------------------------------------------------------------------------------
# the metrics


def _finite(x) -> bool:
    return x is not None and math.isfinite(x)


def corruption_error(model: dict[int, float], baseline: dict[int, float] | float) -> float | None:
    """CE of one corruption. ``baseline`` is per severity, or a float = its mean over severities 1..5.

    Per-severity baselines are compared on the severities both have; a mean baseline needs all five.
    None when the ratio is undefined.
    """
    if isinstance(baseline, dict):
        common = sorted(set(model) & set(baseline))
        num, den = sum(model[s] for s in common), sum(baseline[s] for s in common)
    else:
        if set(model) != set(SEVERITIES):
            return None
        num, den = sum(model.values()), len(SEVERITIES) * float(baseline)
        common = SEVERITIES
    if not common or den == 0:
        return None
    return num / den


def relative_corruption_error(model: dict[int, float], model_clean: float | None,
                              baseline: dict[int, float] | float, baseline_clean: float | None) -> float | None:
    """Relative CE: the degradation from clean error, normalised by the baseline's degradation."""
    if not (_finite(model_clean) and _finite(baseline_clean)):
        return None
    if isinstance(baseline, dict):
        common = sorted(set(model) & set(baseline))
        base = [baseline[s] for s in common]
    else:
        if set(model) != set(SEVERITIES):
            return None
        common, base = list(SEVERITIES), [float(baseline)] * len(SEVERITIES)
    den = sum(b - baseline_clean for b in base)
    if not common or den == 0:
        return None
    return sum(model[s] - model_clean for s in common) / den


def _mean(values) -> float | None:
    values = [v for v in values if _finite(v)]
    return sum(values) / len(values) if values else None


def summarize(errors: Errors, clean_error: float | None = None, baseline: Baseline | None = None,
              classes=None) -> dict:
    """Per-corruption mean error, CE and relative CE, and their means over the benchmark corruptions.

    ``classes`` (the evaluated class names, or their number) lets the summary warn, in its notes and
    as a ``UserWarning``, when the baseline's errors come from another dataset (``baseline_caveat``).
    """
    rows = []
    for corruption in ALL:
        per_sev = {int(s): float(e) for s, e in (errors.get(corruption) or {}).items()}
        if not per_sev:
            continue
        row = {"corruption": corruption, "group": group_of(corruption),
               "errors": {str(s): per_sev[s] for s in sorted(per_sev)},
               "mean_error": _mean(per_sev.values()), "ce": None, "relative_ce": None}
        if baseline is not None and baseline.has(corruption):
            ref = (baseline.errors or {}).get(corruption) or baseline.mean_errors[corruption]
            row["ce"] = corruption_error(per_sev, ref)
            row["relative_ce"] = relative_corruption_error(per_sev, clean_error, ref, baseline.clean_error)
        rows.append(row)
    bench = [r for r in rows if r["corruption"] in BENCHMARK]
    extra = [r for r in rows if r["corruption"] in EXTRA]
    ce_rows = [r for r in bench if _finite(r["ce"])]
    notes = []
    if baseline is not None and len(ce_rows) < len(BENCHMARK):
        missing = [c for c in BENCHMARK if c not in {r["corruption"] for r in ce_rows}]
        notes.append(f"mCE averages {len(ce_rows)} of the 15 benchmark corruptions (no CE for "
                     f"{', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}); "
                     "it is not comparable with a full 15-corruption mCE")
    if baseline is not None and baseline.name == "alexnet" and any(len(r["errors"]) != 5 for r in bench):
        notes.append("the AlexNet table holds means over severities 1-5, so CE needs all five severities")
    complete = len(bench) == len(BENCHMARK) and all(len(r["errors"]) == len(SEVERITIES) for r in bench)
    caveat = baseline_caveat(baseline, classes)
    if caveat:
        notes.insert(0, caveat)
        warnings.warn(caveat, stacklevel=2)
    return {
        "clean_error": clean_error,
        "baseline": baseline.describe() if baseline is not None else None,
        "corruptions": rows,
        "mean_error": _mean(r["mean_error"] for r in bench),
        "mce": _mean(r["ce"] for r in bench),
        "relative_mce": _mean(r["relative_ce"] for r in bench),
        "mce_corruptions": len(ce_rows),
        "extra_mean_error": _mean(r["mean_error"] for r in extra),
        "complete": complete,
        "severities": sorted({int(s) for r in rows for s in r["errors"]}),
        "baseline_caveat": caveat,
        "notes": notes,
    }


# ---------------------------------------------------------------------------------------------
# text and CSV


def _pct(x, width=6) -> str:
    return f"{100 * x:{width}.1f}" if _finite(x) else " " * (width - 1) + "-"


def format_summary(summary: dict, title: str | None = None) -> str:
    """The summary as a fixed-width text table (percent)."""
    sevs = sorted({int(s) for r in summary["corruptions"] for s in r["errors"]})
    head = f"{'corruption':<18} {'group':<8}" + "".join(f" {'s' + str(s):>6}" for s in sevs)
    head += f" {'mean':>6} {'CE':>6} {'relCE':>6}"
    lines = [title] if title else []
    lines += ["top-1 error (%)" + (f", CE vs {summary['baseline']['name']}" if summary.get("baseline") else ""),
              head, "-" * len(head)]
    for r in summary["corruptions"]:
        cells = "".join(f" {_pct(r['errors'].get(str(s)))}" for s in sevs)
        lines.append(f"{r['corruption']:<18} {r['group']:<8}{cells} {_pct(r['mean_error'])} "
                     f"{_pct(r['ce'])} {_pct(r['relative_ce'])}")
    lines.append("-" * len(head))
    lines.append(f"clean error: {_pct(summary['clean_error'], 0).strip()}%   "
                 f"mean error over benchmark corruptions (unnormalised): {_pct(summary['mean_error'], 0).strip()}%")
    if summary.get("baseline"):
        lines.append(f"mCE: {_pct(summary['mce'], 0).strip()}%   relative mCE: "
                     f"{_pct(summary['relative_mce'], 0).strip()}%   (baseline {summary['baseline']['name']}, "
                     f"{summary['mce_corruptions']} corruptions)")
    if summary.get("extra_mean_error") is not None:
        lines.append(f"extra corruptions mean error (not in mCE): {_pct(summary['extra_mean_error'], 0).strip()}%")
    lines += [f"note: {n}" for n in summary.get("notes", [])]
    return "\n".join(lines)


def write_summary_csv(path: Path, summary: dict) -> Path:
    """One row per corruption (errors per severity, mean, CE, relative CE), plus clean and mean rows."""
    path = Path(path)
    cols = ["corruption", "group", *(f"error_s{s}" for s in SEVERITIES), "mean_error", "ce", "relative_ce"]

    def cell(x):
        return "" if x is None else repr(float(x))

    blank = [""] * len(SEVERITIES)
    rows = [cols, ["clean", "", *blank, cell(summary["clean_error"]), "", ""]]
    for r in summary["corruptions"]:
        rows.append([r["corruption"], r["group"], *(cell(r["errors"].get(str(s))) for s in SEVERITIES),
                     cell(r["mean_error"]), cell(r["ce"]), cell(r["relative_ce"])])
    rows.append(["benchmark_mean", "", *blank, cell(summary["mean_error"]), cell(summary["mce"]),
                 cell(summary["relative_mce"])])
    if summary.get("extra_mean_error") is not None:
        rows.append(["extra_mean", "", *blank, cell(summary["extra_mean_error"]), "", ""])
    return write_csv(path, rows)


def ordered_rows(accuracies: dict[str, dict[int, float]]):
    """(corruption, severity, accuracy) in the original script's order, extras last."""
    for corruption in ORIGINAL_CSV_ORDER:
        for severity in sorted(accuracies.get(corruption, {})):
            yield corruption, int(severity), accuracies[corruption][severity]


def write_results_csv(path: Path, accuracies: dict[str, dict[int, float]]) -> Path:
    """The CSV of eval/tiny_imagenet_c_eval.py: ``corruption_type,difficulty,valid_acc``, accuracy as str(float)."""
    rows = [[corruption, str(severity), str(float(acc))] for corruption, severity, acc in ordered_rows(accuracies)]
    return write_csv(path, [list(RESULTS_HEADER), *rows])


def read_results_csv(path: str | os.PathLike) -> tuple[Errors, float | None]:
    """(errors per corruption and severity, clean error or None) from a results CSV.

    Reads the original ``corruption_type,difficulty,valid_acc`` format (accuracy as a fraction, or in
    percent when any value exceeds 1) and ventralkit's details CSV, whose ``clean`` row gives the
    clean accuracy.
    """
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as err:
        raise DataError(f"cannot read results CSV {path} ({err.strerror or err})") from None
    if not rows or any(col not in rows[0] for col in RESULTS_HEADER):
        raise DataError(f"{path} is not a robustness results CSV (needs the columns {','.join(RESULTS_HEADER)})")
    parsed = []
    for i, row in enumerate(rows, start=2):
        name = (row["corruption_type"] or "").strip()
        try:
            sev, acc = int(float(row["difficulty"])), float(row["valid_acc"])
        except (TypeError, ValueError):
            raise DataError(f"{path} line {i}: cannot read difficulty/valid_acc "
                            f"{row['difficulty']!r}/{row['valid_acc']!r}") from None
        if name != "clean" and name not in ALL:
            raise DataError(f"{path} line {i}: unknown corruption_type {name!r}")
        if name != "clean" and sev not in SEVERITIES:
            raise DataError(f"{path} line {i}: difficulty {sev} is outside 1..5")
        parsed.append((name, sev, acc))
    scale = 100.0 if any(acc > 1.0 for _, _, acc in parsed) else 1.0
    errors: Errors = {}
    clean = None
    for name, sev, acc in parsed:
        if name == "clean":
            clean = 1.0 - acc / scale
        else:
            errors.setdefault(name, {})[sev] = 1.0 - acc / scale
    return errors, clean


def load_baseline(spec, clean_error: float | None = None) -> Baseline | None:
    """None, ``'alexnet'``, a ``Baseline``, or the path of an earlier run (its folder or its CSV).

    The clean error of a run comes from its details CSV or ``summary.json``; ``clean_error`` overrides
    it (the original script prints its clean accuracy but does not save it).
    """
    if clean_error is not None and not 0 <= clean_error <= 1:
        raise ConfigError(f"--baseline_clean_error {clean_error} must be a fraction between 0 and 1 "
                          f"(e.g. {clean_error / 100:g} for {clean_error:g}%)")
    if spec is None or isinstance(spec, Baseline):
        return spec
    if str(spec).lower() == "alexnet":
        return alexnet_baseline(clean_error)
    path = Path(spec)
    if path.is_dir():
        for name in (DETAILS_CSV, RESULTS_CSV):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise ConfigError(f"--baseline {spec} has no {RESULTS_CSV}; give 'alexnet', a results CSV or a run folder")
    elif not path.is_file():
        raise ConfigError(f"--baseline {spec} is neither 'alexnet' nor an existing results CSV or run folder")
    errors, clean = read_results_csv(path)
    if clean is None and (path.parent / SUMMARY_JSON).is_file():
        try:
            clean = json.loads((path.parent / SUMMARY_JSON).read_text()).get("clean_error")
        except (OSError, ValueError):
            clean = None
    if clean_error is not None:
        clean = float(clean_error)
    return Baseline(name=str(spec), errors=errors, clean_error=clean)
