"""Populate and tear down device-dax namespaces at real scale; print wall time and peak RSS.

    python benchmarks/bench_engine.py            # 1 TiB at 4K/2M/1G, 16 TiB at 2M, naive ratio

Each case runs in its own process so its peak RSS is its own.  Targets (issue 2, 2-core
machine): 1 TiB under 1 s, 16 TiB under 15 s within 4 GiB peak RSS.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

CASES = [("1T", "4K"), ("1T", "2M"), ("1T", "1G"), ("16T", "2M")]


def run_case(size: str, align: str) -> dict:
    import resource

    import vmemlab

    t0 = time.perf_counter()
    p = vmemlab.plan(size, align=align)
    t1 = time.perf_counter()
    vmemlab.teardown(p)
    t2 = time.perf_counter()
    m = p._machine
    assert m.state()["live_frames"] == 0 and m.ram.used == 0
    return {"size": size, "align": align, "populate_s": t1 - t0, "teardown_s": t2 - t1,
            "ram_data_pages": p.ram_data_pages, "pagetable_pages": p.ram_pagetable_pages,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def naive_populate(n_sections: int, order: int = 9) -> tuple[int, int]:
    """A per-PTE pure-Python reference of vmemmap_populate_compound_pages for x86_64 (dicts,
    one Python step per PTE), returning (data pages, PTE tables)."""
    ptes: dict[int, int] = {}
    refs: dict[int, int] = {}
    tables: set[int] = set()
    next_frame = 0
    per_compound = (1 << order) * 64 // 4096
    for sec in range(n_sections):
        base = sec * 512  # 512 vmemmap pages (2 MiB of memmap) per 128 MiB section
        for c in range(512 // per_compound):
            head = base + c * per_compound
            for i in range(per_compound):
                vpn = head + i
                tables.add(vpn >> 9)
                if i < 2:
                    ptes[vpn] = next_frame
                    refs[next_frame] = 1
                    next_frame += 1
                else:
                    tail = ptes[head + 1]
                    ptes[vpn] = tail
                    refs[tail] += 1
    return len(refs), len(tables)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--case":
        print(json.dumps(run_case(sys.argv[2], sys.argv[3])))
        return
    print(f"{'size':>5} {'align':>5} {'populate':>9} {'teardown':>9} {'peak RSS':>9}")
    for size, align in CASES:
        out = subprocess.run([sys.executable, __file__, "--case", size, align],
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out)
        print(f"{size:>5} {align:>5} {r['populate_s']:8.2f}s {r['teardown_s']:8.2f}s "
              f"{r['peak_rss_mib']:7.0f}MiB")

    import vmemlab

    sections = 1024  # 128 GiB at 2M
    t0 = time.perf_counter()
    naive = naive_populate(sections)
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    p = vmemlab.plan(sections * (128 << 20), align="2M")
    t_model = time.perf_counter() - t0
    assert naive[0] == p.ram_data_pages and naive[1] == p.pagetables["pte"]
    print(f"naive per-PTE reference, 128 GiB at 2M: {t_naive:.3f}s; vmemlab: {t_model:.3f}s "
          f"(includes nd_pfn, sections, init); ratio {t_naive / t_model:.1f}x; same counts")
    t0 = time.perf_counter()
    import importlib  # noqa: F401

    r = subprocess.run([sys.executable, "-c", "import time; t=time.perf_counter(); "
                        "import vmemlab; print(time.perf_counter()-t)"],
                       capture_output=True, text=True, check=True)
    print(f"import vmemlab: {float(r.stdout):.3f}s")


if __name__ == "__main__":
    main()
