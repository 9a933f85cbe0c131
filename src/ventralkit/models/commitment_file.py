"""Commitment files: which layer and time step of a model stands for each recorded brain area, as a JSON file.

``models.commitments`` holds what a model commits to by construction (its registry entry: CORnet-S's
``V4 -> V4.output``, time steps 0..3). A commitment *file* holds a choice made on data (``ventralkit neural
--commit`` picks, per area, the layer x time step that predicts the recordings best on one part of the
stimuli) or by hand, in the same terms: area -> ``AreaCommitment(module, (time_step,))``. ``features --areas``,
``neural --areas`` and the Brain-Score adapter read it through ``read_commitments``, so a file means the same
thing to all three.

The format (one JSON object; nothing else is accepted)::

    {"areas": {"IT": {"layer": "IT.output", "time_step": 1},
               "V4": {"layer": "V4.output", "time_step": null}},
     "provenance": {...}}

``layer`` is a module name (``named_modules()``), ``time_step`` which call of it (0 = first; a negative
number counts from the last; ``null`` = the last call, the registry's default). An area entry may carry
more keys (the scores it was chosen by); ``provenance`` says how the file was made. Both are kept, not
interpreted.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from ..files import write_json
from .commitments import AreaCommitment

FORMAT = "ventralkit-commitment/1"
#: ``time_step`` stored for ``null`` in the file: the last call (ventralkit's -1 = last)
LAST = -1
_STEP = re.compile(r"^(?P<module>.+)-t(?P<step>\d+)$")


@dataclass(frozen=True)
class Commitments:
    """Area -> ``AreaCommitment(module, (time_step,))`` read from one or more files; ``time_step`` -1 = the last call.

    ``entries`` keeps each area's whole entry (scores it was chosen by), ``provenance`` each file's.
    """

    areas: dict[str, AreaCommitment]
    entries: dict[str, dict] = field(default_factory=dict)
    provenance: dict[str, dict] = field(default_factory=dict)  # file -> its provenance
    source: dict[str, str] = field(default_factory=dict)  # area -> the file that names it

    def step(self, area: str) -> int:
        """The committed time step of ``area`` (-1: the last call)."""
        return self.areas[area].time_steps[0]

    def feature_name(self, area: str, last_step: int | None = None) -> str:
        """``<module>-t<k>``; the last call needs ``last_step`` (the module's last time step) to be named."""
        c = self.areas[area]
        step = c.time_steps[0]
        if step < 0:
            if last_step is None:
                raise ValueError(f"{area}: the last time step of {c.module} is not known here")
            step = last_step + 1 + step
        return f"{c.module}-t{step}"


def split_feature_name(name: str) -> tuple[str, int | None]:
    """``"V4.output-t3"`` -> ``("V4.output", 3)``; a name without ``-t<k>`` -> ``(name, None)``."""
    m = _STEP.match(name)
    return (m["module"], int(m["step"])) if m else (name, None)


# --------------------------------------------------------------------------- reading


def read_commitments(paths: str | Path | Iterable[str | Path], flag: str = "--areas") -> Commitments:
    """The areas of one or more commitment files, each checked; an area named by two files is an error.

    Every problem is one ``DataError`` line naming the flag and the file: no such file, not JSON, not the
    format above (what is wrong, where), or an area committed twice.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    areas: dict[str, AreaCommitment] = {}
    entries: dict[str, dict] = {}
    provenance: dict[str, dict] = {}
    source: dict[str, str] = {}
    for path in paths:
        data = _load_json(Path(path), flag)
        where = f"{flag} {path}"
        for area, entry in _area_entries(data, where).items():
            if area in areas:
                raise DataError(f"{where}: area {area!r} is also committed in {source[area]}; give each area once")
            areas[area] = _parse_entry(area, entry, where)
            entries[area], source[area] = dict(entry), str(path)
        provenance[str(path)] = data.get("provenance") or {}
    return Commitments(areas, entries, provenance, source)


def _load_json(path: Path, flag: str) -> dict:
    if not path.is_file():
        raise DataError(f"{flag} {path}: no such file; give a commitment file (the commitment.json "
                        "`ventralkit neural --commit` writes)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{flag} {path}: not a JSON file ({err}); see docs/neural.md, 'Commitment file'") from None
    if not isinstance(data, dict):
        raise DataError(f"{flag} {path}: expected a JSON object with \"areas\", got {type(data).__name__}")
    return data


def _area_entries(data: dict, where: str) -> dict:
    areas = data.get("areas")
    if not isinstance(areas, dict) or not areas:
        raise DataError(f"{where}: no \"areas\" object; write {{\"areas\": {{\"IT\": {{\"layer\": \"IT.output\", "
                        "\"time_step\": null}}}}")
    for area in areas:
        if not area.strip():
            raise DataError(f"{where}: an area has an empty name")
    return areas


def _parse_entry(area: str, entry, where: str) -> AreaCommitment:
    if not isinstance(entry, dict):
        raise DataError(f"{where}: area {area!r} must be an object with \"layer\" and \"time_step\", "
                        f"got {json.dumps(entry)}")
    layer = entry.get("layer")
    if not isinstance(layer, str) or not layer.strip():
        raise DataError(f"{where}: area {area!r} has no \"layer\" (a module name such as \"IT.output\")")
    if "time_step" not in entry:
        raise DataError(f"{where}: area {area!r} has no \"time_step\"; give the call index (0 = first) or null "
                        "for the last")
    step = entry["time_step"]
    if step is None:
        step = LAST
    if isinstance(step, bool) or not isinstance(step, int):
        raise DataError(f"{where}: area {area!r} has time_step {json.dumps(step)}; give an integer "
                        "(0 = first call, -1 = last) or null")
    return AreaCommitment(layer, (int(step),))


# --------------------------------------------------------------------------- checks against a model or features


def close_names(name: str, candidates: Iterable[str], n: int = 5) -> str:
    """The candidates most like ``name`` (difflib), or the first few when none is close: for a one-line error."""
    candidates = list(dict.fromkeys(candidates))
    close = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
    if close:
        return "close names: " + ", ".join(close)
    more = f" ... ({len(candidates)} in all)" if len(candidates) > n else ""
    return "it has: " + (", ".join(candidates[:n]) + more if candidates else "none")


def check_modules(commitments: Commitments, modules: Iterable[str], what: str) -> None:
    """Every committed layer must be a module of the model (``what`` names it); else one line with close names."""
    modules = [m for m in modules if m]
    known = set(modules)
    for area, c in commitments.areas.items():
        if c.module not in known:
            raise DataError(f"--areas {commitments.source.get(area, '')}: area {area!r} commits layer "
                            f"{c.module!r}, which {what} lacks; {close_names(c.module, modules)}")


def check_steps(commitments: Commitments, bounds: Mapping[str, int], what: str) -> None:
    """A committed time step must be one the module runs at; ``bounds``: module -> how many times it runs (the
    modules it knows; others are not checked here)."""
    for area, c in commitments.areas.items():
        fires, step = bounds.get(c.module), c.time_steps[0]
        if fires is not None and not -fires <= step < fires:
            raise DataError(f"--areas {commitments.source.get(area, '')}: area {area!r} commits {c.module} at time "
                            f"step {step}, but in {what} it runs at steps 0..{fires - 1} (null: the last)")


def committed_features(commitments: Commitments, features: Iterable[str], what: str,
                       areas: Iterable[str] | None = None) -> dict[str, str]:
    """Area -> the feature name (``<module>-t<k>``) it commits to, each checked to be among ``features``.

    A time step of -1 (``null``) is the module's last one in ``features``. An absent layer or time step is one
    ``DataError`` line naming the file and listing the close names.
    """
    features = list(features)
    steps: dict[str, list[int]] = {}
    for name in features:
        module, step = split_feature_name(name)
        steps.setdefault(module, []).append(0 if step is None else step)
    chosen = list(commitments.areas) if areas is None else list(areas)
    out = {}
    for area in chosen:
        if area not in commitments.areas:
            raise DataError(f"--area {area}: not in the commitment file(s); they commit "
                            + ", ".join(commitments.areas))
        c, where = commitments.areas[area], f"--areas {commitments.source.get(area, '')}"
        if c.module not in steps:
            modules = list(steps)
            raise DataError(f"{where}: area {area!r} commits layer {c.module!r}, which {what} lacks; "
                            f"{close_names(c.module, modules)}")
        have = sorted(steps[c.module])
        step = c.time_steps[0]
        step = have[-1] + 1 + step if step < 0 else step
        name = f"{c.module}-t{step}"
        if name not in features:
            raise DataError(f"{where}: area {area!r} commits {c.module} at time step {c.time_steps[0]}, but {what} "
                            f"holds it at steps {', '.join(map(str, have))}")
        out[area] = name
    return out


# --------------------------------------------------------------------------- writing


def write_commitments(path: str | Path, entries: Mapping[str, Mapping], provenance: Mapping) -> Path:
    """Write a commitment file (atomically): ``entries[area]`` holds at least ``layer`` and ``time_step``."""
    for area, entry in entries.items():
        _parse_entry(area, dict(entry), str(path))  # never write a file that would not read back
    return write_json(Path(path), {"format": FORMAT, "areas": {a: dict(e) for a, e in entries.items()},
                                   "provenance": dict(provenance)})
