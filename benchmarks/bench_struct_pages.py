"""Benchmark: materialising struct pages in a 1 TiB device-dax namespace costs time and memory
proportional to the vmemmap frames touched, not to the namespace size.

Run: ``python benchmarks/bench_struct_pages.py``.  For 2M and 1G alignment (x86_64, 6.6,
--map=mem) it populates the namespace (``plan``), then reads every struct page of 1, 8 and 64
compound pages (``compound_head`` of each pfn, through the vmemmap) and prints the time, the
physical vmemmap pages materialised, and the store's memory (rows of PAGE_SIZE bytes; peak
Python allocations from tracemalloc).  memmap_init_zone_device itself is recorded, not replayed,
so its cost is not in ``plan`` time beyond the record.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vmemlab.page import compound_head_pfns, struct_pages  # noqa: E402
from vmemlab.plan import plan  # noqa: E402


def bench(align: str, counts=(1, 8, 64)) -> None:
    t0 = time.perf_counter()
    p = plan("1T", align=align)
    t_plan = time.perf_counter() - t0
    m, pg = p._machine, p._pgmap
    first = pg.ranges[0][0] >> m.arch.page_shift
    nr = 1 << pg.vmemmap_shift
    print(f"\n1 TiB namespace, align {align}: {p.compound_pages} compound pages of {nr} pfns; "
          f"populate + record init: {t_plan:.2f} s; struct pages the init loop counts: "
          f"{p.struct_pages_initialised}")
    done = 0
    for n in counts:
        st = struct_pages(m)
        before_rows, before_mat = st.n_slots, st.materialised
        heads = first + (np.arange(done, done + n, dtype=np.int64) * nr)
        pfns = (heads[:, None] + np.arange(nr, dtype=np.int64)[None, :]).ravel()
        tracemalloc.start()
        t0 = time.perf_counter()
        got = compound_head_pfns(m, pfns)
        dt = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert (got == np.repeat(heads, nr)).all()
        rows = st.n_slots - before_rows
        print(f"  {n:3d} compound page(s) = {pfns.size:>9} struct pages read: {dt * 1e3:8.1f} ms, "
              f"{st.materialised - before_mat:5d} vmemmap pages materialised "
              f"({rows * m.arch.PAGE_SIZE / 1024:.0f} KiB stored), "
              f"peak temp {peak / 2**20:.1f} MiB")
        done += n


if __name__ == "__main__":
    bench("2M", (1, 8, 64))
    bench("1G", (1, 4))
