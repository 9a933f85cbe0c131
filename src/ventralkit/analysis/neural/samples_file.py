"""bootstrap.npz: a ``ventralkit neural`` output's resampled scores, for comparisons made later.

``ventralkit neural compare OUT1 OUT2`` tests differences between models from these files alone, so each
holds what a paired test needs: the B resampled raw scores of every layer x metric (and the point
estimates), the lower noise ceiling of every metric on the raw score's scale with its resamples, and
fingerprints of what was resampled: the stimuli (their image names, in scored order), the responses, and
the resamples themselves. Two outputs are paired only when all three agree.

The file is a plain ``.npz`` (no pickled objects: reading it runs no code), written atomically.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...files import atomic_path
from .registry import get_metric

FILE = "bootstrap.npz"
FORMAT = 1


def stimuli_fingerprint(images, rows=None) -> str:
    """A short hash of the file names (not the folders) of the scored stimuli, in the order they were scored."""
    names = [Path(str(images[r])).name for r in (range(len(images)) if rows is None else rows)]
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def lower_ceilings(result) -> dict[str, tuple[float, float, np.ndarray | None]]:
    """Per metric: the lower and upper noise ceiling on the raw score's scale, and the lower one's resamples.

    The raw-scale ceiling is the raw score whose ceiled score would be 1 (``NeuralMetric.raw_ceiling``: sqrt of
    the split-half reliability for a regression under ``r2_over_c``). With subjects, the ``rdm`` metric's
    ceiling is rsatoolbox's leave-one-subject-out pair: lower and upper bound, not resampled."""
    convention = result.options.get("ceiling_convention", {}).get("name", "r2_over_c")
    rsa = result.options.get("rsa") or {}
    out = {}
    for m in result.metrics:
        metric = get_metric(m)
        if m == "rdm" and rsa.get("ceiling_lower") is not None:
            out[m] = (float(rsa["ceiling_lower"]), float(rsa.get("ceiling_upper") or math.nan), None)
            continue
        value = metric.raw_ceiling(result.ceilings.get(m, math.nan), convention)
        resampled = None
        if result.bootstrap is not None and np.isfinite(result.bootstrap.ceilings.get(m, np.nan)).any():
            resampled = np.array([metric.raw_ceiling(c, convention) for c in result.bootstrap.ceilings[m]])
        out[m] = (value, value, resampled)
    return out


def write_samples(result, out: Path, images=None, rows=None) -> Path:
    """OUT/bootstrap.npz from a ``neural_fit`` result made with ``bootstrap=N`` (``images``: the feature rows'
    image names, ``rows``: the feature row of each scored stimulus, for the stimuli's fingerprint)."""
    samples = result.bootstrap
    keys = list(samples.scores)
    ceilings = lower_ceilings(result)
    meta = {"format": FORMAT, "resamples": samples.resamples, "seed": samples.seed, "over": samples.over,
            "n_stimuli": samples.n_stimuli, "n_subjects": samples.n_subjects, "n_effective": samples.n_effective,
            "resamples_fingerprint": samples.fingerprint, "responses_fingerprint": samples.responses_fingerprint,
            "stimuli_fingerprint": stimuli_fingerprint(images, rows) if images is not None else "",
            "ceiling_convention": result.options.get("ceiling_convention", {}).get("name"),
            "metrics": result.metrics, "layers": result.layers}
    nan = np.full(samples.resamples, np.nan)
    arrays = {
        "meta": np.array(json.dumps(meta)),
        "rows": np.array([f"{layer}\t{metric}" for layer, metric in keys]),
        "estimates": np.array([result.value(layer, metric) for layer, metric in keys], dtype=np.float64),
        "scores": np.stack([samples.scores[k] for k in keys], axis=1) if keys else np.zeros((samples.resamples, 0)),
        "metrics": np.array(result.metrics),
        "ceiling_lower": np.array([ceilings[m][0] for m in result.metrics], dtype=np.float64),
        "ceiling_upper": np.array([ceilings[m][1] for m in result.metrics], dtype=np.float64),
        "ceiling_samples": np.stack([ceilings[m][2] if ceilings[m][2] is not None else nan for m in result.metrics],
                                    axis=1),
    }
    path = Path(out) / FILE
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return path


@dataclass
class SavedSamples:
    """One output's bootstrap.npz, read back: ``scores[(layer, metric)]`` (B,), ``estimates[(layer, metric)]``,
    ``ceilings[metric] = (lower, upper, lower's resamples or None)`` and ``meta`` (how it was resampled)."""

    folder: Path
    meta: dict
    scores: dict
    estimates: dict
    ceilings: dict

    @property
    def metrics(self) -> list[str]:
        return list(self.meta["metrics"])

    @property
    def layers(self) -> list[str]:
        return list(self.meta["layers"])


def read_samples(folder) -> SavedSamples:
    """bootstrap.npz of a ``ventralkit neural`` output folder; one line naming the folder when it is missing,
    unreadable or of another format."""
    folder = Path(folder)
    path = folder / FILE
    if not path.is_file():
        why = "not a folder" if not folder.is_dir() else f"no {FILE} in it"
        raise DataError(f"{folder}: {why}; give output folders of `ventralkit neural` scored with --bootstrap N "
                        "(the default 1000; --bootstrap 0 writes none)")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            keys = [tuple(r.split("\t")) for r in z["rows"].tolist()]
            scores = {k: z["scores"][:, i] for i, k in enumerate(keys)}
            estimates = {k: float(v) for k, v in zip(keys, z["estimates"])}
            cs = z["ceiling_samples"]
            ceilings = {m: (float(lo), float(hi), cs[:, i] if np.isfinite(cs[:, i]).any() else None)
                        for i, (m, lo, hi) in enumerate(zip(z["metrics"].tolist(), z["ceiling_lower"],
                                                             z["ceiling_upper"]))}
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{path}: cannot be read ({err}); score the folder again with ventralkit neural") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{path}: format {meta.get('format')!r}, this ventralkit reads {FORMAT}; score it again")
    return SavedSamples(folder, meta, scores, estimates, ceilings)
