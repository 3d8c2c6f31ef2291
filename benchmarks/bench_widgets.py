"""Benchmark: every explorer's update (model + figure + encoding), swept across its slider, headless.

    MPLBACKEND=Agg python benchmarks/bench_widgets.py [--quick] [--arch x86_64 ...] [--png]

For each explorer the live widget is built (ipywidgets without a front-end) and ``update`` is
called for every value of the explorer's slider (the page order, or the kernel for the GUP
explorer), on each arch asked for.  The first update after an arch change is reported apart as
"cold" (it fills the savings-curve cache of that arch).  The sweep runs with an empty
rendering cache and no look-ahead, so each update computes the model, builds the figure and
encodes it (what a state the look-ahead has not reached yet costs); ``model+build`` and
``encode`` split its median.  ``cached`` is the median of the same sweep again, served from the
cache (what a state the look-ahead has rendered costs).  ``--png`` also times the old encoding
(Agg PNG at 72 dpi) of the same figures, for comparison.
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
    from vmemlab.viz import to_png
    from vmemlab.widgets import EXPLORERS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="*", default=None, help="arches to sweep (default: all)")
    ap.add_argument("--quick", action="store_true", help="x86_64 only")
    ap.add_argument("--png", action="store_true", help="also time PNG (72 dpi) encoding")
    args = ap.parse_args()
    arches = ["x86_64"] if args.quick else (args.arch or list(ARCHES))
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} CPUs)")
    print(f"{'explorer':<20}{'arch':<17}{'n':>4}{'median':>10}{'p95':>10}{'max':>10}"
          f"{'cold':>10}{'msgs':>6}{'model+build':>13}{'encode':>8}{'cached':>8}"
          + (f"{'png72':>8}" if args.png else ""))
    all_warm: list[float] = []
    for cls in EXPLORERS:
        ex = cls()
        ex.LOOK_AHEAD = False
        _ = ex.ui  # build the widgets (first render is not timed)
        for arch in (arches if "arch" in cls.DEFAULTS else [None]):
            ex._cache.clear()
            t0 = time.perf_counter()
            if arch is not None:
                ex.update(arch=arch)
            cold = time.perf_counter() - t0
            times, msgs, model, enc, cached, png = [], 0, [], [], [], []
            for v in ex.slider_values():
                t0 = time.perf_counter()
                view = ex.update(**{cls.SLIDER: v})
                times.append(time.perf_counter() - t0)
                model.append(view.seconds)
                enc.append(ex.last_png_seconds)
                msgs += view.message is not None
                if args.png and view.ok:  # a live view's figures are SVG: draw them again
                    figs = ex.render_static(**ex.state).figures
                    t0 = time.perf_counter()
                    for f in figs:
                        to_png(f, dpi=72)
                    png.append(time.perf_counter() - t0)
            for v in ex.slider_values():
                t0 = time.perf_counter()
                ex.update(**{cls.SLIDER: v})
                cached.append(time.perf_counter() - t0)
            all_warm += times
            print(f"{cls.__name__:<20}{arch or '-':<17}{len(times):>4}"
                  f"{1e3 * statistics.median(times):>8.0f}ms{1e3 * pct(times, 0.95):>8.0f}ms"
                  f"{1e3 * max(times):>8.0f}ms{1e3 * cold:>8.0f}ms{msgs:>6}"
                  f"{1e3 * statistics.median(model):>11.0f}ms"
                  f"{1e3 * statistics.median(enc):>6.0f}ms"
                  f"{1e3 * statistics.median(cached):>6.1f}ms"
                  + (f"{1e3 * statistics.median(png):>6.0f}ms" if png else ""))
    print(f"{'all sweeps':<37}{len(all_warm):>4}{1e3 * statistics.median(all_warm):>8.0f}ms"
          f"{1e3 * pct(all_warm, 0.95):>8.0f}ms{1e3 * max(all_warm):>8.0f}ms")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
