"""Compare a model's property distributions with monkey V1, and several probe runs with each other.

Scoring follows Marques, Schrimpf & DiCarlo (2021) as implemented in Brain-Score
(``metrics/distribution_similarity``; docs/reference/ecosystem.md section 7.4):

* both distributions are histogrammed on the reference's fixed bins (values clipped to the bin range,
  undefined values (NaN) left out);
* similarity = 1 - KS / KS_max, KS = the largest difference of the two cumulative histograms and
  KS_max = the KS of the reference against a point mass in its first or last bin, whichever is larger
  (1: identical, 0: as far as a degenerate distribution);
* the model is bootstrapped: ``n_boot`` times, draw as many units (with replacement) as the reference
  has neurons, compute the similarity; raw score = mean (error = std); 0 if more than 10 % of the draws
  have no defined value;
* ceiling = the same procedure applied to the reference against itself; score = raw / ceiling.

Reference data. Brain-Score's monkey data live on its S3 bucket and cannot be fetched here, but for
seven properties the data are histograms digitised from the original papers; those counts are
public (brain-score/vision, ``data/marques2020/data_packaging``) and are built in below with their
sources. The eight Ringach (2002) properties come from single-neuron recordings that are not public
offline: their bins are built in, and their data can be supplied with ``load_references`` (a JSON
file). Texture properties (Freeman & Ziemba 2013) need natural-texture stimuli and are not probed.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataError
from ...files import write_records

_DEVALOIS_A = "De Valois, Yund & Hepler 1982, Vision Res 22:531-544 (Fig. histogram, n=385)"
_DEVALOIS_B = "De Valois, Albrecht & Thorell 1982, Vision Res 22:545-559 (foveal+parafoveal, simple+complex, n=363)"
_SCHILLER = "Schiller, Finlay & Volman 1976, J Neurophysiol 39:1334-1351 (n=87)"
_CAVANAUGH = "Cavanaugh, Bair & Movshon 2002, J Neurophysiol 88:2530-2546 (n=190)"
_RINGACH = "Ringach, Shapley & Hawken 2002, J Neurosci 22:5639-5651 (data not bundled; supply with --reference)"


@dataclass(frozen=True)
class Reference:
    """A monkey V1 property distribution on fixed bins.

    ``counts`` (histogram on ``bins``) or ``values`` (raw per-neuron values) give the data; both None
    means only the bins are known. ``n_neurons`` counts all recorded neurons, including those where
    the property is undefined (e.g. GSF of unsuppressed cells); it sets the bootstrap sample size.
    ``log_bins``: bins are log-spaced (used for medians and plots). ``published_ceiling``: Brain-Score's
    ceiling for the benchmark (brain-score/vision ``benchmarks/marques2020/test.py``), for information.
    """

    property: str
    benchmark: str
    bins: tuple[float, ...]
    counts: tuple[float, ...] | None = None
    values: tuple[float, ...] | None = None
    n_neurons: int | None = None
    log_bins: bool = False
    source: str = ""
    published_ceiling: float | None = None
    period: float | None = None

    def map_values(self, values) -> np.ndarray:
        """Model values in the reference's range convention (circular values wrapped to start at bins[0])."""
        v = np.asarray(values, float)
        if self.period:
            v = (v - self.bins[0]) % self.period + self.bins[0]
        return v

    @property
    def has_data(self) -> bool:
        return self.counts is not None or self.values is not None

    def histogram(self) -> np.ndarray:
        if self.counts is not None:
            return np.asarray(self.counts, float)
        return histogram(np.asarray(self.values, float), self.bins)

    @property
    def sample_size(self) -> int:
        if self.n_neurons:
            return int(self.n_neurons)
        if self.values is not None:
            return len(self.values)
        return int(round(self.histogram().sum()))

    def median(self) -> float:
        """Median of the reference distribution, interpolated within its bins."""
        if not self.has_data:
            return float("nan")
        if self.values is not None:
            v = np.asarray(self.values, float)
            return float(np.nanmedian(v)) if np.isfinite(v).any() else float("nan")
        return histogram_median(self.histogram(), self.bins, self.log_bins)


def _lin(a, b, n):
    return tuple(float(x) for x in np.linspace(a, b, n))


