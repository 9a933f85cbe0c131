"""Paired comparisons of layers and models (issue 24 item 2): the tests and corrections by their definitions, and
``ventralkit neural --features A B`` / ``ventralkit neural compare OUT1 OUT2`` end to end, including the refusals
(outputs of other stimuli, metrics or resamples: one line, exit 2, nothing written)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.stats import t as student

from ventralkit.analysis.neural.compare_stats import Candidate, adjust, compare_candidates, paired_difference

N, K = 120, 16


def test_benjamini_hochberg_and_bonferroni_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    # BH: sorted 0.005 0.01 0.03 0.04 (m = 4) -> 0.02 0.02 0.04 0.04, then each the smallest of those after it
    assert np.allclose(adjust(p, "fdr"), [0.02, 0.04, 0.04, 0.02, np.nan], equal_nan=True)
    assert np.allclose(adjust(p, "bonferroni"), [0.04, 0.16, 0.12, 0.02, np.nan], equal_nan=True)
    assert np.allclose(adjust(p, "none"), p, equal_nan=True)
    rng = np.random.default_rng(0)
    for _ in range(50):  # adjusted <= q is the step-up rule: every p up to the largest p_(k) <= q k / m
        ps = np.concatenate([rng.uniform(0, 0.02, 5), rng.uniform(0, 1, 15)])
        q = 0.05
        order = np.sort(ps)
        passing = np.nonzero(order <= q * np.arange(1, 21) / 20)[0]
        cut = order[passing.max()] if passing.size else -1
        assert set(np.nonzero(adjust(ps, "fdr") <= q)[0]) == set(np.nonzero(ps <= cut)[0])


def test_paired_test_variants_by_their_definitions():
    d = np.array([-1.0, 1.0, 2.0, 3.0])  # 4 resampled differences
    boot = {side: paired_difference(1.5, d, 10, "bootstrap", side).p for side in ("two-sided", "greater", "less")}
    assert boot == pytest.approx({"two-sided": 2 * 2 / 5, "greater": 2 / 5, "less": 4 / 5})  # (k + 1) / (B + 1)
    rng = np.random.default_rng(1)
    samples = 0.3 + 0.1 * rng.normal(size=500)
    r = paired_difference(0.25, samples, 40, "t-test")
    se = np.std(samples, ddof=1) * np.sqrt(40 / 39)
    assert r.sem == pytest.approx(se) and r.dof == 39 and r.t == pytest.approx(0.25 / se)
    assert r.p == pytest.approx(2 * student.sf(0.25 / se, 39))
    assert paired_difference(0.25, samples, 40, "t-test", "greater").p == pytest.approx(student.sf(0.25 / se, 39))
    assert paired_difference(0.25, samples, 40, "t-test", "less").p == pytest.approx(student.cdf(0.25 / se, 39))
    assert (r.ci_low, r.ci_high) == pytest.approx(tuple(np.quantile(samples, [0.025, 0.975])))


def test_candidates_tested_in_families_against_zero_and_the_ceiling():
    rng = np.random.default_rng(2)
    shared = rng.normal(size=1000)  # the same resamples move every score together (paired)
    good = Candidate("good", 0.8, 0.8 + 0.05 * shared + 0.01 * rng.normal(size=1000), ceiling=0.9,
                     ceiling_samples=0.9 + 0.02 * rng.normal(size=1000))
    close = Candidate("close", 0.79, 0.79 + 0.05 * shared + 0.01 * rng.normal(size=1000), ceiling=0.9)
    null = Candidate("null", 0.01, 0.01 + 0.05 * rng.normal(size=1000), ceiling=0.9)
    rows = compare_candidates([good, close, null], 100, "pls")
    kinds = [r["kind"] for r in rows]
    assert kinds == ["pair"] * 3 + ["above 0"] * 3 + ["below ceiling"] * 3
    sig = {(r["kind"], r["a"], r["b"]): r["significant"] for r in rows}
    assert not sig[("pair", "good", "close")] and sig[("pair", "good", "null")] and sig[("pair", "close", "null")]
    assert sig[("above 0", "good", "0")] and not sig[("above 0", "null", "0")]
    assert sig[("below ceiling", "good", "lower noise ceiling")]  # 0.8 vs 0.9 with a resampled ceiling
    # paired: the shared resampling noise cancels in the difference, so its interval is narrower than either's
    pair = next(r for r in rows if r["a"] == "good" and r["b"] == "close")
    assert pair["sem"] < 0.3 * np.std(good.samples)


# --------------------------------------------------------------------------- the command line, end to end


def _features(folder, layers, names):
    folder.mkdir(parents=True)
    for layer, arr in layers.items():
        np.save(folder / f"{layer}-t0.npy", arr.astype(np.float32))
    (folder / "images.txt").write_text("".join(f"/data/stim/{n}\n" for n in names))


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Two models on the same 120 stimuli: A holds the layer that generated the responses, B a noisy copy of it."""
    from ventralkit.cli import main

    root = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(3)
    names = [f"img{i:03d}.png" for i in range(N)]
    base = {"early": rng.normal(size=(N, 30)), "middle": rng.normal(size=(N, 80)), "late": rng.normal(size=(N, 200))}
    w = rng.normal(size=(80, K)) / np.sqrt(80)
    np.save(root / "resp.npy", (base["middle"] @ w)[None] + 0.5 * rng.normal(size=(4, N, K)))
    _features(root / "A", base, names)
    _features(root / "B", {k: v + 0.7 * rng.normal(size=v.shape) for k, v in base.items()}, names)
    common = ["--responses", str(root / "resp.npy"), "--bootstrap", "300", "--no_progress"]
    assert main(["neural", "--features", str(root / "A"), str(root / "B"), "--metrics", "pls", "rdm",
                 "-o", str(root / "both"), *common]) == 0
    return root, common


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_two_models_in_one_call_then_compared_again_from_their_folders(scored, cli):
    root, _ = scored
    both = root / "both"
    for model in ("A", "B"):
        scores = _csv(both / model / "scores.csv")
        assert list(scores[0]) == ["layer", "metric", "raw", "ceiling", "score", "ci_low", "ci_high", "sem", "note"]
        middle = next(r for r in scores if r["layer"] == "middle-t0" and r["metric"] == "pls")
        assert float(middle["ci_low"]) <= float(middle["raw"]) <= float(middle["ci_high"]) and float(middle["sem"]) > 0
        layers = _csv(both / model / "comparisons.csv")  # one output: its layers against each other
        assert {r["scope"] for r in layers if r["kind"] == "pair"} == {"layers"}
        assert any(r["a"] == "early-t0" and r["b"] == "middle-t0" and r["significant"] == "yes" for r in layers)
        run = json.loads((both / model / "run.json").read_text())
        assert run["options"]["bootstrap"]["resamples"] == 300
        assert run["options"]["ceiling_convention"]["name"] == "r2_over_c"
    rows = _csv(both / "comparisons.csv")
    pls = {(r["a"], r["b"]): r for r in rows if r["metric"] == "pls" and r["kind"] == "pair"}
    between = pls[("A:middle-t0", "B:middle-t0")]
    assert between["scope"] == "models" and between["significant"] == "yes" and float(between["difference"]) > 0
    assert pls[("A:early-t0", "B:early-t0")]["significant"] == "no"  # two unrelated layers: no difference
    assert (both / "comparison.png").stat().st_size > 10_000
    code, out, err = cli("neural", "compare", both / "A", both / "B", "-o", root / "again", "--no_figure")
    assert code == 0, err
    assert "A:middle-t0" in out and _csv(root / "again" / "comparisons.csv") == rows
    code, _, _ = cli("neural", "compare", both / "A", both / "B", "-o", root / "bonf", "--correction", "bonferroni",
                     "--test", "bootstrap", "--no_figure")
    assert code == 0 and {r["correction"] for r in _csv(root / "bonf" / "comparisons.csv")} == {"bonferroni"}


