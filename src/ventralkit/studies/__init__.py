"""Studies: work that trains and compares many models (above ``engine`` and ``analysis``, below the CLI).

A study drives the ordinary engine (``engine.train.train``) once per configuration and then runs
analyses and figures on the results, so it may import every layer below it; nothing below imports it.
"""
