"""Progress that reads well wherever it goes: tqdm bars in a terminal, plain lines in a log file.

A tqdm bar redraws itself with carriage returns and, when bars nest (validation inside training),
cursor-up escapes (``ESC[A``); written to a file (a cluster job's log, ``2> log``) those become
unreadable clutter. When stderr is not a terminal, ``progress_bar`` returns ``PlainProgress``, which
writes a complete line at most every ``PlainProgress.interval`` seconds and one when it ends. Both stay
quiet on non-zero ranks and with ``VENTRALKIT_NO_PROGRESS=1``.
"""

from __future__ import annotations

import os
import sys
import time

from tqdm.auto import tqdm


def progress_bar(iterable=None, desc: str | None = None, enabled: bool = True, **kwargs):
    rank = int(os.environ.get("RANK", "0"))
    disable = (not enabled) or rank != 0 or os.environ.get("VENTRALKIT_NO_PROGRESS") == "1"
    if not disable and not is_terminal(sys.stderr):
        return PlainProgress(iterable, desc=desc, **kwargs)
    return tqdm(iterable, desc=desc, disable=disable, dynamic_ncols=True, file=sys.stderr, **kwargs)


def is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def say(line: str) -> None:
    """Print a line on stdout without tearing a progress bar drawn on the terminal (tqdm clears and redraws it)."""
    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``1 epoch``, ``3 epochs``, ``0 epochs``, ``1,281,167 images``, ``2 classes``: counts read as English.

    ``many`` is the plural where adding -s (-es after s, x, sh) is wrong (``plural(n, "batch", "batches")``)."""
    if n == 1:
        return f"1 {noun}"
    return f"{n:,} {many or noun + ('es' if noun.endswith(('s', 'x', 'sh')) else 's')}"


class PlainProgress:
    """The part of tqdm's interface ventralkit uses, reported as whole lines (no ``\\r``, no escape codes).

    ``leave=False`` (a bar nested in another, such as validation during training) writes no closing line,
    only the periodic ones a long pass earns."""

    interval = 60.0  #: seconds between two lines; long runs in a log file get about one line a minute

    def __init__(self, iterable=None, desc: str | None = None, total=None, initial: int = 0, unit: str = "it",
                 leave: bool = True, **_ignored):
        self.iterable = iterable
        if total is None and iterable is not None:
            try:
                total = len(iterable)
            except TypeError:
                total = None
        self.desc, self.total, self.n, self.unit, self.leave = desc or "", total, initial, unit, leave
        self.postfix = ""
        self._initial = initial
        self._start = self._last = time.monotonic()
        self._closed = False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.total or 0

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._last >= self.interval:
            self._line()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def refresh(self) -> None:
        """tqdm redraws here; a log file gets its lines on the clock only."""

    def write(self, line: str) -> None:
        say(line)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.leave and self.n > self._initial:
            self._line()

    def _line(self) -> None:
        self._last = time.monotonic()
        elapsed = self._last - self._start
        rate = (self.n - self._initial) / elapsed if elapsed > 0 else 0.0
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {done} {self.unit}{pct}, {tqdm.format_interval(elapsed)} elapsed, "
              f"{rate:.3g} {self.unit}/s{extra}", file=sys.stderr, flush=True)
