"""Imported once by the forkserver that starts corruption workers, so that every forked worker inherits the
work instead of repeating it: compiles glass_blur's numba kernel (several seconds) for both of the argument
types its severities use (severity 3's parameters are all integers, the others mix in a float), and reads
the six frost pictures into frost's per-process cache.

It runs OpenCV (frost), so ``_fork_safe`` must come first: a thread pool started here would be inherited,
without its threads, by every worker (see that module)."""

import numpy as np

from . import _fork_safe  # noqa: F401  (one OpenCV thread before frost runs below)
from .generate import _FROST_CV2, MIN_SIZE, _corrupt_array

_image = np.zeros((MIN_SIZE, MIN_SIZE, 3), np.uint8)
for _severity in (1, 3):
    _corrupt_array(_image, "glass_blur", _severity, 0)
for _seed in range(64):  # frost picks one of its six pictures at random
    _corrupt_array(_image, "frost", 1, _seed)
    if _FROST_CV2 and len(_FROST_CV2[0]._read) >= 6:
        break
