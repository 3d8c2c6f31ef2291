"""How long ``import vmemlab`` takes in a fresh interpreter (median of several runs).

    python3 benchmarks/bench_import.py [runs]

A figure to print, not a test: timing depends on the machine and its load.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

CODE = "import time; t = time.perf_counter(); import vmemlab; print(time.perf_counter() - t)"


def main(runs: int = 7) -> None:
    times = [float(subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                                  check=True).stdout) for _ in range(runs)]
    print(f"import vmemlab: median {statistics.median(times) * 1e3:.0f} ms, "
          f"min {min(times) * 1e3:.0f} ms, max {max(times) * 1e3:.0f} ms over {runs} runs")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
