"""Figures (matplotlib, Agg backend): one module per topic; each function writes a PNG and returns its path."""

import matplotlib

matplotlib.use("Agg")
