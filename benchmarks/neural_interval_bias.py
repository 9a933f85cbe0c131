"""Where a regression score sits in its bootstrap interval, and why (docs/neural.md, "Where a regression score
sits in its interval"). Three checks, each printing the numbers the docs quote:

``calibrate VAL TRAIN``: the worked example's population (60 random read-outs of the z-scored V4 features of
trained CORnet-Z, 4 repetitions, noise as large as the signal) on every digit of two ``ventralkit features``
folders (val: 359, train: 1,438). Each experiment records 359 random stimuli with fresh noise and scores ``pls``
as ``neural`` does (splits stratified by digit class, seed 0, 1,000 resamples). The planted value is each split's
fitted mappings' r on the digits not recorded (median over neuroids, mean over splits). Reports the score's bias
against it, the resamples' shift, coverage of the percentile, basic and BC intervals, the same for the paired
difference of two layers, and the fixed mappings scored on 36 / 360 fresh stimuli (no bootstrap: the bias of the
score itself).

``refit VAL``: the worked example itself (V4, ``pls``): the resamples of the kept predictions (as ``neural``)
against refitting every split per resample, with the drawn copies following their stimulus, or split as if they
were distinct stimuli.

``gaussian``: the calibration simulation of tests/test_neural_bootstrap.py (ridge, 300 stimuli, 20 neuroids) over
more seeds, with equally or unequally predictable neuroids.

    OMP_NUM_THREADS=1 python benchmarks/neural_interval_bias.py calibrate feats feats_train --experiments 400
    OMP_NUM_THREADS=1 python benchmarks/neural_interval_bias.py refit feats --resamples 200
    OMP_NUM_THREADS=1 python benchmarks/neural_interval_bias.py gaussian --seeds 1000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ventralkit.analysis.neural import bootstrap as B
from ventralkit.analysis.neural import metrics as M


def _load(folder: Path, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """(features, digit class) of a ``ventralkit features`` folder (the class is the image's parent folder)."""
    x = np.load(folder / f"{layer}.npy")
    classes = np.array([Path(p).parent.name for p in (folder / "images.txt").read_text().split()])
    return x.reshape(len(x), -1).astype(np.float64), classes


def _intervals(samples: np.ndarray, point: float) -> dict:
    """Percentile, basic and bias-corrected (BC) 95 % intervals of one score."""
    from scipy.stats import norm

    lo, hi = np.quantile(samples, [0.025, 0.975])
    z0 = norm.ppf(np.clip(np.mean(samples < point), 1e-3, 1 - 1e-3))
    bc = np.quantile(samples, norm.cdf([2 * z0 - 1.96, 2 * z0 + 1.96]))
    return {"percentile": (lo, hi), "basic": (2 * point - hi, 2 * point - lo), "BC": tuple(bc)}


def _score(x, y, y_all, x_all, rec, rest, groups, rs, rng) -> dict:
    """One layer in one experiment: score, planted value, resamples, and the fixed mappings on fresh stimuli."""
    held, per, planted, fresh36, fresh360 = [], [], [], [], []
    for train, test in M.regression_splits(len(rec), groups[rec], 10, seed=0):
        reg = M.make_pls(x.shape[1]).fit(x[train], y[train])
        pred = reg.predict(x[test])
        held.append(B.HeldOut(test, pred))
        per.append(M.pearson_columns(pred, y[test]))
        p_rest, y_rest = reg.predict(x_all[rest]), y_all[rest]
        planted.append(np.median(M.pearson_columns(p_rest, y_rest)))
        for size, into in ((36, fresh36), (360, fresh360)):
            pick = rng.choice(len(rest), size, replace=False)
            into.append(np.median(M.pearson_columns(p_rest[pick], y_rest[pick])) - planted[-1])
    return {"point": M.aggregate_splits(np.array(per)), "planted": float(np.mean(planted)),
            "samples": B.regression_resampler(held, y)(rs), "fresh36": np.mean(fresh36), "fresh360": np.mean(fresh360)}


def calibrate(val: Path, train: Path, experiments: int, layers: tuple[str, str]) -> None:
    gen = np.concatenate([_load(val, "V4.output-t0")[0], _load(train, "V4.output-t0")[0]])
    groups = np.concatenate([_load(val, "V4.output-t0")[1], _load(train, "V4.output-t0")[1]])
    xs = {name: np.concatenate([_load(val, name)[0], _load(train, name)[0]]) for name in layers}
    gen = (gen - gen.mean(0)) / (gen.std(0) + 1e-6)
    rng = np.random.default_rng(0)
    signal = gen @ (rng.normal(size=(gen.shape[1], 60)) / np.sqrt(gen.shape[1]))
    n_all, n = len(signal), len(_load(val, "V4.output-t0")[0])
    rs = B.draw_resamples(n, 1000, seed=0)
    found: dict = {name: [] for name in layers}
    for _ in range(experiments):
        y_all = (signal[None] + rng.normal(size=(4, *signal.shape)) * signal.std()).mean(0)
        rec = np.sort(rng.choice(n_all, n, replace=False))
        rest = np.setdiff1d(np.arange(n_all), rec)
        for name in layers:
            found[name].append(_score(xs[name][rec], y_all[rec], y_all, xs[name], rec, rest, groups, rs, rng))
    for name in layers:
        _report(name, found[name])
    _report(f"{layers[0]} - {layers[1]}", [
        {"point": a["point"] - b["point"], "planted": a["planted"] - b["planted"], "samples": a["samples"] - b["samples"]}
        for a, b in zip(*found.values())])


def _report(name: str, found: list[dict]) -> None:
    point = np.array([f["point"] for f in found])
    planted = np.array([f["planted"] for f in found])
    shift = np.array([f["samples"].mean() - f["point"] for f in found])
    sem = np.array([B.interval(f["samples"], len(f["samples"])).sem for f in found])
    print(f"{name}: {len(found)} experiments; score - planted {np.mean(point - planted):+.4f} "
          f"(spread {np.std(point - planted, ddof=1):.4f}); resampled mean - score {shift.mean():+.4f}; "
          f"bootstrap sem {sem.mean():.4f}")
    if "fresh36" in found[0]:
        print(f"  fixed mappings on fresh stimuli, median over neuroids - planted: 36 stimuli "
              f"{np.mean([f['fresh36'] for f in found]):+.4f}, 360 stimuli {np.mean([f['fresh360'] for f in found]):+.4f}")
    for kind in ("percentile", "basic", "BC"):
        bounds = np.array([_intervals(f["samples"], f["point"])[kind] for f in found])
        covered = np.mean((bounds[:, 0] <= planted) & (planted <= bounds[:, 1]))
        print(f"  {kind} interval covers the planted value: {covered:.3f}")


def refit(val: Path, resamples: int) -> None:
    x, groups = _load(val, "V4.output-t0")
    rng = np.random.default_rng(0)  # the worked example's make_population.py
    z = (x - x.mean(0)) / (x.std(0) + 1e-6)
    signal = z @ (rng.normal(size=(z.shape[1], 60)) / np.sqrt(z.shape[1]))
    y = (signal[None] + rng.normal(size=(4, *signal.shape)) * signal.std()).astype(np.float32).mean(0).astype(float)
    n = len(y)
    splits = M.regression_splits(n, groups, 10, seed=0)

    def score(rows_of) -> float:
        """The score with every split's training and test rows replaced by ``rows_of(rows)``."""
        per = []
        for train, test in splits:
            tr, te = rows_of(train), rows_of(test)
            per.append(M.pearson_columns(M.make_pls(x.shape[1]).fit(x[tr], y[tr]).predict(x[te]), y[te]))
        return M.aggregate_splits(np.array(per))

    point = score(lambda idx: idx)
    held = [B.HeldOut(te, M.make_pls(x.shape[1]).fit(x[tr], y[tr]).predict(x[te])) for tr, te in splits]
    rs = B.draw_resamples(n, resamples, seed=0)
    kept = B.regression_resampler(held, y)(rs)
    follow, distinct = [], []
    for w in rs.stimuli.astype(int):
        follow.append(score(lambda idx, w=w: np.repeat(idx, w[idx])))
        drawn = np.repeat(np.arange(n), w)
        per = [M.pearson_columns(M.make_pls(x.shape[1]).fit(x[drawn[tr]], y[drawn[tr]]).predict(x[drawn[te]]),
                                 y[drawn[te]]) for tr, te in M.regression_splits(n, groups[drawn], 10, seed=0)]
        distinct.append(M.aggregate_splits(np.array(per)))
    print(f"score {point:.4f}")
    for name, s in (("kept predictions (neural)", kept), ("refit, copies follow their stimulus", follow),
                    ("refit, drawn rows split as distinct", distinct)):
        s = np.asarray(s)
        lo, hi = np.quantile(s, [0.025, 0.975])
        print(f"  {name:38s} mean - score {s.mean() - point:+.4f}, 95 % [{lo:.4f}, {hi:.4f}]")


def gaussian(seeds: int) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_neural_bootstrap import _Ridge

    n, d, k, noise = 300, 8, 20, 2.0
    for mode, norms in (("equal", 2.0), ("unequal", np.linspace(0.5, 4.0, k))):
        beta = np.random.default_rng(99).normal(size=(d, k))
        beta *= norms / np.linalg.norm(beta, axis=0)
        rng, found = np.random.default_rng(2024), []
        for seed in range(seeds):
            signal = rng.normal(size=(n, d))
            y = signal @ beta + noise * rng.normal(size=(n, k))
            x = signal + rng.normal(size=(n, d))
            splits = M.regression_splits(n, None, 10, seed=seed)
            held: list = []
            point = M.aggregate_splits(M.regression_scores(x, y, lambda _: _Ridge(), splits, keep=held))
            samples = B.regression_resampler([B.HeldOut(t, p) for t, p in held], y)(B.draw_resamples(n, 1000, seed))
            planted = []
            for train, _ in splits:
                c = _Ridge().fit(x[train], y[train]).coef
                planted.append(np.median((c * beta).sum(0) / np.sqrt(2 * (c ** 2).sum(0) * ((beta ** 2).sum(0)
                                                                                          + noise ** 2))))
            found.append({"point": point, "planted": float(np.mean(planted)), "samples": samples})
        _report(f"gaussian, {mode}ly predictable neuroids", found)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("calibrate")
    c.add_argument("val", type=Path)
    c.add_argument("train", type=Path)
    c.add_argument("--experiments", type=int, default=400)
    c.add_argument("--layers", nargs=2, default=("V4.output-t0", "IT.output-t0"))
    r = sub.add_parser("refit")
    r.add_argument("val", type=Path)
    r.add_argument("--resamples", type=int, default=200)
    g = sub.add_parser("gaussian")
    g.add_argument("--seeds", type=int, default=1000)
    args = ap.parse_args()
    if args.what == "calibrate":
        calibrate(args.val, args.train, args.experiments, tuple(args.layers))
    elif args.what == "refit":
        refit(args.val, args.resamples)
    else:
        gaussian(args.seeds)


if __name__ == "__main__":
    main()
