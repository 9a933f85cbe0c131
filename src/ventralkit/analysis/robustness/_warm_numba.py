"""Imported once by the forkserver that starts corruption workers: compiles glass_blur's numba kernel
(several seconds) there, so that every forked worker inherits it instead of compiling its own."""

import numpy as np

from .generate import MIN_SIZE, _corrupt_array

_corrupt_array(np.zeros((MIN_SIZE, MIN_SIZE, 3), np.uint8), "glass_blur", 1, 0)
