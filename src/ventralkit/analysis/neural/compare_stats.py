"""Paired tests between scores resampled on the same stimuli, and their correction for multiple comparisons.

Two scores bootstrapped with the same resamples (``bootstrap.draw_resamples`` with the same seed on the same
stimuli) are paired: resample b of one and resample b of the other were computed on the same drawn stimuli, so
the difference of the two samples is the bootstrap distribution of the difference. Every test here reads that
distribution:

* ``t-test`` (rsatoolbox's default): t = difference / standard error of the difference, the standard error being
  the bootstrap standard deviation times ``sqrt(n / (n - 1))`` (n: stimuli), with n - 1 degrees of freedom
  (rsatoolbox's ``t_tests``, ``t_test_0``, ``t_test_nc``; the estimate is the point estimate, not the mean of the
  resamples).
* ``bootstrap``: the share of resampled differences on the other side of 0, ``(k + 1) / (B + 1)``, doubled for a
  two-sided test.

Pairs are two-sided. A score against 0 is one-sided (is it above 0?), a score against the lower noise ceiling is
one-sided (is it below the ceiling? rsatoolbox's ``test_noise`` is two-sided, its model plot reads it one-sided).
Each family of tests (the pairs of a metric, the tests against 0, the tests against the ceiling) is corrected on
its own: Benjamini-Hochberg's false discovery rate by default, Bonferroni, or none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TESTS = ("t-test", "bootstrap")
CORRECTIONS = ("fdr", "bonferroni", "none")
ALPHA = 0.05


@dataclass(frozen=True)
class Candidate:
    """One score in a comparison (a layer of a model under one metric): its point estimate, its bootstrap samples
    (B,), and the lower noise ceiling on the same scale (a value, and its samples when it was resampled too)."""

    name: str
    estimate: float
    samples: np.ndarray
    ceiling: float = float("nan")
    ceiling_samples: np.ndarray | None = None
    group: str = ""  # the model (output folder) it belongs to; "" within one output


@dataclass(frozen=True)
class Test:
    """One test: the difference, its percentile interval and standard error, t and its degrees of freedom, p."""

    difference: float
    ci_low: float
    ci_high: float
    sem: float
    t: float
    dof: int
    p: float


def paired_difference(estimate: float, samples: np.ndarray, n: int, test: str = "t-test",
                      side: str = "two-sided", level: float = 0.95) -> Test:
    """The test of ``estimate`` (a difference, or a score minus a reference) against 0 from its resamples.

    ``side``: ``two-sided``, ``greater`` (H1: above 0) or ``less`` (H1: below 0). Resamples where the difference
    is not finite are left out; fewer than 2 finite ones give NaN."""
    check_test(test)
    d = np.asarray(samples, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size < 2 or not np.isfinite(estimate) or n < 2:
        return Test(float(estimate), *(float("nan"),) * 4, 0, float("nan"))
    tail = (1 - level) / 2
    lo, hi = np.quantile(d, [tail, 1 - tail])
    sem = float(np.std(d, ddof=1) * np.sqrt(n / (n - 1)))
    dof = n - 1
    t = float(estimate / max(sem, np.finfo(float).eps))
    if test == "t-test":
        p = _t_p(t, dof, side)
    else:
        below, above = int((d <= 0).sum()), int((d >= 0).sum())
        share = {"greater": (below + 1) / (d.size + 1), "less": (above + 1) / (d.size + 1)}
        p = share[side] if side in share else min(1.0, 2 * min(below + 1, above + 1) / (d.size + 1))
    return Test(float(estimate), float(lo), float(hi), sem, t, dof, float(p))


def _t_p(t: float, dof: int, side: str) -> float:
    from scipy.stats import t as student

    if side == "greater":
        return float(student.sf(t, dof))
    if side == "less":
        return float(student.cdf(t, dof))
    return float(2 * student.sf(abs(t), dof))


def check_test(test: str) -> str:
    if test not in TESTS:
        raise ValueError(f"test {test!r}: choose {' or '.join(TESTS)}")
    return test


# --------------------------------------------------------------------------- multiple comparisons


def adjust(p: Sequence[float], correction: str = "fdr") -> np.ndarray:
    """Adjusted p-values: Benjamini-Hochberg (``fdr``: the smallest q at which each test is a discovery),
    Bonferroni (m p, at most 1) or ``none``. NaN p-values stay NaN and do not count in m."""
    if correction not in CORRECTIONS:
        raise ValueError(f"correction {correction!r}: choose {', '.join(CORRECTIONS)}")
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0 or correction == "none":
        out[ok] = p[ok]
        return out
    if correction == "bonferroni":
        out[ok] = np.minimum(1.0, p[ok] * m)
        return out
    order = np.argsort(p[ok])
    ranked = p[ok][order] * m / np.arange(1, m + 1)
    q = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    values = np.empty(m)
    values[order] = q
    out[ok] = values
    return out


# --------------------------------------------------------------------------- the tests of a set of candidates


def compare_candidates(candidates: Sequence[Candidate], n: int, metric: str = "", test: str = "t-test",
                       correction: str = "fdr", alpha: float = ALPHA) -> list[dict]:
    """Every pair (two-sided), each candidate against 0 (above?) and against its lower noise ceiling (below?).

    One dict per test, the columns of ``comparisons.csv``; ``p_adjusted`` within each family (``kind``)."""
    rows = []
    for i, a in enumerate(candidates):
        for b in candidates[i + 1:]:
            r = paired_difference(a.estimate - b.estimate, a.samples - b.samples, n, test)
            rows.append(_row(metric, "pair", a, b.name, a.estimate, b.estimate, r, b.group != a.group))
    for a in candidates:
        rows.append(_row(metric, "above 0", a, "0", a.estimate, 0.0,
                         paired_difference(a.estimate, a.samples, n, test, "greater")))
    for a in candidates:
        if not np.isfinite(a.ceiling):
            continue
        ceiling = a.ceiling_samples if a.ceiling_samples is not None else a.ceiling
        r = paired_difference(a.estimate - a.ceiling, a.samples - ceiling, n, test, "less")
        rows.append(_row(metric, "below ceiling", a, "lower noise ceiling", a.estimate, a.ceiling, r))
    for kind in ("pair", "above 0", "below ceiling"):
        family = [r for r in rows if r["kind"] == kind]
        for r, q in zip(family, adjust([r["p"] for r in family], correction)):
            r.update(p_adjusted=float(q), significant=bool(np.isfinite(q) and q <= alpha), test=test,
                     correction=correction)
    return rows


def _row(metric: str, kind: str, a: Candidate, b: str, estimate_a: float, estimate_b: float, r: Test,
         between_models: bool = False) -> dict:
    scope = "models" if between_models else ("layers" if kind == "pair" else "")
    return {"metric": metric, "kind": kind, "scope": scope, "a": a.name, "b": b, "estimate_a": estimate_a,
            "estimate_b": estimate_b, "difference": r.difference, "ci_low": r.ci_low, "ci_high": r.ci_high,
            "sem": r.sem, "t": r.t, "dof": r.dof, "p": r.p}


#: the columns of comparisons.csv, in order
COLUMNS = ["metric", "kind", "scope", "a", "b", "estimate_a", "estimate_b", "difference", "ci_low", "ci_high", "sem",
           "t", "dof", "p", "p_adjusted", "significant", "test", "correction"]
