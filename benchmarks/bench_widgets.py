"""Benchmark: every explorer's update (model + redraw to PNG), swept across its slider, headless.

    MPLBACKEND=Agg python benchmarks/bench_widgets.py [--quick] [--arch x86_64 ...]

For each explorer the live widget is built (ipywidgets without a front-end) and ``update`` is
called for every value of the explorer's slider (the page order, or the kernel for the GUP
explorer), on each arch asked for.  The first update after an arch change is reported apart as
"cold" (it fills the savings-curve cache of that arch); the slider sweep that follows is the
steady state the targets (median < 150 ms, p95 < 400 ms) refer to.  The last two columns split
the median into model + figure construction and PNG rasterising (Agg).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("MPLBACKEND", "Agg")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    from vmemlab import ARCHES
    from vmemlab.widgets import EXPLORERS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="*", default=None, help="arches to sweep (default: all)")
    ap.add_argument("--quick", action="store_true", help="x86_64 only")
    args = ap.parse_args()
    arches = ["x86_64"] if args.quick else (args.arch or list(ARCHES))
    print(f"{'explorer':<20}{'arch':<17}{'n':>4}{'median':>10}{'p95':>10}{'max':>10}"
          f"{'cold':>10}{'msgs':>6}{'model+build':>13}{'png':>8}")
    all_warm: list[float] = []
    for cls in EXPLORERS:
        ex = cls()
        _ = ex.ui  # build the widgets (first render is not timed)
        for arch in (arches if "arch" in cls.DEFAULTS else [None]):
            t0 = time.perf_counter()
            if arch is not None:
                ex.update(arch=arch)
            cold = time.perf_counter() - t0
            times, msgs, model, png = [], 0, [], []
            for v in ex.slider_values():
                t0 = time.perf_counter()
                view = ex.update(**{cls.SLIDER: v})
                times.append(time.perf_counter() - t0)
                model.append(view.seconds)
                png.append(ex.last_png_seconds)
                msgs += view.message is not None
            all_warm += times
            print(f"{cls.__name__:<20}{arch or '-':<17}{len(times):>4}"
                  f"{1e3 * statistics.median(times):>8.0f}ms{1e3 * pct(times, 0.95):>8.0f}ms"
                  f"{1e3 * max(times):>8.0f}ms{1e3 * cold:>8.0f}ms{msgs:>6}"
                  f"{1e3 * statistics.median(model):>11.0f}ms"
                  f"{1e3 * statistics.median(png):>6.0f}ms")
    print(f"{'all sweeps':<37}{len(all_warm):>4}{1e3 * statistics.median(all_warm):>8.0f}ms"
          f"{1e3 * pct(all_warm, 0.95):>8.0f}ms{1e3 * max(all_warm):>8.0f}ms")


if __name__ == "__main__":
    main()
