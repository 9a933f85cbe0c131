"""Importing this module registers every built-in model family."""

from . import compact, cornet, v1  # noqa: F401
