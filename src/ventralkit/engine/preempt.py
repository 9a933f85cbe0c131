"""Stop cleanly when a scheduler asks: SIGTERM, SIGINT, SIGUSR1 or SIGUSR2 finish the step, save, and exit.

Cluster schedulers (SLURM's ``--signal``, preemption) send one of these some time before killing a
job; SIGUSR2 is submitit's (a study's jobs hand it back to submitit, which requeues them: studies/jobs.py).
The handler only sets a flag; the training loop looks at it after each step, writes
``last.pt`` atomically and raises ``TrainingInterrupted`` with the command that resumes. A second
Ctrl-C aborts at once (``KeyboardInterrupt``), for a user who does not want to wait.

Ctrl-C in a terminal reaches the whole process group, so the forked data-loading workers, which inherit
these handlers, get it too: they ignore it (the main process decides, and shuts them down), so the
user reads the message once, not once per worker.
"""

from __future__ import annotations

import os
import signal
import threading

SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2"))
                if s is not None)


class StopRequest:
    """Installs the handlers for the ``with`` block (main thread only) and restores the old ones after."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, object] = {}
        self._pid = os.getpid()  # the process that installed the handlers; forked workers inherit them

    def __enter__(self) -> "StopRequest":
        self._pid = os.getpid()
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()

    def _handle(self, signum, frame) -> None:
        if os.getpid() != self._pid:  # a DataLoader worker forked inside the block: the main process reports
            return
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now, without saving
        if self.signum is None:
            self.signum = signum
            name = signal.Signals(signum).name
            print(f"\n{name} received: finishing this step, then saving checkpoints/last.pt "
                  "(Ctrl-C again to abort without saving)", flush=True)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


def leave_quietly_on_sigterm(_worker_id: int) -> None:
    """``worker_init_fn`` of the training loaders: a data-loading worker exits at once, with status 0, on SIGTERM.

    A scheduler's SIGTERM (``timeout``, ``scancel``, preemption) goes to every process of the job. PyTorch's
    worker handler dies by it, and the main process then raised "DataLoader worker is killed by signal" from
    its SIGCHLD handler wherever it was, mid-step, instead of saving. A worker that exits with status 0 is not
    an error to that handler; the main process, which got the same signal, stops at the next step boundary (or
    finds the workers gone while waiting for a batch, and stops there; ``engine.train.fit``)."""
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
