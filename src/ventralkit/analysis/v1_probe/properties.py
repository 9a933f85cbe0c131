"""Single-unit tuning properties, each a plain numpy function of one tuning curve.

The definitions are those of the V1 property benchmarks of Marques, Schrimpf & DiCarlo (2021,
bioRxiv 2021.03.01.433495), which re-implement the measures of the original monkey studies
(``docs/reference/ecosystem.md`` section 7.3). Angles are in degrees, spatial frequencies in
cycles/degree, sizes in degrees of visual angle. Where a property is undefined (e.g. a tuning curve
that never falls to the threshold) the function returns NaN.

``unit_properties`` applies them to every unit of a probe run (``compute_properties``), choosing,
per unit, the preferred condition of each stimulus set as the benchmarks do.
"""

from __future__ import annotations

import math

import numpy as np

#: 1/sqrt(2): the half-power threshold of the bandwidth measures
HALF_POWER = 1.0 / math.sqrt(2.0)

# smoothing kernels applied to a tuning curve before interpolation (Marques 2021)
_KERNELS = {"hanning": np.array([2 / 5, 1.0, 2 / 5]), "smooth": np.array([1 / 5, 1.0, 1 / 5]), None: np.array([1.0])}


def _smooth_periodic(curve: np.ndarray, kind) -> np.ndarray:
    w = _KERNELS[kind] / _KERNELS[kind].sum()
    h = len(w) // 2
    return sum(w[i] * np.roll(curve, h - i) for i in range(len(w)))


def _smooth_edges(curve: np.ndarray, kind) -> np.ndarray:
    w = _KERNELS[kind] / _KERNELS[kind].sum()
    h = len(w) // 2
    padded = np.concatenate([np.full(h, curve[0]), curve, np.full(h, curve[-1])])
    return np.convolve(padded, w[::-1], mode="valid")


def _periodic_fine_curve(curve, orientations, smoothing, step=0.5):
    """Smoothed, periodic cubic-spline interpolation of an orientation curve on a fine grid over [0, 180)."""
    from scipy.interpolate import CubicSpline

    curve = np.asarray(curve, float)
    ori = np.asarray(orientations, float) % 180.0
    order = np.argsort(ori)
    ori, curve = ori[order], _smooth_periodic(curve[order], smoothing)
    x = np.concatenate([ori, [ori[0] + 180.0]])
    y = np.concatenate([curve, [curve[0]]])
    grid = np.arange(0.0, 180.0, step)
    spline = CubicSpline(x, y, bc_type="periodic")
    return grid, spline(np.where(grid < x[0], grid + 180.0, grid))


# ----------------------------------------------------------------------------------------------
# orientation


def circular_variance(curve, orientations) -> float:
    """Circular variance of an orientation tuning curve: ``1 - |sum_k r_k e^{2 i theta_k}| / sum_k |r_k|``.

    0 for a unit that responds to one orientation only, 1 for one that responds equally to all.
    Source: Ringach, Shapley & Hawken (2002, J Neurosci 22:5639), the ``orivar`` measure; benchmark
    ``Marques2020_Ringach2002-circular_variance``.
    """
    r = np.asarray(curve, float)
    total = np.abs(r).sum()
    if total == 0:
        return float("nan")
    vec = np.sum(r * np.exp(2j * np.deg2rad(np.asarray(orientations, float))))
    return float(1.0 - np.abs(vec) / total)


def preferred_orientation(curve, orientations, smoothing="smooth") -> float:
    """Preferred orientation in [0, 180): the peak of the smoothed, spline-interpolated tuning curve.

    The curve is smoothed with a [1/5, 1, 1/5] kernel (circularly) and interpolated with a periodic
    cubic spline at 0.5 deg resolution. Source: De Valois, Yund & Hepler (1982, Vision Res 22:531)
    as measured in Marques et al. (2021), benchmark ``Marques2020_DeValois1982-pref_or``.
    """
    if not np.any(np.asarray(curve, float) > 0):
        return float("nan")
    grid, fine = _periodic_fine_curve(curve, orientations, smoothing)
    return float(grid[int(np.argmax(fine))])


