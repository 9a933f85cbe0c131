"""Behavioural trials in one format: one row per trial, checked on load, matched to the image files.

A trials CSV has a header and the columns

- ``stimulus``: the image shown (a file name, matched to the image folder by name, as ``ventralkit neural``
  matches stimuli to feature rows);
- ``subject``: who answered (any non-empty text);
- ``truth``: the correct label; ``choice``: the label the subject chose;
- optional ``distractor``: the other label of a two-way task (Rajalingham et al. 2018: the image's object
  against one distractor object); without it every task label was a possible answer;
- optional ``cue_shape`` and ``cue_texture`` (both or neither): the two cues of a cue-conflict image (Geirhos
  et al. 2019), for the shape bias;
- optional ``condition``: a manipulation level (Geirhos et al. 2021 report error consistency per condition
  and average them, as Brain-Score does).

The task's labels are every label the truth, distractor and cue columns name, or a list given explicitly.
Everything is checked before any model runs, and a problem is one line naming the file, the line and what to
do (``DataError``): missing columns, empty cells, a choice outside the task's labels, a distractor equal to
the truth, a choice that is neither option of a two-way trial, a stimulus with two different truths.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data.listing import index_by_file_name
from ...errors import DataError

REQUIRED_COLUMNS = ("stimulus", "subject", "truth", "choice")
OPTIONAL_COLUMNS = ("distractor", "cue_shape", "cue_texture", "condition")


@dataclass(frozen=True)
class Trials:
    """The trials of a behavioural experiment, as text arrays of one length (None: column absent)."""

    stimulus: np.ndarray
    subject: np.ndarray
    truth: np.ndarray
    choice: np.ndarray
    labels: tuple[str, ...]  #: the task's labels, sorted (numbers by value: "2" before "10")
    distractor: np.ndarray | None = None
    cue_shape: np.ndarray | None = None
    cue_texture: np.ndarray | None = None
    condition: np.ndarray | None = None
    source: str = "trials"  #: how to name the input in a message ("--trials FILE")

    def __len__(self) -> int:
        return len(self.stimulus)

    @property
    def stimuli(self) -> list[str]:
        """The distinct stimuli (one per file name), in order of first appearance."""
        first: dict[str, str] = {}
        for s in dict.fromkeys(self.stimulus.tolist()):
            first.setdefault(file_name(s), s)
        return list(first.values())

    def image_index(self) -> np.ndarray:
        """Each trial's position in ``stimuli`` (stimuli are told apart by file name)."""
        position = {file_name(s): i for i, s in enumerate(self.stimuli)}
        of = {s: position[file_name(s)] for s in dict.fromkeys(self.stimulus.tolist())}
        return np.array([of[s] for s in self.stimulus.tolist()], dtype=np.int64)

    @property
    def subjects(self) -> list[str]:
        """The distinct subjects, sorted (as Brain-Score orders them)."""
        return sorted(set(self.subject.tolist()))

    @property
    def has_cues(self) -> bool:
        return self.cue_shape is not None

    @property
    def two_way(self) -> bool:
        """Each trial offered the truth and one distractor (Rajalingham et al. 2018's task)."""
        return self.distractor is not None


def read_trials(path, labels=None, flag: str = "--trials") -> Trials:
    """The trials of a CSV file (see the module docstring), checked; ``labels``: the task's labels, if given."""
    path = Path(path)
    where = f"{flag} {path}"
    if not path.is_file():
        raise DataError(f"{where}: no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = [r for r in reader if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{where}: cannot be read as CSV ({err})") from None
    if header is None:
        raise DataError(f"{where}: the file is empty; it needs a header {','.join(REQUIRED_COLUMNS)}")
    header = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{where}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; the header "
                        f"needs {','.join(REQUIRED_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)})")
    if not rows:
        raise DataError(f"{where}: no trials below the header")
    columns = {}
    for name in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS):
        if name in header:
            j = header.index(name)
            columns[name] = np.array([(r[j].strip() if j < len(r) else "") for r in rows], dtype=object)
    return make_trials(**columns, labels=labels, where=where, first_line=2)


def make_trials(stimulus, subject, truth, choice, distractor=None, cue_shape=None, cue_texture=None,
                condition=None, labels=None, where: str = "trials", first_line: int = 1) -> Trials:
    """``Trials`` from columns (sequences of one length), after the checks of ``read_trials``.

    ``first_line``: the file line of the first trial, for messages (2 in a CSV with a header)."""
    cols = {"stimulus": stimulus, "subject": subject, "truth": truth, "choice": choice, "distractor": distractor,
            "cue_shape": cue_shape, "cue_texture": cue_texture, "condition": condition}
    cols = {k: (None if v is None else np.array([str(x).strip() for x in v], dtype=object)) for k, v in cols.items()}
    n = len(cols["stimulus"])
    if n == 0:
        raise DataError(f"{where}: no trials")
    for name, col in cols.items():
        if col is not None and len(col) != n:
            raise DataError(f"{where}: column {name} has {len(col)} values for {n} trials")
    if (cols["cue_shape"] is None) != (cols["cue_texture"] is None):
        raise DataError(f"{where}: give both cue_shape and cue_texture columns (a cue-conflict trial has both), "
                        "or neither")
    line = lambda i: f"{where} line {first_line + int(i)}"  # noqa: E731
    _check_empty(cols, line)
    task = _task_labels(cols, labels, where, line)
    _check_labels(cols, task, line)
    _check_stimuli(cols, line)
    return Trials(labels=tuple(task), source=where, **cols)


