"""The divergence guard: a non-finite loss or gradient stops the run (or skips the step), never saved.

In ``stop`` mode the check is folded into device tensors and read only where the host reads anyway
(at log time, before validation and before every checkpoint), so a GPU never waits for it; on the
CPU reading costs nothing and happens every step. ``skip`` drops the step, as a grad scaler does,
which needs the answer before ``optimizer.step`` (one host read per step).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import TrainingDiverged

MODES = ("stop", "skip")


class NonFiniteGuard:
    def __init__(self, mode: str, device: torch.device, params, check_grads: bool = True,
                 last_checkpoint: Path | None = None):
        self.mode = mode
        self.last_checkpoint = last_checkpoint  # the run's last.pt: named in the message only if it exists
        self.params = [p for p in params if p.requires_grad]
        self.check_grads = check_grads
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)  # first non-finite global step
        self.read_every_step = mode == "skip" or device.type == "cpu"
        self.steps: dict[int, tuple[int, int, float]] = {}  # global step -> (epoch, step, lr), since last read
        self.skipped = 0

    def finite(self, loss: torch.Tensor) -> torch.Tensor:
        """A 0-d bool tensor: the loss and (fp32/bf16 training) every gradient are finite."""
        ok = torch.isfinite(loss.detach()).all()
        if self.check_grads:
            grads = [p.grad for p in self.params if p.grad is not None]
            if grads:
                ok = ok & torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()
        return ok

    def step_ok(self, loss: torch.Tensor, global_step: int, epoch: int, step: int, lr: float) -> bool:
        """Call after backward: False means drop this optimizer step (``skip`` mode)."""
        ok = self.finite(loss)
        if self.mode == "skip":
            if not bool(ok):
                self.skipped += 1
                return False
            return True
        self.steps[global_step] = (epoch, step, lr)
        self.first_bad = torch.where(~ok & (self.first_bad < 0), global_step, self.first_bad)
        if self.read_every_step:
            self.raise_if_diverged()
        return True

    def raise_if_diverged(self) -> None:
        """Read the flag (a host sync on a GPU): raise with where it happened, or forget the steps seen."""
        bad = int(self.first_bad)
        if bad >= 0:
            epoch, step, lr = self.steps.get(bad, (None, None, float("nan")))
            where = f"epoch {epoch + 1}, step {step + 1}" if epoch is not None else f"global step {bad + 1}"
            raise TrainingDiverged(
                f"training diverged: non-finite loss or gradients at {where} (global step {bad + 1}, lr {lr:.4g}); "
                f"stopped without saving these weights ({self._kept()}). Try a lower "
                "--lr, --clip_grad_norm 1, a warm-up (--warmup_epochs 1), or --on_nonfinite skip")
        self.steps.clear()

    def _kept(self) -> str:
        """What survives the stop: a last.pt saved before the bad step, or nothing (it diverged before the first
        save), so the message never points to a file that is not there."""
        if self.last_checkpoint is not None and self.last_checkpoint.is_file():
            return f"the last good checkpoint, {self.last_checkpoint}, is kept"
        return "no checkpoint was saved before this step"
