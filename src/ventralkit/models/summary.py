"""A text table of registered models: name, parameters, input size, output shape, brain areas."""

from __future__ import annotations

import torch

from .registry import count_parameters, create_model, list_models


def model_rows(pattern: str = "*", with_shapes: bool = False) -> list[dict]:
    rows = []
    for name in list_models(pattern):
        model = create_model(name).eval()
        info = model.info
        row = {
            "name": name,
            "params": count_parameters(model),
            "input": f"{info.input_size}x{info.input_size}",
            "areas": ", ".join(f"{a}:{info.time_steps.get(a, 1)}" for a in info.areas if a in info.time_steps)
            or ", ".join(info.areas),
            "description": info.description,
        }
        if with_shapes:
            with torch.no_grad():
                out = model(torch.zeros(1, 3, info.input_size, info.input_size))
            out = out["logits"] if isinstance(out, dict) else out
            row["output"] = "x".join(map(str, out.shape))
        rows.append(row)
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
