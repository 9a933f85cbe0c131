"""The CORnet family: Z, R (legacy), RT, S and S100 (S with V4->V1 feedback)."""

from . import r, s, s100, z  # noqa: F401  (registers the models)
