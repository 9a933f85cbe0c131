"""The table of published weights files (``weights_table.json``): what each is, where it is, how it is checked.

The registry's ``ModelInfo.weights`` names a model's file (name and URL); this table adds what a download
and a check need and what a reader of the results wants to know: the hash (a full sha256 only when it was
measured on the real file, else the 8-hex prefix the published file name carries, unconfirmed), the size
when known, the preprocessing the file was trained with and the paper. A test keeps the two in agreement.

The download host can be replaced (``VENTRALKIT_WEIGHTS_URL``, a cluster's mirror): the file's path on the
original host is kept, so a mirror is a copy of the original layout.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import CheckpointError, ConfigError

TABLE_FILE = Path(__file__).with_name("weights_table.json")

#: the environment variable that replaces the download host (scheme and host; the path is kept)
MIRROR_ENV = "VENTRALKIT_WEIGHTS_URL"
_MIRROR_SCHEMES = ("http", "https", "file")


@dataclass(frozen=True)
class WeightsEntry:
    """One published file. ``sha256`` is set only when measured on the real file (then a differing file is
    refused); ``sha256_prefix`` comes from the published file name (a differing file only warns)."""

    name: str
    models: tuple[str, ...]
    filename: str
    url: str
    sha256: str | None = None
    sha256_prefix: str | None = None
    hash_source: str = ""
    size: int | None = None
    gated: str | None = None  # how to obtain a file that cannot be fetched without an account
    other_hashes: dict = field(default_factory=dict)
    preprocessing: dict | None = None
    trained_with: str = ""
    paper: str = ""
    layout: str = ""

    @property
    def hash_policy(self) -> str:
        """``full`` (refuse a differing file), ``prefix`` (warn) or ``none`` (record only)."""
        return "full" if self.sha256 else "prefix" if self.sha256_prefix else "none"


_FIELDS = {f for f in WeightsEntry.__dataclass_fields__}


def _entry_from_json(row: dict) -> WeightsEntry:
    known = {k: v for k, v in row.items() if k in _FIELDS}
    known["models"] = tuple(row.get("models") or (row["name"],))
    known["other_hashes"] = dict(row.get("other_hashes") or {})
    return WeightsEntry(**known)


@lru_cache(maxsize=1)
def _table() -> tuple[WeightsEntry, ...]:
    with open(TABLE_FILE, encoding="utf-8") as fh:
        rows = json.load(fh)["files"]
    return tuple(_entry_from_json(r) for r in rows)


def weights_entries() -> list[WeightsEntry]:
    """Every published file, in the table's order (tests replace this to add a file of their own)."""
    return list(_table())


def find_entry(name: str) -> WeightsEntry:
    """The entry for a model name (a CORnet letter too), a table name or a file name; one line if none."""
    from .registry import canonical_name

    entries = weights_entries()
    key = canonical_name(name)
    for e in entries:
        if key == e.name or key in e.models or name == e.filename or Path(name).name == e.filename:
            return e
    names = [e.name for e in entries] + [e.filename for e in entries]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "see `ventralkit weights list`"
    raise CheckpointError(f"no published weights file is called {name!r}: {hint}")


def entry_for_model(model_name: str, filename: str, url: str) -> WeightsEntry:
    """The table's entry for a registered model's file; a file missing from the table still downloads
    (no hash to check), so a family added without a table row keeps working."""
    for e in weights_entries():
        if e.filename == filename:
            return e
    return WeightsEntry(name=model_name, models=(model_name,), filename=filename, url=url)


def download_url(entry: WeightsEntry) -> str:
    """The URL to fetch: the table's, or the same path on ``$VENTRALKIT_WEIGHTS_URL``'s host."""
    base = os.environ.get(MIRROR_ENV, "").strip()
    if not base:
        return entry.url
    scheme = urlsplit(base).scheme
    if scheme not in _MIRROR_SCHEMES:
        raise ConfigError(f"{MIRROR_ENV}={base!r} is not a URL; give the mirror's address, e.g. "
                          "https://mirror.example.org/weights or file:///shared/weights")
    original = urlsplit(entry.url)
    return base.rstrip("/") + original.path + (f"?{original.query}" if original.query else "")
