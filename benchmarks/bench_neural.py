"""``neural_fit`` speed and memory against a straightforward scikit-learn loop, and agreement with Brain-Score.

speed: ``pls`` (PLSRegression(25, scale=False), 10 splits of 90/10, Pearson r per neuroid) on features
of N stimuli x D features (a float32 ``.npy`` on disk, as ``ventralkit features`` writes) and K
neuroids. The baseline fits PLSRegression on the raw N x D features in every split, as Brain-Score's
``pls`` does; ventralkit reads the features once into their N x N Gram matrix. Each variant runs in
its own process; wall time and peak RSS (``ru_maxrss``) of that process are reported, and the two
scores are checked to agree. ``--baseline_splits`` times fewer baseline splits (and scales the
time to 10) when the full loop would take too long.

    OMP_NUM_THREADS=2 python benchmarks/bench_neural.py speed --n 2000 --d 50000 --k 200 --write

agreement: the same data scored by ventralkit and by ``brainscore_vision.metrics`` (pls, ridge, rdm,
cka, internal_consistency) in a separate Python environment, because brainscore-vision pins numpy<2
(never install it next to ventralkit):

    python3 -m venv /tmp/bsvenv && /tmp/bsvenv/bin/pip install "numpy<2" "xarray<2022.6" "pandas<2" \\
        "scikit-learn<1.6" scipy tqdm requests boto3 netCDF4 pillow psutil result_caching
    /tmp/bsvenv/bin/pip install --no-deps brainscore-vision brainscore-core
    python benchmarks/bench_neural.py agreement --python /tmp/bsvenv/bin/python --write
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- data


def make_data(folder: Path, n: int, d: int, k: int, reps: int = 4, seed: int = 0) -> None:
    """features.npy (N x D float32, written in row blocks), responses.npy (R x N x K) from a planted map."""
    rng = np.random.default_rng(seed)
    x = np.lib.format.open_memmap(folder / "features.npy", mode="w+", dtype=np.float32, shape=(n, d))
    latent_w = rng.normal(size=(64, k))
    signal = np.zeros((n, k))
    mix = None
    for a in range(0, n, 256):
        b = min(n, a + 256)
        latent = rng.normal(size=(b - a, 64))
        if mix is None:
            mix = rng.normal(size=(64, d)).astype(np.float32) / 8
        x[a:b] = np.maximum(latent.astype(np.float32) @ mix + rng.normal(size=(b - a, d)).astype(np.float32), 0)
        signal[a:b] = latent @ latent_w
    x.flush()
    del x
    noise = rng.normal(size=(reps, n, k)) * signal.std()
    np.save(folder / "responses.npy", signal[None] + noise)
    np.save(folder / "groups.npy", np.arange(n) % 8)


# --------------------------------------------------------------------------- speed


def run_ventralkit(folder: Path, splits: int) -> dict:
    from ventralkit.analysis.neural import neural_fit

    x = np.load(folder / "features.npy", mmap_mode="r")
    y = np.load(folder / "responses.npy").mean(axis=0)
    t0 = time.perf_counter()
    res = neural_fit({"layer": x}, y, metrics=("pls",), splits=splits, seed=1)
    return {"seconds": time.perf_counter() - t0, "score": res.value("layer", "pls"), "splits": splits}


def run_sklearn(folder: Path, splits: int) -> dict:
    """The straightforward loop: PLSRegression on the raw features in each split."""
    from scipy.stats import pearsonr
    from sklearn.cross_decomposition import PLSRegression
    from sklearn.model_selection import ShuffleSplit

    x = np.load(folder / "features.npy")
    y = np.load(folder / "responses.npy").mean(axis=0)
    t0 = time.perf_counter()
    medians = []
    all_splits = list(ShuffleSplit(n_splits=10, train_size=0.9, random_state=1).split(x))
    for train, test in all_splits[:splits]:
        pred = PLSRegression(n_components=25, scale=False).fit(x[train], y[train]).predict(x[test])
        medians.append(np.median([pearsonr(pred[:, j], y[test, j])[0] for j in range(y.shape[1])]))
    return {"seconds": time.perf_counter() - t0, "score": float(np.mean(medians)), "splits": splits}


def child(variant: str, folder: str, splits: int) -> None:
    out = (run_ventralkit if variant == "ventralkit" else run_sklearn)(Path(folder), splits)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def spawn(args: list[str], python: str = sys.executable) -> dict:
    proc = subprocess.run([python, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def speed(opts) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        make_data(folder, opts.n, opts.d, opts.k)
        print(f"data: N={opts.n} D={opts.d} K={opts.k} ({opts.n * opts.d * 4 / 2**30:.2f} GiB float32 features), "
              f"{time.perf_counter() - t0:.0f} s to write")
        vk = spawn(["_child", "ventralkit", tmp, "10"])
        print(f"ventralkit: {vk}")
        if opts.only == "ventralkit":
            return
        sk = spawn(["_child", "sklearn", tmp, str(opts.baseline_splits)])
        print(f"sklearn loop: {sk}")
    sk_10 = sk["seconds"] * 10 / sk["splits"]
    vk_first = vk["score"]
    same = "same splits" if sk["splits"] == 10 else f"first {sk['splits']} of the 10 splits"
    scaled = "" if sk["splits"] == 10 else f" ({sk['seconds']:.1f} s for {sk['splits']} splits, x{10 / sk['splits']:g})"
    text = (
        f"### neural_fit pls: N={opts.n}, D={opts.d}, K={opts.k}, 10 splits "
        f"({platform.machine()}, 2 CPU cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
        f"{datetime.date.today().isoformat()})\n\n"
        "| variant | seconds (10 splits) | peak RSS (MB) | score |\n|---|---:|---:|---:|\n"
        f"| scikit-learn loop, PLSRegression on raw N x D | {sk_10:.1f}{scaled}"
        f" | {sk['peak_rss_mb']:.0f} | {sk['score']:.4f} ({same}) |\n"
        f"| ventralkit neural_fit (N x N Gram, memmap read once) | {vk['seconds']:.1f} | {vk['peak_rss_mb']:.0f} | "
        f"{vk_first:.4f} |\n\n"
        f"Speed-up **{sk_10 / vk['seconds']:.1f}x**, peak memory {sk['peak_rss_mb'] / vk['peak_rss_mb']:.1f}x lower. "
        "Each variant in its own process; the features are a float32 .npy on disk (page cache warm)."
    )
    print(text)
    if opts.write:
        with (HERE / "RESULTS.md").open("a") as fh:
            fh.write("\n" + text + "\n")


# --------------------------------------------------------------------------- agreement with Brain-Score

BRAINSCORE_SIDE = r'''
import json, sys, warnings
import numpy as np
warnings.filterwarnings("ignore")
from brainscore_core.supported_data_standards.brainio.assemblies import NeuroidAssembly
from brainscore_vision.metrics.regression_correlation.metric import (CrossRegressedCorrelation, pls_regression,
    ridge_regression, pearsonr_correlation)
from brainscore_vision.metrics.cka.metric import CKA
from brainscore_vision.metrics.rdm.metric import RDMMetric
from brainscore_vision.metrics.internal_consistency.ceiling import InternalConsistency

d = np.load(sys.argv[1])
x, reps, groups = d["features"].astype(np.float64), d["responses"], d["groups"]
y = reps.mean(axis=0)
n = x.shape[0]
ids = [f"s{i:05d}" for i in range(n)]
def asm(values, prefix):
    return NeuroidAssembly(values, coords={"stimulus_id": ("presentation", ids),
        "object_name": ("presentation", [str(g) for g in groups]),
        "neuroid_id": ("neuroid", [f"{prefix}{j:05d}" for j in range(values.shape[1])]),
        "region": ("neuroid", [prefix] * values.shape[1])},
        dims=["presentation", "neuroid"])
src, tgt = asm(x, "f"), asm(y, "n")
out = {}
for name, reg in (("pls", pls_regression), ("ridge", ridge_regression)):
    for strat in (None, "object_name"):
        m = CrossRegressedCorrelation(regression=reg(), correlation=pearsonr_correlation(),
                                      crossvalidation_kwargs=dict(stratification_coord=strat))
        out[f"{name}{'_stratified' if strat else ''}"] = float(m(src, tgt).values)
out["rdm"] = float(RDMMetric()(src, tgt).values)
out["cka"] = float(CKA()(src, tgt).values)
r, k = reps.shape[0], reps.shape[2]
rep_asm = NeuroidAssembly(reps.reshape(r * n, k), coords={
    "stimulus_id": ("presentation", ids * r), "repetition": ("presentation", np.repeat(np.arange(r), n)),
    "neuroid_id": ("neuroid", [f"n{j:05d}" for j in range(k)]), "region": ("neuroid", ["n"] * k)},
    dims=["presentation", "neuroid"])
out["ceiling"] = float(InternalConsistency()(rep_asm).values)
print("RESULT " + json.dumps(out))
'''


def agreement(opts) -> None:
    from ventralkit.analysis.neural import neural_fit

    rng = np.random.default_rng(0)
    n, d, k, r = opts.n, opts.d, opts.k, 4
    x = np.maximum(rng.normal(size=(n, 32)) @ rng.normal(size=(32, d)) + rng.normal(size=(n, d)), 0)
    reps = (x[:, :200] @ rng.normal(size=(200, k)) / 14)[None] + 1.5 * rng.normal(size=(r, n, k))
    groups = np.arange(n) % 8
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        np.savez(path, features=x, responses=reps, groups=groups)
        script = Path(tmp) / "bs.py"
        script.write_text(BRAINSCORE_SIDE)
        proc = subprocess.run([opts.python, str(script), str(path)], capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(proc.stderr[-3000:])
        bs = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
        version = subprocess.run([opts.python, "-c", "import importlib.metadata as m; print(m.version("
                                  "'brainscore-vision'), m.version('numpy'), m.version('scikit-learn'))"],
                                 capture_output=True, text=True).stdout.split()
    vk = {}
    res = neural_fit(x, reps, metrics=("pls", "ridge", "rdm", "cka"), seed=1)  # Brain-Score's random_state=1
    for m in ("pls", "ridge", "rdm", "cka"):
        vk[m] = res.value("features", m)
    vk["ceiling"] = res.ceilings["pls"]
    strat = neural_fit(x, reps, metrics=("pls", "ridge"), groups=groups, seed=1)
    vk["pls_stratified"], vk["ridge_stratified"] = strat.value("features", "pls"), strat.value("features", "ridge")
    tol = {"pls": 0.02, "ridge": 0.02, "pls_stratified": 0.02, "ridge_stratified": 0.02, "rdm": 1e-3, "cka": 1e-3,
           "ceiling": 0.02}
    lines = ["| quantity | Brain-Score | ventralkit | abs. difference | required |", "|---|---:|---:|---:|---:|"]
    ok = True
    for key in ("pls", "pls_stratified", "ridge", "ridge_stratified", "rdm", "cka", "ceiling"):
        diff = abs(bs[key] - vk[key])
        ok &= diff <= tol[key]
        lines.append(f"| {key} | {bs[key]:.6f} | {vk[key]:.6f} | {diff:.1e} | <= {tol[key]:g} |")
    text = (f"### neural_fit vs Brain-Score's own metrics: N={n}, D={d}, K={k}, 4 repetitions "
            f"(brainscore-vision {version[0] if version else '?'}, numpy {version[1] if len(version) > 1 else '?'}, "
            f"scikit-learn {version[2] if len(version) > 2 else '?'} in a separate venv; ventralkit on numpy "
            f"{np.__version__}; 2 CPU cores; {datetime.date.today().isoformat()})\n\n" + "\n".join(lines) +
            f"\n\n{'All within tolerance' if ok else 'OUT OF TOLERANCE'}; same splits (seed 1 = Brain-Score's "
            "random_state), same stimulus order.")
    print(text)
    if opts.write:
        with (HERE / "RESULTS.md").open("a") as fh:
            fh.write("\n" + text + "\n")
    if not ok:
        raise SystemExit(1)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--n", type=int, default=2000)
    s.add_argument("--d", type=int, default=50000)
    s.add_argument("--k", type=int, default=200)
    s.add_argument("--baseline_splits", type=int, default=10, help="baseline splits to time (scaled to 10)")
    s.add_argument("--only", choices=["ventralkit"], default=None, help="time only ventralkit (no table)")
    s.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    a = sub.add_parser("agreement")
    a.add_argument("--python", required=True, help="python of a venv with brainscore-vision installed")
    a.add_argument("--n", type=int, default=200)
    a.add_argument("--d", type=int, default=2000)
    a.add_argument("--k", type=int, default=40)
    a.add_argument("--write", action="store_true")
    opts = p.parse_args()
    speed(opts) if opts.what == "speed" else agreement(opts)


if __name__ == "__main__":
    main()