def _check_empty(cols: dict, line) -> None:
    """Every required cell filled; an optional column, when present, filled on every row (else drop it)."""
    for name, col in cols.items():
        if col is None:
            continue
        empty = np.flatnonzero(col == "")
        if empty.size:
            what = "an empty subject" if name == "subject" else f"an empty {name}"
            hint = ("every trial needs one" if name in REQUIRED_COLUMNS
                    else "fill it on every row or remove the column")
            raise DataError(f"{line(empty[0])}: {what} ({empty.size} row{'s' if empty.size > 1 else ''}); {hint}")


def _task_labels(cols: dict, labels, where: str, line) -> list[str]:
    """The task's labels: ``labels`` (every truth / distractor / cue must be one), else those the columns name."""
    named = [cols[k] for k in ("truth", "distractor", "cue_shape", "cue_texture") if cols[k] is not None]
    if labels is None:
        return sorted(set(np.concatenate(named).tolist()), key=_natural)
    task = sorted({str(x).strip() for x in labels}, key=_natural)
    known = set(task)
    for col, name in zip(named, [k for k in ("truth", "distractor", "cue_shape", "cue_texture") if cols[k] is not None]):
        bad = [i for i, v in enumerate(col) if v not in known]
        if bad:
            raise DataError(f"{line(bad[0])}: {name} {col[bad[0]]!r} is not one of the task's labels "
                            f"({_few(task)}); add it to the label list or correct the trial")
    return task


def _check_labels(cols: dict, task: list[str], line) -> None:
    """Choices among the task's labels; a two-way trial's distractor differs from its truth and the choice is one
    of the two."""
    known = set(task)
    choice, dist = cols["choice"], cols["distractor"]
    same = np.flatnonzero(dist == cols["truth"]) if dist is not None else []
    if len(same):
        raise DataError(f"{line(same[0])}: the distractor equals the truth ({dist[same[0]]!r}); a two-way trial "
                        "offers two different labels")
    bad = [i for i, v in enumerate(choice) if v not in known]
    if bad:
        raise DataError(f"{line(bad[0])}: choice {choice[bad[0]]!r} is outside the task's labels ({_few(task)}); "
                        f"{len(bad)} trial{'s' if len(bad) > 1 else ''} like this: correct them or give the label list")
    if dist is None:
        return
    off = np.flatnonzero((choice != cols["truth"]) & (choice != dist))
    if off.size:
        raise DataError(f"{line(off[0])}: choice {choice[off[0]]!r} is neither the truth nor the distractor of this "
                        "two-way trial")


def _check_stimuli(cols: dict, line) -> None:
    """One truth per stimulus (and one cue pair): per-image scores need the image's identity to be fixed."""
    for name in ("truth", "cue_shape", "cue_texture"):
        col = cols[name]
        if col is None:
            continue
        seen: dict[str, str] = {}
        names = {s: file_name(s) for s in dict.fromkeys(cols["stimulus"].tolist())}
        for i, (s, v) in enumerate(zip(cols["stimulus"].tolist(), col.tolist())):
            first = seen.setdefault(names[s], v)
            if first != v:
                raise DataError(f"{line(i)}: stimulus {s!r} has {name} {v!r} here and {first!r} in an earlier "
                                f"trial; an image has one {name}")


def file_name(stimulus: str) -> str:
    """The file name a stimulus is matched by (its last path component)."""
    return Path(stimulus).name


def _natural(label: str):
    """Sort key: numbers inside labels by value ("2" before "10")."""
    import re

    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", label) if t]


def _few(labels, k: int = 8) -> str:
    return ", ".join(labels[:k]) + (f", ... ({len(labels)} in all)" if len(labels) > k else "")


def match_images(stimuli: list[str], images: list[str], where: str, folder: str = "--data_path") -> np.ndarray:
    """The index in ``images`` of each stimulus, matched by file name (as ``ventralkit neural`` matches stimuli).

    A name absent from the folder, or a file name that two images in the folder share, is a ``DataError``."""
    by_name, dup = index_by_file_name(images)
    rows, absent = [], []
    for name in stimuli:
        base = Path(name).name
        if base in dup:
            raise DataError(f"{where}: {base} names several images in {folder}; file names must be unique")
        if base not in by_name:
            absent.append(name)
            continue
        rows.append(by_name[base])
    if absent:
        raise DataError(f"{where}: {len(absent)} stimul{'i are' if len(absent) > 1 else 'us is'} not in {folder} "
                        f"(e.g. {absent[0]!r}); the stimulus column must name the image files there")
    return np.array(rows, dtype=np.int64)
