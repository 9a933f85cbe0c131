"""Progress bars (tqdm) that stay quiet when not attached to a terminal or on non-zero ranks."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress_bar(iterable=None, desc: str | None = None, enabled: bool = True, **kwargs):
    rank = int(os.environ.get("RANK", "0"))
    disable = (not enabled) or rank != 0 or os.environ.get("VENTRALKIT_NO_PROGRESS") == "1"
    return tqdm(iterable, desc=desc, disable=disable, dynamic_ncols=True, file=sys.stderr, **kwargs)
