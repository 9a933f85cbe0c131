"""A text table of registered models: name, parameters, input size, output shape, brain areas.

``ventralkit models`` reads the table from ``model_table.json`` beside this file, so that listing models
needs neither torch nor building ~30 networks (7 s). The file is written by

    python -m ventralkit.models.summary

and a test checks it against the registry (names, metadata and parameter counts of the built models);
re-run the command after registering or changing a model.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

TABLE_FILE = Path(__file__).with_name("model_table.json")


def describe_model(name: str) -> dict:
    """One row of the table from the built model: on the meta device (no memory, no initialisation) when the
    builder allows it, else on the CPU (some V1 front ends compute their filters with ops meta lacks)."""
    import torch

    from .registry import build_model, count_parameters

    try:
        with torch.device("meta"):
            model = build_model(name)
    except (NotImplementedError, RuntimeError):
        model = build_model(name)
    info = model.info
    return {
        "name": name,
        "params": count_parameters(model),
        "input": f"{info.input_size}x{info.input_size}",
        "areas": ", ".join(f"{a}:{info.time_steps.get(a, 1)}" for a in info.areas if a in info.time_steps)
        or ", ".join(info.areas),
        "description": info.description,
    }


def computed_rows(pattern: str = "*") -> list[dict]:
    """The rows of every registered model matching ``pattern``, built now (imports torch)."""
    from .registry import list_models

    return [describe_model(name) for name in list_models(pattern)]


def stored_rows(pattern: str = "*") -> list[dict] | None:
    """The rows of ``model_table.json`` matching ``pattern`` (None if the file is missing)."""
    try:
        rows = json.loads(TABLE_FILE.read_text())["models"]
    except (OSError, ValueError, KeyError):
        return None
    return [r for r in rows if fnmatch.fnmatchcase(r["name"], pattern)]


def model_rows(pattern: str = "*", with_shapes: bool = False) -> list[dict]:
    """Stored rows (no torch); ``with_shapes`` adds the output shape of one forward pass of each model."""
    rows = stored_rows(pattern)
    if rows is None:
        rows = computed_rows(pattern)
    if with_shapes:
        import torch

        from .registry import build_model

        for row in rows:
            model = build_model(row["name"]).eval()
            size = model.info.input_size
            with torch.no_grad():
                out = model(torch.zeros(1, 3, size, size))
            out = out["logits"] if isinstance(out, dict) else out
            row["output"] = "x".join(map(str, out.shape))
    return rows


def model_table(pattern: str = "*", with_shapes: bool = False) -> str:
    rows = model_rows(pattern, with_shapes)
    if not rows:
        return f"no model matches {pattern!r}"
    cols = ["name", "params", "input"] + (["output"] if with_shapes else []) + ["areas (steps)", "description"]
    keys = ["name", "params", "input"] + (["output"] if with_shapes else []) + ["areas", "description"]
    cells = [[f"{r[k]:,}" if k == "params" else str(r[k]) for k in keys] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def write_table(path: Path = TABLE_FILE) -> Path:
    """Rewrite ``model_table.json`` from the registry."""
    from ..files import write_json

    return write_json(path, {"generated_by": "python -m ventralkit.models.summary", "models": computed_rows()})


if __name__ == "__main__":
    print(f"wrote {write_table()}")