def _log(a, b, n):
    return tuple(float(x) for x in np.logspace(a, b, n))


_OCT_BINS = (0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)

#: built-in references, keyed by the probe's property column names
REFERENCES: dict[str, Reference] = {r.property: r for r in [
    Reference("preferred_orientation", "Marques2020_DeValois1982-pref_or", (-22.5, 22.5, 67.5, 112.5, 157.5),
              counts=(110, 83, 100, 92), source=_DEVALOIS_A, published_ceiling=0.962, period=180.0),
    Reference("peak_sf", "Marques2020_DeValois1982-peak_sf",
              (0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0, 11.2, 16.0, 22.4),
              counts=(3, 10, 15, 31, 57, 62, 67, 63, 31, 15, 5, 4), log_bins=True, source=_DEVALOIS_B,
              published_ceiling=0.967),
    Reference("sf_selective", "Marques2020_Schiller1976-sf_selective", (0.0, 0.5, 1.0), counts=(14, 73),
              source=_SCHILLER, published_ceiling=0.963),
    Reference("sf_bandwidth_ratio", "Marques2020_Schiller1976-sf_bandwidth", _lin(0, 100, 11),
              counts=(0, 3, 4, 16, 22, 16, 9, 3, 0, 0), n_neurons=87, source=_SCHILLER, published_ceiling=0.933),
    Reference("surround_suppression_index", "Marques2020_Cavanaugh2002-surround_suppression_index", _lin(0, 2, 11),
              counts=(66, 44, 38, 23, 16, 3, 0, 0, 0, 0), source=_CAVANAUGH, published_ceiling=0.958),
    Reference("grating_summation_field", "Marques2020_Cavanaugh2002-grating_summation_field", _OCT_BINS,
              counts=(0, 9, 30, 55, 42, 10, 2, 0), n_neurons=190, log_bins=True, source=_CAVANAUGH,
              published_ceiling=0.956),
    Reference("surround_diameter", "Marques2020_Cavanaugh2002-surround_diameter", _OCT_BINS,
              counts=(0, 0, 2, 20, 33, 49, 40, 4), n_neurons=190, log_bins=True, source=_CAVANAUGH,
              published_ceiling=0.955),
    # Ringach 2002: bins only (from the Marques2020 packaging script); data via load_references
    Reference("circular_variance", "Marques2020_Ringach2002-circular_variance", _lin(0, 1, 14),
              source=_RINGACH, published_ceiling=0.959),
    Reference("orientation_bandwidth", "Marques2020_Ringach2002-or_bandwidth", _lin(0, 90, 18),
              source=_RINGACH, published_ceiling=0.964),
    Reference("orthogonal_preferred_ratio", "Marques2020_Ringach2002-orth_pref_ratio", _lin(0, 1, 14),
              source=_RINGACH, published_ceiling=0.962),
    Reference("orientation_selective", "Marques2020_Ringach2002-or_selective", (0.0, 0.5, 1.0),
              source=_RINGACH, published_ceiling=0.994),
    Reference("cv_bandwidth_ratio", "Marques2020_Ringach2002-cv_bandwidth_ratio", _log(-3, 0, 16), log_bins=True,
              source=_RINGACH, published_ceiling=0.968),
    Reference("opr_cv_diff", "Marques2020_Ringach2002-opr_cv_diff", _lin(-1, 1, 20),
              source=_RINGACH, published_ceiling=0.967),
    Reference("modulation_ratio", "Marques2020_Ringach2002-modulation_ratio", _lin(0, 2, 11),
              source=_RINGACH, published_ceiling=0.959),
    Reference("max_dc", "Marques2020_Ringach2002-max_dc", _log(0, 3, 10), log_bins=True,
              source=_RINGACH, published_ceiling=0.968),
]}

#: which units a property is computed over: the responsive flag of its stimulus set
PROPERTY_UNITS = {
    "orientation": "responsive_orientation",
    "spatial_frequency": "responsive_spatial_frequency",
    "size": "responsive_size",
    "contrast": "responsive_orientation",
}
#: properties whose benchmark selects units differently from the rest of their set
PROPERTY_UNITS_OVERRIDE = {"sf_bandwidth_ratio": "responsive_spatial_frequency_f0",
                           "sf_selective": "responsive_spatial_frequency_f0"}


