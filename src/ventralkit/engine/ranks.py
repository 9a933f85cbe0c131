"""Forward-only commands split across torchrun ranks: each rank does its share, rank 0 writes the one result.

``features`` and ``robustness`` under ``torchrun --nproc_per_node K -m ventralkit.cli ...`` use this (training has
its own DistributedDataParallel path in ``engine.train``; both join the process group through
``engine.distributed.setup``). What it guarantees, and why:

* Bounded waits. The group is joined with a timeout (``VENTRALKIT_DIST_TIMEOUT_S``, default 600 s) that every
  short exchange obeys. The one long wait, for the other ranks after this rank's share (``wait_for_peers``),
  allows them that timeout or twice this rank's own time, whichever is longer (a peer with an equal share
  that takes twice as long is stuck or starved), names the rank that did not arrive, and polls torchrun's
  store, so a SIGTERM ends it at once.
* One line for a failure. ``agree(step)`` runs a step on every rank and then tells every rank whether any
  failed: rank 0 reports the first failure (by rank; ``rank k:`` in front when it was not its own), the others
  exit with the same code and say nothing (``PeerFailed``), so a mistake every rank makes (a folder that holds
  other features, a bad checkpoint) prints one line, not K. During the long share there is no exchange: a rank
  that fails reports its own line and exits, and torchrun stops the others with SIGTERM, which
  ``stop_on_sigterm`` turns into an exit that runs their clean-up (no temporary file is left).
* The same model everywhere: ``broadcast_weights`` gives every rank rank 0's parameters and buffers (a
  ``--random_init`` model is drawn differently in each process).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
import time
from datetime import timedelta
from typing import Callable, TypeVar

import torch
import torch.distributed as dist

from .. import errors
from ..errors import VentralkitError, one_line
from ..settings import positive_seconds
from .distributed import DistInfo, setup

T = TypeVar("T")
TIMEOUT_ENV = "VENTRALKIT_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0


class PeerFailed(VentralkitError):
    """Another rank failed and rank 0 reports it: this rank ends with the same exit code and no message."""

    def __init__(self, exit_code: int):
        super().__init__("")
        self.exit_code = int(exit_code)


class RankError(VentralkitError):
    """A failure of the group (a rank that did not answer) or one another rank reported, raised on rank 0."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = int(exit_code)


def timeout_s() -> float:
    """Seconds a short exchange between the ranks may take (``VENTRALKIT_DIST_TIMEOUT_S``, default 600)."""
    return positive_seconds(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)


def world_size() -> int:
    """Processes torchrun started (1 outside torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def join(device: torch.device) -> DistInfo:
    """Join torchrun's group for a forward-only command: gloo (only small objects and CPU tensors travel), with
    the bounded timeout."""
    return setup(device, timeout_s=timeout_s(), backend="gloo")


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def gather(obj, what: str) -> list:
    """``obj`` of every rank, in rank order (``[obj]`` in one process); a lost or silent rank is one line."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    try:
        dist.all_gather_object(out, obj)
    except RuntimeError as err:
        raise RankError(f"the ranks lost each other while {what} ({one_line(err)}); a rank stopped or hangs, see "
                        f"its message above (the wait is bounded by {TIMEOUT_ENV}, now {timeout_s():g} s)") from None
    return out


def _report(err: BaseException) -> tuple[str, str, int]:
    if isinstance(err, VentralkitError):
        return type(err).__name__, one_line(err), int(getattr(err, "exit_code", 2))
    return "bug", f"{type(err).__name__}: {one_line(err)} (its traceback is above)", 1


def _rebuilt(kind: str, message: str, code: int) -> VentralkitError:
    """Another rank's failure as rank 0 raises it: the same class where it is a plain one of ``errors``."""
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, VentralkitError) and code == 2:
        with contextlib.suppress(TypeError):
            return cls(message)
    return RankError(message, code)


def agree(step: Callable[[], T], info: DistInfo, what: str) -> T:
    """Run ``step`` on every rank and return its value here, once every rank is known to have succeeded. Otherwise
    the first failure (by rank) is raised on rank 0, ``PeerFailed`` on the others; a bug (not a
    ``VentralkitError``) is also raised where it happened, for its traceback."""
    failure = None
    try:
        value = step()
    except Exception as err:  # every rank must reach the exchange below, whatever happened
        value, failure = None, err
    reports = gather(None if failure is None else _report(failure), what)
    failed = [(rank, r) for rank, r in enumerate(reports) if r is not None]
    if not failed:
        return value
    rank, (kind, message, code) = failed[0]
    if failure is not None and (not isinstance(failure, VentralkitError) or info.is_main and rank == info.rank):
        raise failure
    if not info.is_main:
        raise PeerFailed(code)
    raise _rebuilt(kind, f"rank {rank}: {message}", code)


