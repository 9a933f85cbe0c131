"""Stop cleanly when a scheduler asks: SIGTERM, SIGINT or SIGUSR1 finish the step, save, and exit.

Cluster schedulers (SLURM's ``--signal``, preemption) send one of these some time before killing a
job. The handler only sets a flag; the training loop looks at it after each step, writes
``last.pt`` atomically and raises ``TrainingInterrupted`` with the command that resumes. A second
Ctrl-C aborts at once (``KeyboardInterrupt``), for a user who does not want to wait.
"""

from __future__ import annotations

import signal
import threading

SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGTERM", "SIGINT", "SIGUSR1")) if s is not None)


class StopRequest:
    """Installs the handlers for the ``with`` block (main thread only) and restores the old ones after."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()

    def _handle(self, signum, frame) -> None:
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