def responsive_flag(prop: str, stim_set: str) -> str | None:
    """The column flagging the units a property is summarised over (None: every unit)."""
    return PROPERTY_UNITS_OVERRIDE.get(prop, PROPERTY_UNITS.get(stim_set))


def histogram(values: np.ndarray, bins) -> np.ndarray:
    """Counts of the finite ``values`` on ``bins``, values outside the range clipped to its ends."""
    bins = np.asarray(bins, float)
    v = np.asarray(values, float)
    v = np.clip(v[np.isfinite(v)], bins[0], bins[-1])
    return np.histogram(v, bins=bins)[0].astype(float)


def histogram_median(counts, bins, log_bins=False) -> float:
    counts = np.asarray(counts, float)
    if counts.sum() <= 0:
        return float("nan")
    edges = np.log(np.asarray(bins, float)) if log_bins else np.asarray(bins, float)
    cdf = np.concatenate([[0.0], np.cumsum(counts) / counts.sum()])
    x = float(np.interp(0.5, cdf, edges)) if np.all(np.diff(cdf) >= 0) else float("nan")
    return float(np.exp(x)) if log_bins else x


def ks_similarity(p: np.ndarray, q: np.ndarray) -> float:
    """1 - KS(p, q) / KS_max(q) for two histograms on the same bins (``q`` = the reference).

    KS is the largest absolute difference of the cumulative (normalised) histograms; KS_max the
    larger KS of ``q`` against a point mass in its first or in its last bin. NaN if ``p`` is empty.
    Source: Marques et al. (2021), Brain-Score ``ks_similarity``.
    """
    p, q = np.asarray(p, float), np.asarray(q, float)
    if p.sum() <= 0 or q.sum() <= 0:
        return float("nan")
    cp, cq = np.cumsum(p) / p.sum(), np.cumsum(q) / q.sum()
    ks = np.max(np.abs(cp - cq))
    first = np.ones_like(cq)
    last = np.zeros_like(cq)
    last[-1] = 1.0
    ks_max = max(np.max(np.abs(first - cq)), np.max(np.abs(last - cq)))
    return float(1.0 - ks / ks_max) if ks_max > 0 else float("nan")


