"""Brain-Score's published region-to-layer commitments for torchvision and timm models.

Brain-Score's model plugins (the ``brain-score/vision`` repository, ``brainscore_vision/models/<plugin>/
region_layer_map/<identifier>.json``) record, for each model it scores, which layer it maps to V1, V2, V4
and IT (chosen by Brain-Score's layer selection on its public benchmarks, for the plugin's weights). Where a
plugin builds a plain torchvision or timm model (no weights of its own, no changed layers), its map names
the same modules as ``torchvision:NAME`` / ``timm:NAME`` here, so ventralkit uses it as the model's areas.
``brainscore_commitments.json`` beside this file holds each map with its plugin, file and commit;
docs/reference/brainscore_commitments.md lists them.

A commitment was chosen for particular weights (e.g. ResNet-50's ``IMAGENET1K_V1`` and ``IMAGENET1K_V2``
have different maps): weights with a map of their own get it; other weights of the same architecture, and
random initialisation, get the map of the library's default weights (else the first listed), and the
provenance says which weights the map was chosen for.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

TABLE = Path(__file__).with_name("brainscore_commitments.json")


@functools.lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(TABLE.read_text(encoding="utf-8"))


def published_commitments() -> list[dict]:
    """Every stored commitment (source, model, weights, areas, plugin, file, commit)."""
    return [dict(row) for row in _table()["commitments"]]


def published_commitment(source: str, model: str, weights: str | None,
                         default_weights: str | None = None) -> dict | None:
    """The commitment for ``source:model`` with these weights (see the module docstring), or None.

    The result carries ``areas``, ``plugin``, ``file``, ``commit``, the ``weights`` the map was chosen for,
    ``exact`` (whether those are the weights loaded) and the Brain-Score snapshot it was read from."""
    rows = [r for r in _table()["commitments"] if r["source"] == source and r["model"] == model]
    if not rows:
        return None
    chosen = (next((r for r in rows if r["weights"] == weights), None)
              or next((r for r in rows if r["weights"] == default_weights), None) or rows[0])
    return {**chosen, "areas": dict(chosen["areas"]), "exact": chosen["weights"] == weights,
            "repository": _table()["repository"], "snapshot": _table()["snapshot"]}