def refuse(info: DistInfo, err: VentralkitError) -> None:
    """Raise ``err`` (found alike by every rank) on rank 0 only; the others end quietly with its code."""
    if info.is_main:
        raise err
    raise PeerFailed(getattr(err, "exit_code", 2))


_STORE: list = []
_MEETINGS = itertools.count()
#: seconds between two looks at the store while waiting (signals are handled between them)
_POLL_S = 0.2


def _store():
    """torchrun's key-value store (MASTER_ADDR:MASTER_PORT, which the process group joined through), under a prefix
    of this job's run and restart."""
    if not _STORE:
        base = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                             timeout=timedelta(seconds=timeout_s()))
        prefix = f"ventralkit/{os.environ.get('TORCHELASTIC_RUN_ID', 'run')}/" \
                 f"{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"
        _STORE.append(dist.PrefixStore(prefix, base))
    return _STORE[0]


def wait_for_peers(own_seconds: float, what: str, info: DistInfo) -> None:
    """Wait for every rank to finish its share: at most the timeout or twice ``own_seconds``, whichever is longer;
    one line naming the ranks that did not arrive otherwise. The wait polls the store with short sleeps, so a
    SIGTERM from torchrun (another rank failed) ends it at once (a collective would block until its timeout)."""
    if not info.enabled:
        return
    limit = max(timeout_s(), 2.0 * float(own_seconds))
    meeting = f"meeting{next(_MEETINGS)}"
    keys = [f"{meeting}/{r}" for r in range(info.world_size)]
    try:
        store = _store()
        store.set(keys[info.rank], "done")
        deadline = time.monotonic() + limit
        while not store.check(keys):
            if time.monotonic() > deadline:
                missing = [str(r) for r, key in enumerate(keys) if not store.check([key])]
                raise RankError(f"rank {', '.join(missing)} did not finish {what} within {limit:.0f} s of rank "
                                f"{info.rank} (twice its time, at least {TIMEOUT_ENV}={timeout_s():g}); it hangs or "
                                "is starved: see its messages, or raise the limit")
            time.sleep(_POLL_S)
    except (RuntimeError, OSError) as err:  # the store went away: torchrun is ending the job
        raise RankError(f"the ranks lost each other while waiting for {what} ({one_line(err)})") from None


def broadcast_weights(model: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (through CPU copies: the group is gloo)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    with torch.no_grad():
        for t in itertools.chain(model.parameters(), model.buffers()):
            host = t.detach().cpu() if t.device.type != "cpu" else t.data
            dist.broadcast(host, src=0)
            if host is not t.data:
                t.data.copy_(host)


@contextlib.contextmanager
def stop_on_sigterm():
    """While the block runs, SIGTERM (torchrun stopping the ranks after one failed) raises ``SystemExit(143)``, so
    the ``finally`` clauses that remove temporary files run (Python's default would end the process at once)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def report_on_main(info: DistInfo, run: Callable[[], int]) -> int:
    """A command's body under torchrun: ``PeerFailed`` becomes its exit code without a message."""
    try:
        return run()
    except PeerFailed as quiet:
        return quiet.exit_code


def run_on_ranks(body: Callable[[DistInfo], int]) -> int:
    """A forward-only command (features, robustness) under torchrun: join the group on the CPU with gloo (the
    ranks exchange only small objects and CPU weights), run ``body(info)`` on every rank (``report_on_main``),
    and leave the group whatever happens."""
    info = join(torch.device("cpu"))
    try:
        return report_on_main(info, lambda: body(info))
    finally:
        leave()


__all__ = ["DEFAULT_TIMEOUT_S", "PeerFailed", "RankError", "TIMEOUT_ENV", "agree", "broadcast_weights", "gather",
           "join", "leave", "refuse", "report_on_main", "run_on_ranks", "stop_on_sigterm", "timeout_s", "wait_for_peers",
           "world_size"]
