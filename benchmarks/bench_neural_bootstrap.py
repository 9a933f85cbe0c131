"""What 1,000 bootstrap resamples add to one ``pls`` score (issue 24: at most 5x one score).

``neural_fit(metrics=("pls",))`` on N stimuli x D features (a float32 ``.npy`` on disk, as ``ventralkit
features`` writes; ``bench_neural.make_data``'s planted population, 4 repetitions so the split-half ceiling
is computed and resampled too), once without and once with ``bootstrap=1000``, alternately, ``--repeats``
times each, in one process. The resamples reuse what the fit computed: each split's held-out predictions
are kept and only the held-out stimuli are re-weighted (a weighted Pearson r per neuroid and split, then
the median and mean), so no PLS is refitted; the ceiling's halves are re-weighted likewise. The extra
time of the bootstrap is the difference of the two medians; the scores are checked to be identical.

    OMP_NUM_THREADS=2 python benchmarks/bench_neural_bootstrap.py --n 2000 --d 50000 --k 200 --write
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def timed_fit(x, reps, resamples: int) -> tuple[float, object]:
    from ventralkit.analysis.neural import neural_fit

    t0 = time.perf_counter()
    res = neural_fit({"layer": x}, reps, metrics=("pls",), seed=1, bootstrap=resamples)
    return time.perf_counter() - t0, res


class Stopwatch:
    """Seconds spent inside the bootstrap's own steps: drawing the resamples, the score's resampler and the
    ceiling's (wrapped where ``fit`` and the registry look them up), so the bootstrap's cost is measured directly,
    not only as the difference of two runs on a shared machine."""

    def __init__(self):
        import dataclasses

        from ventralkit.analysis.neural import bootstrap as B
        from ventralkit.analysis.neural import registry as R

        self.seconds = 0.0
        self.restore = [(B, "draw_resamples", B.draw_resamples), (B, "regression_resampler", B.regression_resampler)]
        B.draw_resamples = self.timed(B.draw_resamples)
        regression_resampler = B.regression_resampler
        B.regression_resampler = lambda *a, **k: self.timed(regression_resampler(*a, **k))
        pls = R.get_metric("pls")
        self.metric = pls
        R.register_metric(dataclasses.replace(pls, ceiling_resample=self.timed(pls.ceiling_resample)), replace=True)

    def timed(self, fn):
        def call(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.seconds += time.perf_counter() - t0
        return call

    def close(self):
        from ventralkit.analysis.neural import registry as R

        for module, name, fn in self.restore:
            setattr(module, name, fn)
        R.register_metric(self.metric, replace=True)


def measure(folder: Path, resamples: int, repeats: int) -> dict:
    x = np.load(folder / "features.npy", mmap_mode="r")
    reps = np.load(folder / "responses.npy")
    timed_fit(np.asarray(x[:120, :200]), reps[:, :120, :20], 10)  # imports (scikit-learn) outside the timings
    plain, boot, inside = [], [], []
    for _ in range(repeats):  # alternately, so that a change in the machine's load reaches both
        seconds, score = timed_fit(x, reps, 0)
        plain.append(seconds)
        watch = Stopwatch()
        try:
            seconds, result = timed_fit(x, reps, resamples)
        finally:
            watch.close()
        boot.append(seconds)
        inside.append(watch.seconds)
        assert result.value("layer", "pls") == score.value("layer", "pls")  # the point score is untouched
    row = result.rows[0]
    return {"plain": plain, "boot": boot, "inside": inside, "raw": row["raw"], "ci": (row["ci_low"], row["ci_high"]),
            "sem": row["sem"], "load": os.getloadavg()}


def report(opts, m: dict) -> str:
    one, with_boot, inside = float(np.median(m["plain"])), float(np.median(m["boot"])), float(np.median(m["inside"]))
    extra = with_boot - one
    lines = [
        f"### neural bootstrap: {opts.resamples} resamples of pls at N={opts.n}, D={opts.d}, K={opts.k}, 10 splits "
        f"({platform.machine()}, 2 CPU cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
        f"{datetime.date.today().isoformat()})",
        "",
        f"`benchmarks/bench_neural_bootstrap.py --n {opts.n} --d {opts.d} --k {opts.k} --repeats {opts.repeats}`: "
        "`neural_fit` without and with the bootstrap, alternately in one process (features a float32 .npy on disk, "
        "4 repetitions: the split-half ceiling is computed and resampled too). No PLS is refitted: each split's "
        "held-out predictions are kept and only the held-out stimuli are re-weighted. Load average at the end: "
        + ", ".join(f"{v:.1f}" for v in m["load"]) + ".",
        "",
        "| | seconds (each run) | median |",
        "|---|---|---:|",
        f"| one score (`bootstrap=0`) | {', '.join(f'{s:.1f}' for s in m['plain'])} | {one:.1f} |",
        f"| the score with {opts.resamples} resamples | {', '.join(f'{s:.1f}' for s in m['boot'])} | {with_boot:.1f} |",
        f"| the resamples, timed inside (drawing, score and ceiling resamplers) | "
        f"{', '.join(f'{s:.1f}' for s in m['inside'])} | {inside:.1f} |",
        f"| the resamples, as the difference of the medians | | {extra:.1f} |",
        "",
        f"The {opts.resamples} resamples cost **{inside / one:.2f}x one score** timed inside ({extra / one:.2f}x as the "
        "difference of the two runs; required: at most 5x); refitting PLS "
        f"in every resample would cost about {opts.resamples}x. Score {m['raw']:.4f}, 95 % interval "
        f"[{m['ci'][0]:.4f}, {m['ci'][1]:.4f}], standard error {m['sem']:.4f}; the point score is the same with and "
        "without the bootstrap.",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--d", type=int, default=50000)
    p.add_argument("--k", type=int, default=200)
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    opts = p.parse_args()
    from bench_neural import make_data

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        make_data(Path(tmp), opts.n, opts.d, opts.k)
        print(f"data: N={opts.n} D={opts.d} K={opts.k}, {time.perf_counter() - t0:.0f} s to write", flush=True)
        m = measure(Path(tmp), opts.resamples, opts.repeats)
    text = report(opts, m)
    print(text)
    if opts.write:
        with (HERE / "RESULTS.md").open("a") as fh:
            fh.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
