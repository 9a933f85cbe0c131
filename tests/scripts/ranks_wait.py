"""Run by tests/test_ranks.py under torchrun: rank 1 never reaches the meeting; rank 0 must give up within the
bound (VENTRALKIT_DIST_TIMEOUT_S) with one line."""

import sys
import time

import torch

from ventralkit.engine.ranks import join, wait_for_peers
from ventralkit.errors import VentralkitError, one_line

info = join(torch.device("cpu"))
if info.rank == 1:
    time.sleep(90)  # hangs (torchrun ends it once rank 0 has failed)
try:
    wait_for_peers(0.0, "its share", info)
except VentralkitError as err:
    print(f"ventralkit test: {one_line(err)}", file=sys.stderr)
    sys.exit(1)