def orientation_bandwidth(curve, orientations, threshold=HALF_POWER, smoothing="hanning") -> float:
    """Orientation bandwidth: half the width of the tuning curve at ``threshold`` x its peak (degrees).

    The curve is smoothed (Hanning kernel [2/5, 1, 2/5]) and interpolated with a periodic cubic
    spline; the width is measured between the first points on either side of the peak that fall to
    1/sqrt(2) of the peak. NaN when the curve never falls that far within +-90 deg (full width > 180
    deg), i.e. the unit is not orientation selective. Source: Ringach et al. (2002), benchmark
    ``Marques2020_Ringach2002-or_bandwidth`` (bandwidths above 90 deg count as unselective).
    """
    curve = np.asarray(curve, float)
    if not np.any(curve > 0):
        return float("nan")
    grid, fine = _periodic_fine_curve(curve, orientations, smoothing)
    step = grid[1] - grid[0]
    n = len(fine)
    peak_i = int(np.argmax(fine))
    peak = fine[peak_i]
    below = fine <= threshold * peak
    if not below.any():
        return float("nan")
    idx = (peak_i + np.arange(1, n)) % n
    right = np.argmax(below[idx]) + 1  # steps to the first crossing on the right
    idx_l = (peak_i - np.arange(1, n)) % n
    left = np.argmax(below[idx_l]) + 1
    full = (left + right) * step
    return float(full / 2) if full <= 180.0 else float("nan")


def orthogonal_preferred_ratio(curve, orientations) -> float:
    """Response at the orientation orthogonal to the preferred one divided by the preferred response.

    Uses the sampled orientations (the preferred one = the largest response). Source: Ringach et
    al. (2002), benchmark ``Marques2020_Ringach2002-orth_pref_ratio``.
    """
    r = np.asarray(curve, float)
    ori = np.asarray(orientations, float) % 180
    i = int(np.argmax(r))
    if r[i] <= 0:
        return float("nan")
    d = np.abs(((ori - ori[i] - 90.0) + 90.0) % 180.0 - 90.0)
    return float(r[int(np.argmin(d))] / r[i])


def orientation_selectivity_index(curve, orientations) -> float:
    """OSI = (R_pref - R_orth) / (R_pref + R_orth) on the sampled curve (0: untuned, 1: no orthogonal response).

    A common index in rodent and primate V1 work (e.g. Niell & Stryker 2008, J Neurosci 28:7520);
    equals (1 - opr) / (1 + opr) with opr the orthogonal/preferred ratio.
    """
    opr = orthogonal_preferred_ratio(curve, orientations)
    return float((1 - opr) / (1 + opr)) if np.isfinite(opr) else float("nan")


# ----------------------------------------------------------------------------------------------
# spatial frequency


def spatial_frequency_tuning(curve, spatial_frequencies, threshold=HALF_POWER, smoothing="smooth") -> dict:
    """Peak SF and bandwidth of a spatial-frequency tuning curve.

    The curve is smoothed ([1/5, 1, 1/5], edges repeated), interpolated with a cubic spline on a
    log2(SF) axis (200 points), and cut at 1/sqrt(2) of its peak on either side.

    Returns ``peak_sf`` (cpd; De Valois, Albrecht & Thorell 1982, Vision Res 22:545, benchmark
    ``DeValois1982-peak_sf``), ``sf_low``/``sf_high`` (cut-offs, NaN if the curve does not fall
    below threshold inside the tested range), ``sf_bandwidth`` = log2(sf_high / sf_low) in octaves,
    ``sf_bandwidth_ratio`` = 100 sf_low / sf_high (the percentage measure of Schiller, Finlay & Volman
    1976, J Neurophysiol 39:1334, which Brain-Score's ``Schiller1976-sf_bandwidth`` compares), and
    ``sf_selective`` = 1 if both cut-offs exist (``Schiller1976-sf_selective``), else 0.
    """
    from scipy.interpolate import CubicSpline

    nan = float("nan")
    out = {"peak_sf": nan, "sf_low": nan, "sf_high": nan, "sf_bandwidth": nan, "sf_bandwidth_ratio": nan,
           "sf_selective": 0.0}
    y = np.asarray(curve, float)
    sf = np.asarray(spatial_frequencies, float)
    order = np.argsort(sf)
    sf, y = sf[order], y[order]
    if len(sf) < 3 or not np.any(y > 0):
        return out
    x = np.log2(sf)
    fine_x = np.linspace(x[0], x[-1], 200)
    fine = CubicSpline(x, _smooth_edges(y, smoothing))(fine_x)
    i = int(np.argmax(fine))
    peak = fine[i]
    out["peak_sf"] = float(2 ** fine_x[i])
    below = fine <= threshold * peak
    left = np.nonzero(below[:i])[0]
    right = np.nonzero(below[i + 1:])[0]
    if len(left):
        out["sf_low"] = float(2 ** fine_x[left[-1]])
    if len(right):
        out["sf_high"] = float(2 ** fine_x[i + 1 + right[0]])
    if len(left) and len(right):
        out["sf_bandwidth"] = float(np.log2(out["sf_high"] / out["sf_low"]))
        out["sf_bandwidth_ratio"] = float(100.0 * out["sf_low"] / out["sf_high"])
        out["sf_selective"] = 1.0
    return out


