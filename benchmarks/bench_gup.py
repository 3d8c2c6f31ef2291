"""Benchmark the GUP-fast model over a 128 GiB device-dax mapping at 2M alignment.

Run: ``python benchmarks/bench_gup.py [size]`` (default 128G).  For each GUP variant (kernel
"5.16" base, "6.6" per-subpage-head, "v3" head-once) and each memmap placement (RAM, altmap):

* ``plan`` + ``mmap``: build the namespace (``vmemlab.plan``), map it and fault every PMD in;
* ``counters``: ``pin_user_pages_fast(..., apply=False)`` over the whole mapping -- the walk and
  every counter, exact, without touching struct pages;
* ``pin cold`` / ``pin warm`` / ``unpin``: the same call with the grabs applied to the struct
  pages held by :mod:`vmemlab.page` (cold: the first touch materialises one 4 KiB row per
  physical vmemmap page reached; warm: a second pin after an unpin), then
  ``unpin_user_pages``.  The base variant (33.5M order-0 pages) is applied only with ``--all``:
  it takes minutes because every one of its pages has its own struct page to update.

It also prints the time the cost model (:class:`vmemlab.gup.CostParams` defaults, fitted on the
cover letter's 16G rows) predicts for the real kernel, and the 16G -> 128G prediction table.
"""

from __future__ import annotations

import sys
import time

import vmemlab
from vmemlab import gup
from vmemlab.dax_device import dax_mmap_plan
from vmemlab.units import parse_size


def main(size: str = "128G", apply_base: bool = False) -> None:
    nbytes = parse_size(size)
    print(f"GUP-fast over a {size} device-dax mapping, align 2M (model wall time, seconds)")
    print(f"{'kernel':<6} {'variant':<17}{'map':<5}{'plan+mmap':>10}{'counters':>9}"
          f"{'pin cold':>9}{'pin warm':>9}{'unpin':>7}{'grabs':>10}{'atomics':>11}"
          f"{'phys lines':>11}{'model':>11}")
    for kernel in ("5.16", "6.6", "v3"):
        for mp in ("mem", "dev"):
            t0 = time.perf_counter()
            p = vmemlab.plan(gup.namespace_for(nbytes), align="2M", map=mp, kernel=kernel)
            vma = dax_mmap_plan(p, size=nbytes)
            t1 = time.perf_counter()
            r = gup.pin_user_pages_fast(vma, vma.vm_start, nbytes >> 12, apply=False)
            t2 = time.perf_counter()
            cold = warm = unpin = float("nan")
            if kernel != "5.16" or apply_base:
                r = gup.pin_user_pages_fast(vma, vma.vm_start, nbytes >> 12)
                t3 = time.perf_counter()
                gup.unpin_user_pages(vma.m, r)
                t4 = time.perf_counter()
                r = gup.pin_user_pages_fast(vma, vma.vm_start, nbytes >> 12)
                t5 = time.perf_counter()
                gup.unpin_user_pages(vma.m, r)
                t6 = time.perf_counter()
                cold, warm, unpin = t3 - t2, t5 - t4, t6 - t5
            c = r.counters
            print(f"{kernel:<6} {c.variant:<17}{mp:<5}{t1 - t0:>10.2f}{t2 - t1:>9.2f}"
                  f"{cold:>9.2f}{warm:>9.2f}{unpin:>7.2f}{c.grabs:>10}{c.atomics:>11}"
                  f"{c.cache_lines:>11}{gup.predict_ns(c) / 1e6:>8.1f} ms")
    params, preds = gup.cover_letter_table("16G", "128G")
    print()
    print("cost model fitted on the cover letter's 16G rows, predicting its 128G rows:")
    print(gup.format_table(params, preds))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(*args[:1], apply_base="--all" in sys.argv)