def bootstrap_similarity(values: np.ndarray, ref: Reference, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of ``ks_similarity`` over ``n_boot`` resamples of ``values`` of the reference's size.

    NaN values stay in the pool (they count as units where the property is undefined, as in the
    monkey data). Returns (0, 0) when more than 10 % of the resamples have no defined value, and
    (NaN, NaN) when there are no values at all.
    """
    v = ref.map_values(values)
    if v.size == 0:
        return float("nan"), float("nan")
    bins = np.asarray(ref.bins, float)
    q = ref.histogram()
    nb = len(bins) - 1
    # bin index per value (-1 = undefined), then one bincount per resample
    idx = np.full(v.shape, -1, dtype=np.int64)
    fin = np.isfinite(v)
    idx[fin] = np.clip(np.searchsorted(bins, np.clip(v[fin], bins[0], bins[-1]), side="right") - 1, 0, nb - 1)
    rng = np.random.default_rng(seed)
    draws = idx[rng.integers(0, v.size, size=(n_boot, ref.sample_size))]
    sims = np.empty(n_boot)
    for b in range(n_boot):
        d = draws[b]
        sims[b] = ks_similarity(np.bincount(d[d >= 0], minlength=nb), q)
    if np.isnan(sims).sum() > n_boot / 10:
        return 0.0, 0.0
    return float(np.nanmean(sims)), float(np.nanstd(sims))


def reference_pool(ref: Reference) -> np.ndarray:
    """The reference as a pool of per-neuron values (bin centres for histograms, NaN for undefined)."""
    if ref.values is not None:
        return np.asarray(ref.values, float)
    counts = np.rint(ref.histogram()).astype(int)
    edges = np.log(np.asarray(ref.bins, float)) if ref.log_bins else np.asarray(ref.bins, float)
    centres = (edges[:-1] + edges[1:]) / 2
    centres = np.exp(centres) if ref.log_bins else centres
    pool = np.repeat(centres, counts)
    missing = max(0, ref.sample_size - counts.sum())
    return np.concatenate([pool, np.full(missing, np.nan)])


_CEILINGS: dict[tuple, float] = {}


def ceiling(ref: Reference, n_boot: int = 1000, seed: int = 0) -> float:
    """The reference's similarity with bootstrap resamples of itself (the best a model can expect)."""
    key = (ref, n_boot, seed)
    if key not in _CEILINGS:
        _CEILINGS[key] = bootstrap_similarity(reference_pool(ref), ref, n_boot, seed)[0]
    return _CEILINGS[key]


def load_references(path: str | Path | None = None, base: dict[str, Reference] | None = None) -> dict[str, Reference]:
    """Built-in references, updated from a JSON file of monkey data if ``path`` is given.

    The file maps a property column name (e.g. ``"circular_variance"``) to either
    ``{"values": [...]}`` (one value per neuron, ``null`` where undefined) or
    ``{"counts": [...], "bins": [...], "n_neurons": N}``; ``bins`` defaults to the built-in bins,
    and ``"source"``, ``"log_bins"`` and ``"period"`` (circular values, e.g. 180) are optional.
    """
    refs = dict(REFERENCES if base is None else base)
    if path is None:
        return refs
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"reference file not found: {path}") from None
    except json.JSONDecodeError as err:
        raise DataError(f"reference file {path} is not valid JSON ({err.msg})") from None
    if not isinstance(data, dict):
        raise DataError(f"reference file {path} must map property names to objects")
    for prop, spec in data.items():
        if not isinstance(spec, dict):
            raise DataError(f"reference {prop!r} in {path} must be an object with 'values' or 'counts'")
        old = refs.get(prop)
        bins = spec.get("bins", old.bins if old else None)
        if bins is None:
            raise DataError(f"reference {prop!r} in {path} needs 'bins' (no built-in bins for it)")
        vals = spec.get("values")
        counts = spec.get("counts")
        if (vals is None) == (counts is None):
            raise DataError(f"reference {prop!r} in {path}: give exactly one of 'values' or 'counts'")
        if counts is not None and len(counts) != len(bins) - 1:
            raise DataError(f"reference {prop!r} in {path}: {len(counts)} counts for {len(bins) - 1} bins")
        refs[prop] = Reference(
            property=prop,
            benchmark=old.benchmark if old else prop,
            bins=tuple(float(b) for b in bins),
            counts=None if counts is None else tuple(float(c) for c in counts),
            values=None if vals is None else tuple(float("nan") if x is None else float(x) for x in vals),
            n_neurons=spec.get("n_neurons"),
            log_bins=bool(spec.get("log_bins", old.log_bins if old else False)),
            source=str(spec.get("source", f"user file {Path(path).name}")),
            published_ceiling=old.published_ceiling if old else None,
            period=spec.get("period", old.period if old else None),
        )
    return refs


# ----------------------------------------------------------------------------------------------
# summaries

#: 0/1 properties: their "median" in summaries is the fraction of units with 1
BINARY_PROPERTIES = ("orientation_selective", "sf_selective", "strongly_suppressed", "c50_above_range",
                     "c50_below_range", "contrast_exponent_at_bound")

#: Brain-Score's V1 benchmark groups (docs/reference/ecosystem.md 7.3): a property's score is averaged within its
#: group, then the groups are averaged (property -> group -> Marques2020), so a group with three
#: properties weighs as much as one with a single property
PROPERTY_GROUPS = {
    "preferred_orientation": "orientation", "circular_variance": "orientation",
    "orientation_bandwidth": "orientation", "orthogonal_preferred_ratio": "orientation",
    "orientation_selective": "orientation", "cv_bandwidth_ratio": "orientation", "opr_cv_diff": "orientation",
    "peak_sf": "spatial_frequency", "sf_selective": "spatial_frequency", "sf_bandwidth_ratio": "spatial_frequency",
    "grating_summation_field": "receptive_field_size", "surround_diameter": "receptive_field_size",
    "surround_suppression_index": "surround_modulation",
    "modulation_ratio": "response_selectivity",
    "max_dc": "response_magnitude",
}


