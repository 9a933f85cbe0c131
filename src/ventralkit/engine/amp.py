"""Mixed precision: bf16/fp16 autocast on CUDA; on the CPU only bf16, and only when asked for.

(bf16 matrix work on CPUs without AVX-512/AMX is ~200x slower than fp32, so fp32 is the CPU default.)
"""

from __future__ import annotations

import contextlib

import torch

from ..errors import ConfigError

AMP_MODES = ("none", "bf16", "fp16")


def autocast(device: torch.device | str, amp: str = "none"):
    if amp not in AMP_MODES:
        raise ConfigError(f"--amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    device = torch.device(device)
    if amp == "none":
        return contextlib.nullcontext()
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("--amp fp16 needs a CUDA device; use --amp bf16 or none on the CPU")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