@pytest.mark.parametrize("case, extra, says", [
    ("metrics", ["--metrics", "pls"], "different metrics"),
    ("seed", ["--metrics", "pls", "rdm", "--seed", "1"], "resampled differently"),
    ("none", ["--metrics", "pls", "rdm", "--bootstrap", "0"], "no bootstrap.npz"),
    ("subset", ["--metrics", "pls", "rdm"], "different stimuli"),
])
def test_outputs_that_cannot_be_paired_are_refused_in_one_line(scored, cli, case, extra, says):
    root, _ = scored
    responses = root / "resp.npy"
    if case == "subset":  # the first 100 stimuli only, named by --stimuli
        responses = root / "resp100.npy"
        np.save(responses, np.load(root / "resp.npy")[:, :100])
        (root / "names100.txt").write_text("".join(f"img{i:03d}.png\n" for i in range(100)))
        extra = [*extra, "--stimuli", root / "names100.txt"]
    bootstrap = [] if "--bootstrap" in extra else ["--bootstrap", "300"]
    code, _, err = cli("neural", "--features", root / "B", "--responses", responses, *bootstrap, *extra,
                       "--no_progress", "--no_figure", "-o", root / case)
    assert code == 0, err
    target = root / f"compared-{case}"
    code, _, err = cli("neural", "compare", root / "both" / "A", root / case, "-o", target)
    assert code == 2 and says in err and err.strip().count("\n") == 0, err
    assert not target.exists()


@pytest.mark.parametrize("argv, says", [
    (["neural", "compare", "X", "-o", "OUT"], "at least 2 output folders"),
    (["neural", "compare", "X", "Y"], "needs -o DIR"),
    (["neural", "--features", "X", "-o", "OUT"], "give --responses FILE"),
    (["neural", "compare", "X", "Y", "-o", "OUT", "--responses", "r.npy"], "reads finished outputs"),
    (["neural", "--features", "X", "--responses", "r.npy", "-o", "OUT", "--bootstrap", "1"], "at least 2"),
    (["neural", "--features", "X", "--responses", "r.npy", "-o", "OUT", "--alpha", "2"], "between 0 and 1"),
])
def test_bad_comparison_flags_are_one_line(tmp_path, cli, argv, says):
    code, _, err = cli(*[a if a not in ("X", "Y", "OUT", "r.npy") else tmp_path / a for a in argv])
    assert code == 2 and says in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "OUT").exists()