def grouped_mean(rows: list[dict]) -> tuple[float, int, int]:
    """(mean over groups of the mean score within each group, number of groups, number of properties)."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        if np.isfinite(r["score"]):
            groups.setdefault(PROPERTY_GROUPS.get(r["property"], r["property"]), []).append(r["score"])
    if not groups:
        return float("nan"), 0, 0
    return (float(np.mean([np.mean(v) for v in groups.values()])), len(groups),
            sum(len(v) for v in groups.values()))


SUMMARY_FIELDS = ["property", "set", "benchmark", "n_units", "n_defined", "n_censored", "median", "q25", "q75",
                  "ref_median", "similarity", "similarity_std", "ceiling", "score", "reference"]


def summarize(columns: dict[str, np.ndarray], references: dict[str, Reference] | None = None,
              n_boot: int = 1000, seed: int = 0) -> tuple[list[dict], float]:
    """One row per property (units of its responsive subset), scored where a reference has data.

    Returns ``(rows, mean_score)``: the mean over Brain-Score's property groups of the mean score of
    the properties with reference data in each group (``grouped_mean``; NaN if none).
    """
    from .properties import CENSORED_BY, PROPERTY_INFO

    references = REFERENCES if references is None else references
    rows = []
    for prop, (stim_set, _desc) in PROPERTY_INFO.items():
        if prop not in columns:
            continue
        flag = responsive_flag(prop, stim_set)
        mask = columns[flag] > 0 if flag in columns else np.ones(len(columns[prop]), bool)
        v = np.asarray(columns[prop], float)[mask]
        ref = references.get(prop)
        fin = v[np.isfinite(v)]
        if ref is not None:  # medians in the reference's convention (orientations from -22.5 deg)
            fin = ref.map_values(fin)
        # censored units (a fit parameter outside the contrasts shown) are NaN, so medians leave them out
        censored = np.zeros(int(mask.sum()), bool)
        for flag_col in CENSORED_BY.get(prop, ()):
            if flag_col in columns:
                censored |= np.asarray(columns[flag_col], float)[mask] == 1
        row = {"property": prop, "set": stim_set, "n_units": int(mask.sum()), "n_defined": int(fin.size),
               "n_censored": int(censored.sum()), "median": _q(fin, 50), "q25": _q(fin, 25), "q75": _q(fin, 75)}
        if prop in BINARY_PROPERTIES:  # 0/1 flags: report the fraction of 1s
            row.update(median=float(fin.mean()) if fin.size else float("nan"), q25=float("nan"), q75=float("nan"))
        row.update({"benchmark": ref.benchmark if ref else "", "ref_median": float("nan"),
                    "similarity": float("nan"), "similarity_std": float("nan"), "ceiling": float("nan"),
                    "score": float("nan"), "reference": ref.source if ref and ref.has_data else ""})
        if ref is not None and ref.has_data:
            h = ref.histogram()
            row["ref_median"] = float(h[-1] / h.sum()) if prop in BINARY_PROPERTIES else ref.median()
            if v.size:
                sim, err = bootstrap_similarity(v, ref, n_boot, seed)
                ceil = ceiling(ref, n_boot, seed)
                row.update(similarity=sim, similarity_std=err, ceiling=ceil,
                           score=sim / ceil if ceil and np.isfinite(sim) else float("nan"))
        rows.append(row)
    return rows, grouped_mean(rows)[0]


def _q(v, q):
    return float(np.percentile(v, q)) if len(v) else float("nan")


def _fmt(x) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(int(x))
    if x is None or not math.isfinite(float(x)):
        return "-"
    x = float(x)
    if x == 0:
        return "0"
    return f"{x:.2e}" if abs(x) >= 1e4 or abs(x) < 1e-3 else f"{x:.3g}"


def format_table(header: list[str], rows: list[list]) -> str:
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))
    out = [line, "-" * len(line)]
    for r in cells:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(out)


def summary_table(rows: list[dict], mean_score: float | None = None, title: str | None = None) -> str:
    """The printed summary: per property its units, median [IQR], the reference median and the scores."""
    header = ["property", "units", "defined", "median*", "IQR", "ref median*", "similarity", "ceiling", "score"]
    body = []
    for r in rows:
        iqr = "-" if not np.isfinite(r["q25"]) else f"{_fmt(r['q25'])}..{_fmt(r['q75'])}"
        body.append([r["property"], r["n_units"], r["n_defined"], r["median"], iqr, r["ref_median"],
                     r["similarity"], r["ceiling"], r["score"]])
    text = format_table(header, body)
    _, n_groups, n = grouped_mean(rows)
    if title:
        text = f"{title}\n{text}"
    text += "\n* for 0/1 properties (" + ", ".join(BINARY_PROPERTIES) + "): the fraction of 1s"
    censored = [f"{r['property']} {int(r['n_censored'])} of {r['n_units']}" for r in rows
                if np.isfinite(r.get("n_censored", np.nan)) and r["n_censored"] > 0]
    if censored:
        text += ("\ncensored, left out of the medians (the fit's value lies outside the contrasts shown; the "
                 "c50_above_range, c50_below_range and contrast_exponent_at_bound rows say why): "
                 + ", ".join(censored))
    if mean_score is not None:
        text += (f"\nmean score over {n_groups} groups ({n} properties with reference data, averaged within "
                 f"each group first, as Brain-Score): {_fmt(mean_score)}")
    return text


def write_summary_csv(rows: list[dict], path: Path) -> Path:
    return write_records(path, list(SUMMARY_FIELDS), rows)


def read_summary_csv(path: Path) -> list[dict]:
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            for k in SUMMARY_FIELDS:
                if k in ("property", "set", "benchmark", "reference"):
                    continue
                try:
                    r[k] = float(r[k]) if r.get(k) not in (None, "") else float("nan")
                except ValueError:
                    r[k] = float("nan")
            rows.append(r)
    return rows


# ----------------------------------------------------------------------------------------------
# several runs


@dataclass
class RunSummary:
    label: str
    rows: list[dict]
    mean_score: float
    meta: dict = field(default_factory=dict)


def run_label(folder: Path, meta: dict) -> str:
    """A run's name in tables and figures: its ``--label`` when one was given, else its folder's name
    (the default label is only the model's name, which does not tell two runs of one model apart)."""
    label = meta.get("label")
    if label and label != meta.get("model"):
        return str(label)
    return folder.resolve().name


def load_run(path: str | Path) -> RunSummary:
    """A finished probe run (its ``summary.csv`` and ``run.json``) from an output folder."""
    d = Path(path)
    if not (d / "summary.csv").is_file():
        raise DataError(f"{d} is not a v1-probe output folder (no summary.csv)")
    meta = json.loads((d / "run.json").read_text()) if (d / "run.json").is_file() else {}
    rows = read_summary_csv(d / "summary.csv")
    label = run_label(d, meta)
    return RunSummary(label, rows, float(meta["mean_score"] if meta.get("mean_score") is not None else "nan"), meta)


def comparison(runs: list[RunSummary], value: str = "score") -> tuple[list[str], list[list]]:
    """(header, rows): one row per property, one column per run, cells = ``value`` (score or median)."""
    if not runs:
        raise ConfigError("nothing to compare")
    labels = _unique([r.label for r in runs])
    props: list[str] = []
    for r in runs:
        for row in r.rows:
            if row["property"] not in props:
                props.append(row["property"])
    table = []
    for p in props:
        line: list = [p]
        for r in runs:
            match = [row for row in r.rows if row["property"] == p]
            line.append(match[0][value] if match else float("nan"))
        if value != "score" or any(isinstance(x, float) and math.isfinite(x) for x in line[1:]):
            table.append(line)
    if value == "score":
        table.append(["mean score"] + [r.mean_score for r in runs])
    return ["property"] + labels, table


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else f"{lab} ({seen[lab]})")
    return out


def comparison_table(runs: list[RunSummary]) -> str:
    """Scores side by side, then medians side by side, as printable text."""
    h, rows = comparison(runs, "score")
    text = "score (similarity / ceiling) per property\n" + format_table(h, rows)
    h2, rows2 = comparison(runs, "median")
    return text + "\n\nmedian over responsive units\n" + format_table(h2, rows2)


def write_comparison_csv(runs: list[RunSummary], path: Path) -> Path:
    labels = _unique([r.label for r in runs])
    cols = ["property", "run", "score", "similarity", "ceiling", "median", "n_units"]
    records = []
    for lab, r in zip(labels, runs):
        records += [{**row, "run": lab} for row in r.rows]
        records.append({"property": "mean score", "run": lab, "score": r.mean_score})
    return write_records(path, cols, records)
