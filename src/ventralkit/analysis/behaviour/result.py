"""What ``behaviour_fit`` returns: the scores, the per-image and per-subject tables and the facts of the run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: the scores table's row for the subjects' own shape bias (beside the model's)
HUMAN_SHAPE_BIAS = "shape_bias_human"


@dataclass
class BehaviourResult:
    """What ``behaviour_fit`` found: the scores, the per-image and per-subject tables, and the facts of the run."""

    scores: list[dict]  #: metric, score, ci_low, ci_high, ceiling, ceiled, ceiled_ci_low, ceiled_ci_high, note
    per_image: list[dict]
    per_subject: list[dict]
    info: dict  #: counts, options, how the decisions were made, per-split values
    figures: dict = field(default_factory=dict)  #: the numbers the figures draw

    def score(self, metric: str, key: str = "score") -> float:
        for row in self.scores:
            if row["metric"] == metric:
                return row[key]
        raise KeyError(metric)

    def table(self) -> str:
        """The scores as aligned text; ``--`` is a value that could not be computed (the note says why)."""
        fmt = lambda v: "     --" if v is None or not math.isfinite(v) else f"{v:7.3f}"  # noqa: E731
        width = max(len("metric"), *(len(r["metric"]) for r in self.scores))
        lines = [f"{'metric':<{width}}  {'score':>7}  {'95% CI':>17}  {'ceiling':>7}  {'ceiled':>7}"]
        for r in self.scores:
            ci = f"[{fmt(r['ci_low']).strip()}, {fmt(r['ci_high']).strip()}]"
            line = f"{r['metric']:<{width}}  {fmt(r['score'])}  {ci:>17}  {fmt(r['ceiling'])}  {fmt(r['ceiled'])}"
            lines.append(line + (f"  {r['note']}" if r.get("note") else ""))
        return "\n".join(lines)
