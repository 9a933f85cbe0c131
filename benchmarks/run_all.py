"""Run every benchmark on this machine's CPU (or --device cuda) and append the tables to RESULTS.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    extra = sys.argv[1:]
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        subprocess.run([sys.executable, str(script), "--write", *extra], check=True, cwd=HERE)
