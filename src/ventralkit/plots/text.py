"""Text any script can hold (class names in Chinese, Japanese, emoji ...) drawn without empty boxes.

Matplotlib draws a character its font lacks as an empty box (and warns). ``drawable_labels`` checks
each label against the fonts installed on this machine: the default font when it covers every
character, else an installed font that does (a CJK font, say), else the label is replaced by its
index and a note says why, so a figure never shows a row of boxes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import matplotlib
from matplotlib import font_manager

#: fonts whose glyphs are colour bitmaps, which the Agg backend cannot draw, or placeholder boxes
#: (matplotlib's "Last Resort" font maps every codepoint to a box showing its number)
_UNDRAWABLE = ("color emoji", "apple color", "segoe ui emoji", "last resort")


@lru_cache(maxsize=None)
def _charmap(path: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()


def _default_font() -> str:
    return font_manager.findfont(font_manager.FontProperties(family=matplotlib.rcParams["font.family"]))


def _printable(text: str) -> set[int]:
    return {ord(ch) for ch in text if ch.isprintable() and not ch.isspace()}


def font_covering(codepoints: set[int]) -> str | None:
    """The family name of an installed font with every codepoint in ``codepoints``; None if none has."""
    for entry in font_manager.fontManager.ttflist:
        if any(bad in entry.name.lower() for bad in _UNDRAWABLE):
            continue
        if codepoints <= _charmap(entry.fname):
            return entry.name
    return None


@dataclass
class Labels:
    """Labels ready to draw: ``texts`` (names, or indices where no font has their characters), the
    font family to draw them with, and ``note`` (None when every name is shown as given)."""

    texts: list[str]
    family: list[str] | None = None
    note: str | None = None
    replaced: list[int] = field(default_factory=list)


def drawable_labels(names, what: str = "class names") -> Labels:
    """``names`` as they can be drawn here (see the module docstring)."""
    names = [str(n) for n in names]
    needed = set().union(*(_printable(n) for n in names)) if names else set()
    default = _charmap(_default_font())
    if needed <= default:
        return Labels(names)
    family = font_covering(needed - default)
    if family is not None:  # matplotlib takes each glyph from the first family of the list that has it
        return Labels(names, family=[font_manager.FontProperties(fname=_default_font()).get_name(), family])
    # no single font has every character: keep the names the default font draws, index the others
    replaced = [i for i, n in enumerate(names) if not _printable(n) <= default]
    texts = [str(i) if i in set(replaced) else n for i, n in enumerate(names)]
    note = (f"{len(replaced)} {what} use characters no installed font can draw (e.g. CJK or emoji) and are "
            f"shown as their index; install a font that covers them (e.g. Noto Sans CJK) to see the names")
    return Labels(texts, note=note, replaced=replaced)