# ----------------------------------------------------------------------------------------------
# size / surround


def size_tuning(curve, radii) -> dict:
    """Surround suppression and summation-field sizes from a size (radius) tuning curve.

    * ``surround_suppression_index`` SSI = (peak - plateau) / peak, plateau = response to the largest
      grating; > 0 means an inhibitory surround.
    * ``grating_summation_field`` GSF: the diameter at which the response first reaches 95 % of the peak.
    * ``surround_diameter``: the smallest diameter beyond the peak at which the response is within 5 %
      of the plateau.
    * ``surround_gsf_ratio`` = surround diameter / GSF; ``strongly_suppressed`` = SSI >= 0.1.
    GSF and surround diameter are only defined for SSI > 0.1 (else NaN). Source: Cavanaugh, Bair &
    Movshon (2002, J Neurophysiol 88:2530), as measured in Marques et al. (2021), benchmarks
    ``Cavanaugh2002-surround_suppression_index/-grating_summation_field/-surround_diameter``.
    """
    nan = float("nan")
    r = np.asarray(curve, float)
    rad = np.asarray(radii, float)
    order = np.argsort(rad)
    rad, r = rad[order], r[order]
    out = {"surround_suppression_index": nan, "strongly_suppressed": nan, "grating_summation_field": nan,
           "surround_diameter": nan, "surround_gsf_ratio": nan}
    i = int(np.argmax(r))
    peak, plateau = r[i], r[-1]
    if peak <= 0:
        return out
    ssi = (peak - plateau) / peak
    out["surround_suppression_index"] = float(ssi)
    out["strongly_suppressed"] = float(ssi >= 0.1)
    if ssi > 0.1:
        gsf = 2 * rad[np.nonzero(r >= 0.95 * peak)[0][0]]
        beyond = np.nonzero((r <= plateau + 0.05 * abs(plateau)) & (rad > rad[i]))[0]
        out["grating_summation_field"] = float(gsf)
        if len(beyond):
            out["surround_diameter"] = float(2 * rad[beyond[0]])
            out["surround_gsf_ratio"] = float(out["surround_diameter"] / gsf)
    return out


# ----------------------------------------------------------------------------------------------
# contrast


