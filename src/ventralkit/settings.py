"""Reading ventralkit's environment variables, in one place.

Several parts of ventralkit take a time bound from the environment (downloads, waits between torchrun ranks);
each reads it the same way, so a bad value is refused with the same one-line advice wherever it is set."""

from __future__ import annotations

import os

from .errors import ConfigError

__all__ = ["positive_seconds"]


def positive_seconds(env: str, default: float) -> float:
    """``$env`` as a number of seconds, ``default`` when unset or empty; anything else than a positive number is a
    ``ConfigError`` naming the variable (a zero or negative bound would mean waiting forever or not at all)."""
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{env}={raw!r} must be a positive number of seconds")
    return value
