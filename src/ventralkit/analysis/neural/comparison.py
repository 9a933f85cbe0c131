"""Is the difference real? Paired tests between layers and between models scored on the same stimuli.

A ``ventralkit neural`` run with ``--bootstrap N`` writes ``bootstrap.npz`` (``samples_file``) and
``comparisons.csv`` (every pair of its layers, per metric). ``compare_outputs`` does the same across output
folders of several models: it checks that they were scored on the same stimuli, against the same responses,
with the same metrics and the same resamples (one line naming the two folders otherwise), then tests every
pair of (model, layer) per metric, each score against 0 and against the lower noise ceiling
(``compare_stats``), and draws ``comparison.png`` (``plots.neural_compare``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataError
from ...files import write_records
from . import compare_stats as S
from .registry import get_metric
from .samples_file import SavedSamples, read_samples, write_samples

CSV, FIGURE = "comparisons.csv", "comparison.png"


def candidates(saved: SavedSamples, metric: str, layers: Sequence[str] | None = None,
               group: str = "") -> list[S.Candidate]:
    """The layers of one output under ``metric`` as candidates (named ``group:layer`` when ``group`` is given)."""
    lower, _upper, resampled = saved.ceilings.get(metric, (np.nan, np.nan, None))
    out = []
    for layer in saved.layers:
        if layers is not None and layer not in layers:
            continue
        key = (layer, metric)
        if key in saved.scores:
            out.append(S.Candidate(f"{group}:{layer}" if group else layer, saved.estimates[key], saved.scores[key],
                                   lower, resampled, group))
    return out


def compare_saved(outputs: Sequence[tuple[str, SavedSamples]], test: str = "t-test", correction: str = "fdr",
                  alpha: float = S.ALPHA, layers: Sequence[str] | None = None) -> list[dict]:
    """The rows of comparisons.csv for the outputs (``(name, samples)``; one output: its layers), per metric."""
    S.check_test(test)
    rows = []
    n = outputs[0][1].meta["n_effective"]
    for metric in outputs[0][1].metrics:
        group = len(outputs) > 1
        cands = [c for name, saved in outputs for c in candidates(saved, metric, layers, name if group else "")]
        rows += S.compare_candidates(cands, n, metric, test, correction, alpha)
    return rows


def write_comparisons(rows: list[dict], out: Path) -> Path:
    """comparisons.csv (``compare_stats.COLUMNS``), numbers rounded to 6 decimals, NaN as an empty cell."""
    def cell(v):
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "no"
        if isinstance(v, (float, np.floating)):
            return "" if not np.isfinite(v) else round(float(v), 6)
        return v
    return write_records(Path(out) / CSV, S.COLUMNS, [{k: cell(v) for k, v in r.items()} for r in rows])


def write_layer_comparisons(result, out: Path, images=None, rows=None, test: str = "t-test",
                            correction: str = "fdr", alpha: float = S.ALPHA) -> list[Path]:
    """bootstrap.npz and comparisons.csv (the layers of one ``neural`` run) for a result with a bootstrap."""
    if result.bootstrap is None:
        return []
    path = write_samples(result, out, images, rows)
    saved = read_samples(out)
    return [path, write_comparisons(compare_saved([("", saved)], test, correction, alpha), out)]


# --------------------------------------------------------------------------- several outputs


def check_paired(outputs: Sequence[tuple[str, SavedSamples]]) -> None:
    """One ``DataError`` line when two outputs cannot be compared pairwise (different stimuli, responses, metrics,
    resamples or ceiling convention), naming both folders and what to do."""
    first_name, first = outputs[0]
    for name, other in outputs[1:]:
        a, b = first.meta, other.meta
        both = f"{first.folder} and {other.folder}"
        if a["n_stimuli"] != b["n_stimuli"] or (a["stimuli_fingerprint"] and b["stimuli_fingerprint"]
                                                and a["stimuli_fingerprint"] != b["stimuli_fingerprint"]):
            raise DataError(f"{both} were scored on different stimuli ({a['n_stimuli']} and {b['n_stimuli']}, or "
                            "other image names or order); compare outputs scored on the same stimuli and responses")
        if a["responses_fingerprint"] != b["responses_fingerprint"]:
            raise DataError(f"{both} were scored against different responses; score both models against the same "
                            "--responses (and --stimuli, --subjects)")
        if sorted(a["metrics"]) != sorted(b["metrics"]):
            raise DataError(f"{both} were scored with different metrics ({' '.join(a['metrics'])} and "
                            f"{' '.join(b['metrics'])}); score them with the same --metrics")
        if a["resamples_fingerprint"] != b["resamples_fingerprint"]:
            raise DataError(f"{both} were resampled differently (--bootstrap {a['resamples']} --seed {a['seed']} over "
                            f"{a['over']}, and --bootstrap {b['resamples']} --seed {b['seed']} over {b['over']}); "
                            "score them with the same --bootstrap and --seed")
        if a["ceiling_convention"] != b["ceiling_convention"]:
            raise DataError(f"{both} use different --ceiling_convention ({a['ceiling_convention']} and "
                            f"{b['ceiling_convention']}); score them with the same one")


def output_names(folders: Sequence[Path]) -> list[str]:
    """A name per output folder for the table and the figure: its own name, or its path when two share one."""
    names = [Path(f).name or str(f) for f in folders]
    if len(set(names)) < len(names):
        names = [str(f) for f in folders]
    if len(set(names)) < len(names):
        raise ConfigError("the same output folder is given twice; give each once")
    return names


@dataclass
class Comparison:
    """What ``compare_outputs`` found: the rows of comparisons.csv, the files written and a text summary."""

    rows: list[dict]
    files: list[Path] = field(default_factory=list)

    def table(self, significant_only: bool = True) -> str:
        """The pairs (by default only the significant ones) as aligned text, per metric."""
        pairs = [r for r in self.rows if r["kind"] == "pair" and (r["significant"] or not significant_only)]
        if not pairs:
            return "no pair differs significantly" if significant_only else "no pairs"
        width = max(len(r["a"]) for r in pairs)
        lines = [f"{'metric':<8} {'a':<{width}}  {'b':<{width}}  {'a - b':>7}  {'95% CI':>17}  {'p adj':>8}"]
        for r in pairs:
            lines.append(f"{r['metric']:<8} {r['a']:<{width}}  {r['b']:<{width}}  {r['difference']:7.3f}  "
                         f"[{r['ci_low']:7.3f}, {r['ci_high']:7.3f}]  {r['p_adjusted']:8.2g}")
        return "\n".join(lines)


def compare_outputs(folders: Sequence, out, test: str = "t-test", correction: str = "fdr", alpha: float = S.ALPHA,
                    layers: Sequence[str] | None = None, figure: bool = True) -> Comparison:
    """comparisons.csv and comparison.png in ``out`` for the ``ventralkit neural`` output ``folders``."""
    if len(folders) < 2:
        raise ConfigError("neural compare needs at least 2 output folders (OUT1 OUT2 ...)")
    S.check_test(test)
    if correction not in S.CORRECTIONS:
        raise ConfigError(f"--correction {correction}: choose {', '.join(S.CORRECTIONS)}")
    names = output_names([Path(f) for f in folders])
    outputs = [(name, read_samples(f)) for name, f in zip(names, folders)]
    check_paired(outputs)
    _check_layers(outputs, layers)
    rows = compare_saved(outputs, test, correction, alpha, layers)
    out = Path(out)
    result = Comparison(rows, [write_comparisons(rows, out)])
    if figure:
        result.files.append(draw_comparison(outputs, rows, out / FIGURE, alpha, correction, layers))
    return result


def _check_layers(outputs, layers) -> None:
    if not layers:
        return
    known = {layer for _, saved in outputs for layer in saved.layers}
    missing = [layer for layer in layers if layer not in known]
    if missing:
        raise ConfigError(f"--layers {' '.join(missing)}: in none of the outputs; they have {', '.join(sorted(known))}")


def draw_comparison(outputs, rows: list[dict], path: Path, alpha: float, correction: str,
                    layers: Sequence[str] | None = None) -> Path:
    """comparison.png: per metric, the scores as bars with their 95 % intervals, the noise-ceiling band and a line
    over every significant pair (``plots.neural_compare``)."""
    from ...plots.neural_compare import ComparisonPanel, plot_comparison

    panels = []
    for metric in outputs[0][1].metrics:
        cands = [c for name, saved in outputs for c in candidates(saved, metric, layers, name)]
        names = [c.name for c in cands]
        ci = [np.nanquantile(c.samples, [0.025, 0.975]) if np.isfinite(c.samples).sum() > 1 else (np.nan, np.nan)
              for c in cands]
        lower, upper = _ceiling_band(*outputs[0][1].ceilings.get(metric, (np.nan, np.nan, None)))
        metric_rows = [r for r in rows if r["metric"] == metric]
        pairs = [(names.index(r["a"]), names.index(r["b"])) for r in metric_rows
                 if r["kind"] == "pair" and r["significant"]]
        below = {r["a"] for r in metric_rows if r["kind"] == "below ceiling" and r["significant"]}
        panels.append(ComparisonPanel(
            label=get_metric(metric).label, names=names, groups=[c.group for c in cands],
            estimates=[c.estimate for c in cands], ci_low=[v[0] for v in ci], ci_high=[v[1] for v in ci],
            ceiling=(float(lower), float(upper)), pairs=pairs, below_ceiling=[n in below for n in names]))
    meta = outputs[0][1].meta
    note = (f"{meta['n_stimuli']} stimuli, {meta['resamples']} resamples over {meta['over']}; bars: 95 % interval; "
            f"lines: pairs different at {'FDR q' if correction == 'fdr' else 'p'} <= {alpha:g}"
            + (" (Bonferroni)" if correction == "bonferroni" else ""))
    return plot_comparison(path, panels, note)


def _ceiling_band(lower: float, upper: float, resampled: np.ndarray | None) -> tuple[float, float]:
    """The noise-ceiling band of the figure: the lower to the upper bound (subjects), else the 95 % interval of
    the resampled ceiling, else the ceiling alone (a line)."""
    if np.isfinite(lower) and np.isfinite(upper) and upper != lower:
        return float(lower), float(upper)
    if resampled is not None and np.isfinite(resampled).sum() > 1:
        lo, hi = np.nanquantile(resampled, [0.025, 0.975])
        return float(lo), float(hi)
    return float(lower), float(lower)