def contrast_response(curve, contrasts, baseline: float | None = None) -> dict:
    """Naka-Rushton fit ``R(c) = r0 + r_max c^n / (c^n + c50^n)`` of a contrast response function.

    Fitted by least squares over a grid of c50 (0.01-2, log-spaced) and exponent n (0.5-6), with r0
    and r_max solved exactly at each grid point (r_max >= 0). ``baseline`` (the blank response) is
    used as the response at contrast 0. Returns ``c50`` (semi-saturation contrast), ``contrast_exponent``
    (n), ``contrast_rmax``, ``contrast_r0``, ``contrast_r2`` (fit quality) and
    ``contrast_saturation`` = (R(0.5) - R(c_min)) / (R(1) - R(c_min)) at the tested contrasts nearest
    0.5 and 1 (c_min: the lowest, 0 when ``baseline`` is given; 1: saturated by half contrast, ~0.5:
    linear). c50 and n are NaN when the response does not grow with contrast.

    Censored fits. A c50 outside the contrasts shown is not a measurement: above the highest one the
    response never reaches half of a maximum that is itself extrapolated (the fit then runs to the end
    of its c50 grid, 2, whatever the unit), below the lowest one it is already past half. Such a c50 is
    NaN and flagged (``c50_above_range``, ``c50_below_range``: 1 = censored, 0 = measured, NaN = no
    fit), so that no code value enters a median; ``contrast_exponent`` is NaN with it (the shape is not
    identified) and where it sits at an end of its own grid (``contrast_exponent_at_bound``), and
    ``contrast_rmax`` is NaN when c50 lies above the range (the maximum was never approached).
    Sources: Naka & Rushton (1966, J Physiol 185:536); Albrecht & Hamilton (1982, J Neurophysiol
    48:217) for its use on V1 contrast responses. Not one of the Marques 2021 benchmarks.
    """
    res = contrast_response_many(np.asarray(curve, float)[None], contrasts,
                                 None if baseline is None else [baseline])
    return {k: float(v[0]) for k, v in res.items()}


