"""``robustness`` under torchrun: the corruption folders shared out among the ranks, one table.

``torchrun --nproc_per_node K -m ventralkit.cli robustness ...``: each rank scores whole folders (a folder's hits
and losses are summed on one rank, in one pass, as one process sums them), the ranks wait for each other
(bounded, ``engine.ranks.wait_for_peers``), and every rank gathers every folder's scores, so each returns the same
report; rank 0 writes the files. The folders go to ranks by size, largest first, each to the rank with the fewest
images so far (the clean folder and 95 equal ones come out even).
"""

from __future__ import annotations

import time
from typing import Callable


def folder_shares(sizes: list[int], world: int) -> list[list[int]]:
    """The folder indices each rank scores: largest first to the least loaded rank (ties: the lower rank)."""
    loads = [0] * world
    shares: list[list[int]] = [[] for _ in range(world)]
    for index in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        rank = min(range(world), key=lambda r: (loads[r], r))
        shares[rank].append(index)
        loads[rank] += sizes[index]
    return [sorted(share) for share in shares]


def score_by_rank(score: Callable[[list[int]], list], sizes: list[int], info) -> list:
    """Every folder's score, in folder order, on every rank: ``score(indices)`` scores this rank's folders (in one
    pass, as one process would score them all)."""
    from ...engine.ranks import gather, wait_for_peers

    mine = folder_shares(sizes, info.world_size)[info.rank]
    began = time.perf_counter()
    local = score(mine) if mine else []
    wait_for_peers(time.perf_counter() - began, "its corruption folders", info)
    scores: list = [None] * len(sizes)
    for part in gather(list(zip(mine, local)), "collecting the folders' scores"):
        for index, result in part:
            scores[index] = result
    return scores


__all__ = ["folder_shares", "score_by_rank"]