def contrast_response_many(curves: np.ndarray, contrasts, baselines=None) -> dict[str, np.ndarray]:
    """``contrast_response`` for many units at once: ``curves`` is ``(units, n_contrasts)``."""
    c = np.asarray(contrasts, float)
    y = np.asarray(curves, float)
    if baselines is not None:
        c = np.concatenate([[0.0], c])
        y = np.concatenate([np.asarray(baselines, float).reshape(-1, 1), y], axis=1)
    n_units = y.shape[0]
    c50s = np.logspace(-2, np.log10(2.0), 48)
    exps = np.linspace(0.5, 6.0, 23)
    shown = np.asarray(contrasts, float)
    shown = shown[shown > 0]
    best = np.full(n_units, np.inf)
    res = {k: np.full(n_units, np.nan) for k in ("c50", "contrast_exponent", "contrast_rmax", "contrast_r0")}
    ym = y.mean(axis=1, keepdims=True)
    for c50 in c50s:
        for n in exps:
            g = c ** n / (c ** n + c50 ** n)
            gc = g - g.mean()
            var = (gc ** 2).sum()
            if var <= 0:
                continue
            rmax = ((y - ym) * gc).sum(axis=1) / var
            rmax = np.maximum(rmax, 0.0)
            r0 = (y - rmax[:, None] * g).mean(axis=1)
            sse = ((y - r0[:, None] - rmax[:, None] * g) ** 2).sum(axis=1)
            better = sse < best
            best[better] = sse[better]
            res["c50"][better], res["contrast_exponent"][better] = c50, n
            res["contrast_rmax"][better], res["contrast_r0"][better] = rmax[better], r0[better]
    sst = ((y - ym) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        res["contrast_r2"] = np.where(sst > 0, 1 - best / sst, np.nan)
        flat = ~(res["contrast_rmax"] > 0)
        for k in ("c50", "contrast_exponent"):
            res[k][flat] = np.nan
        res.update(_censor_fits(res, shown, exps))
        # saturation: measured responses at the contrasts nearest 0.5 and 1, above the lowest contrast's
        i_half, i_full = int(np.argmin(np.abs(c - 0.5))), int(np.argmin(np.abs(c - 1.0)))
        lo = y[:, int(np.argmin(c))]
        res["contrast_saturation"] = np.where(y[:, i_full] - lo > 0, (y[:, i_half] - lo) / (y[:, i_full] - lo),
                                              np.nan)
    return res


def _censor_fits(res: dict[str, np.ndarray], shown: np.ndarray, exps: np.ndarray) -> dict[str, np.ndarray]:
    """Fit parameters that lie outside what the data constrain, as NaN plus the flags that say why.

    Without this a c50 beyond the highest contrast shown would report the end of the fit grid (2.0) as
    if it were a measured semi-saturation contrast. Flags are NaN where there is no fit at all.
    """
    c50, n = res["c50"], res["contrast_exponent"]
    fitted = np.isfinite(c50)
    above = fitted & (c50 > shown.max()) if shown.size else np.zeros_like(fitted)
    below = fitted & (c50 < shown.min()) if shown.size else np.zeros_like(fitted)
    at_bound = fitted & ~above & ~below & ((n <= exps[0]) | (n >= exps[-1]))
    out = {"c50_above_range": np.where(fitted, above, np.nan),
           "c50_below_range": np.where(fitted, below, np.nan),
           "contrast_exponent_at_bound": np.where(fitted, at_bound, np.nan)}
    out["c50"] = np.where(above | below, np.nan, c50)
    out["contrast_exponent"] = np.where(above | below | at_bound, np.nan, n)
    out["contrast_rmax"] = np.where(above, np.nan, res["contrast_rmax"])
    return out


#: censored properties -> the 0/1 columns that flag why a unit's value is absent (NaN), not measured
CENSORED_BY = {
    "c50": ("c50_above_range", "c50_below_range"),
    "contrast_exponent": ("c50_above_range", "c50_below_range", "contrast_exponent_at_bound"),
    "contrast_rmax": ("c50_above_range",),
}


# ----------------------------------------------------------------------------------------------
# all units of a probe run

#: property name -> (stimulus set, short description) for every per-unit column the probe writes
PROPERTY_INFO = {
    "baseline": ("blank", "spontaneous rate (grey screen), spikes/s"),
    "max_dc": ("orientation", "peak F0 over the orientation set, spikes/s"),
    "min_dc": ("orientation", "smallest F0 on the preferred orientation curve"),
    "max_ac": ("orientation", "F1 at the preferred orientation-set stimulus"),
    "modulation_ratio": ("orientation", "F1/F0 at the preferred stimulus (>1: simple-like)"),
    "preferred_orientation": ("orientation", "deg, peak of the interpolated orientation curve"),
    "circular_variance": ("orientation", "1 - |vector sum| / sum"),
    "orientation_bandwidth": ("orientation", "half-width at 1/sqrt(2), deg (NaN: unselective)"),
    "orthogonal_preferred_ratio": ("orientation", "R(orth) / R(pref)"),
    "orientation_selective": ("orientation", "1 if the bandwidth is finite"),
    "osi": ("orientation", "(R_pref - R_orth) / (R_pref + R_orth)"),
    "cv_bandwidth_ratio": ("orientation", "circular variance / bandwidth"),
    "opr_cv_diff": ("orientation", "orth/pref ratio - circular variance"),
    "peak_sf": ("spatial_frequency", "cpd, peak of the interpolated SF curve"),
    "sf_low": ("spatial_frequency", "low cut-off at 1/sqrt(2), cpd"),
    "sf_high": ("spatial_frequency", "high cut-off at 1/sqrt(2), cpd"),
    "sf_bandwidth": ("spatial_frequency", "log2(high/low), octaves"),
    "sf_bandwidth_ratio": ("spatial_frequency", "100 low/high of the raw F0 curve, percent (Schiller 1976)"),
    "sf_selective": ("spatial_frequency", "1 if both cut-offs of the raw F0 curve exist (Schiller 1976)"),
    "surround_suppression_index": ("size", "(peak - largest-size response) / peak"),
    "strongly_suppressed": ("size", "1 if SSI >= 0.1"),
    "grating_summation_field": ("size", "diameter reaching 95% of peak, deg"),
    "surround_diameter": ("size", "diameter within 5% of the plateau, deg"),
    "surround_gsf_ratio": ("size", "surround diameter / GSF"),
    "c50": ("contrast", "semi-saturation contrast of the Naka-Rushton fit (NaN: censored, see the flags)"),
    "c50_above_range": ("contrast", "1 if the response reaches no half-saturation within the contrasts shown"),
    "c50_below_range": ("contrast", "1 if the response is past half-saturation at the lowest contrast shown"),
    "contrast_exponent": ("contrast", "Naka-Rushton exponent n (NaN when c50 is censored or n at a grid end)"),
    "contrast_exponent_at_bound": ("contrast", "1 if the fitted n sits at an end of its grid (0.5 or 6)"),
    "contrast_rmax": ("contrast", "Naka-Rushton r_max, spikes/s (NaN when c50 is above the contrasts shown)"),
    "contrast_r2": ("contrast", "R^2 of the fit"),
    "contrast_saturation": ("contrast", "(R(0.5)-R(low)) / (R(1)-R(low))"),
}

#: per-set flags: unit responds above baseline + 5 spikes/s to that set
RESPONSIVE_COLUMNS = ("responsive_orientation", "responsive_spatial_frequency", "responsive_spatial_frequency_f0",
                      "responsive_size")


def _preferred(dc_minus_base: np.ndarray, ac: np.ndarray):
    """Index of the best condition over both response components (Marques 2021: DC - baseline or AC)."""
    both = np.stack([dc_minus_base, ac], axis=-1)
    idx = np.unravel_index(int(np.argmax(both)), both.shape)
    return idx[:-1], idx[-1]


def compute_properties(rates: dict[str, np.ndarray], sets: dict, baseline: np.ndarray,
                       threshold: float = 5.0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-unit properties from firing rates of every set.

    ``rates[name]`` is ``(units, *sets[name].shape)`` with phase as the last axis. Returns
    ``(columns, curves)``: ``columns`` maps each name of ``PROPERTY_INFO`` (and the responsive flags)
    to a ``(units,)`` array; ``curves`` holds each unit's preferred tuning curves for plotting. A set
    that was not shown leaves its columns NaN (and its responsive flag absent).
    """
    n_units = baseline.shape[0]
    cols = {k: np.full(n_units, np.nan) for k in PROPERTY_INFO}
    cols["baseline"] = baseline.astype(float)
    curves: dict[str, np.ndarray] = {}
    if "orientation" in rates:
        _orientation_properties(rates["orientation"], sets["orientation"], baseline, threshold, cols, curves)
    if "spatial_frequency" in rates:
        _spatial_frequency_properties(rates["spatial_frequency"], sets["spatial_frequency"], baseline, threshold,
                                      cols, curves)
    if "size" in rates:
        _size_properties(rates["size"], sets["size"], baseline, threshold, cols, curves)
    if "contrast" in rates:
        _contrast_properties(rates["contrast"], sets, baseline, cols, curves)
    return cols, curves


def _orientation_properties(rates: np.ndarray, s, baseline: np.ndarray, threshold: float, cols: dict,
                            curves: dict) -> None:
    """The orientation set, ``(units, condition, orientation, phase)``: each unit's F0 orientation curve at its
    best condition and the properties of that curve, written into ``cols`` and ``curves``."""
    n_units = baseline.shape[0]
    ori = s.axis_values("orientation")
    dc, ac = f0_f1_last(rates)
    curves["orientation_axis"] = ori
    curves["orientation"] = np.zeros((n_units, len(ori)))
    pref_cond = np.zeros(n_units, int)
    pref_ori = np.zeros(n_units, int)
    for u in range(n_units):
        ci, oi = np.unravel_index(int(np.argmax(dc[u])), dc[u].shape)
        pref_cond[u], pref_ori[u] = ci, oi
        curve = dc[u, ci]
        curves["orientation"][u] = curve
        cols["max_dc"][u] = dc[u, ci, oi]
        cols["max_ac"][u] = ac[u, ci, oi]
        cols["min_dc"][u] = curve.min()
        cols["circular_variance"][u] = circular_variance(curve, ori)
        cols["orientation_bandwidth"][u] = orientation_bandwidth(curve, ori)
        cols["orthogonal_preferred_ratio"][u] = orthogonal_preferred_ratio(curve, ori)
        cols["preferred_orientation"][u] = preferred_orientation(curve, ori)
        cols["osi"][u] = orientation_selectivity_index(curve, ori)
    with np.errstate(invalid="ignore", divide="ignore"):
        cols["modulation_ratio"] = cols["max_ac"] / cols["max_dc"]
        cols["orientation_selective"] = np.where(np.isfinite(cols["circular_variance"]),
                                                 np.isfinite(cols["orientation_bandwidth"]).astype(float), np.nan)
        cols["cv_bandwidth_ratio"] = cols["circular_variance"] / cols["orientation_bandwidth"]
        cols["opr_cv_diff"] = cols["orthogonal_preferred_ratio"] - cols["circular_variance"]
    cols["responsive_orientation"] = (cols["max_dc"] > baseline + threshold).astype(float)
    conds = s.axes[0][1]
    curves["preferred_condition"] = [
        {"orientation": float(ori[pref_ori[u]]), "sf": conds[pref_cond[u]]["sf"],
         "radius": conds[pref_cond[u]]["radius"]} for u in range(n_units)]


def _spatial_frequency_properties(rates: np.ndarray, s, baseline: np.ndarray, threshold: float, cols: dict,
                                  curves: dict) -> None:
    """The spatial-frequency set, ``(units, radius, sf, orientation, phase)``: each unit's SF curve at its
    preferred radius, orientation and component (F0 - baseline or F1), plus Schiller's measures of the raw
    F0 curve, written into ``cols`` and ``curves``."""
    n_units = baseline.shape[0]
    sfs = s.axis_values("sf")
    dc, ac = f0_f1_last(rates)
    dcb = dc - baseline.reshape(-1, 1, 1, 1)
    curves["sf_axis"] = sfs
    curves["spatial_frequency"] = np.zeros((n_units, len(sfs)))
    peak = np.zeros(n_units)
    schiller = ("sf_bandwidth_ratio", "sf_selective")
    for u in range(n_units):
        (ri, _si, oi), comp = _preferred(dcb[u], ac[u])
        curve = (dcb if comp == 0 else ac)[u, ri, :, oi]
        curves["spatial_frequency"][u] = curve
        peak[u] = max(dcb[u].max(), ac[u].max())
        for k, v in spatial_frequency_tuning(curve, sfs).items():
            if k not in schiller:
                cols[k][u] = v
        # Schiller 1976 as Brain-Score scores it: the raw F0 curve (phase mean, baseline kept) at the
        # radius and orientation of the largest F0, and units whose largest F0 exceeds baseline + 5
        rj, _sj, oj = np.unravel_index(int(np.argmax(dc[u])), dc[u].shape)
        raw = spatial_frequency_tuning(dc[u, rj, :, oj], sfs)
        for k in schiller:
            cols[k][u] = raw[k]
    cols["responsive_spatial_frequency"] = (peak > threshold).astype(float)
    cols["responsive_spatial_frequency_f0"] = (dcb.reshape(n_units, -1).max(axis=1) > threshold).astype(float)


def _size_properties(rates: np.ndarray, s, baseline: np.ndarray, threshold: float, cols: dict,
                     curves: dict) -> None:
    """The size set, ``(units, radius, sf, orientation, phase)``: each unit's size curve at its preferred SF,
    orientation and component, and its surround measures, written into ``cols`` and ``curves``."""
    n_units = baseline.shape[0]
    radii = s.axis_values("radius")
    dc, ac = f0_f1_last(rates)
    dcb = dc - baseline.reshape(-1, 1, 1, 1)
    curves["size_axis"] = 2 * radii  # diameters
    curves["size"] = np.zeros((n_units, len(radii)))
    peak = np.zeros(n_units)
    for u in range(n_units):
        (_ri, si, oi), comp = _preferred(dcb[u], ac[u])
        curve = (dcb if comp == 0 else ac)[u, :, si, oi]
        curves["size"][u] = curve
        peak[u] = max(dcb[u].max(), ac[u].max())
        for k, v in size_tuning(curve, radii).items():
            cols[k][u] = v
    cols["responsive_size"] = (peak > threshold).astype(float)


def _contrast_properties(rates: np.ndarray, sets: dict, baseline: np.ndarray, cols: dict, curves: dict) -> None:
    """The contrast set, ``(units, condition, contrast, phase)`` where each unit's condition is its preferred
    orientation-set stimulus (``sets["contrast_index"]``): the Naka-Rushton fit of its F0 contrast curve."""
    n_units = baseline.shape[0]
    dc, _ac = f0_f1_last(rates)  # (units, condition, contrast)
    idx = sets["contrast_index"]  # unit -> its condition
    curve = dc[np.arange(n_units), idx]
    contrasts = sets["contrast"].axis_values("contrast")
    curves["contrast_axis"] = contrasts
    curves["contrast"] = curve
    for k, v in contrast_response_many(curve, contrasts, baseline).items():
        if k in cols:
            cols[k] = v


def f0_f1_last(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (F0) and first-harmonic amplitude (F1) over the last axis (the grating phases)."""
    from .responses import f0_f1

    return f0_f1(r, axis=-1)
