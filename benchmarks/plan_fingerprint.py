"""Fingerprint plan() over a grid of arch x kernel x align x map x size x start, to show that a
change to the engine leaves every result identical (not a timing benchmark).

    python benchmarks/plan_fingerprint.py out.json        # write one hash per case
    python benchmarks/plan_fingerprint.py out.json --quick
    python benchmarks/plan_fingerprint.py out.json --sample 7 --jobs 1   # a cross-section
    diff <(python -m json.tool a.json) <(python -m json.tool b.json)

Each case hashes the Plan's fields, the frame table columns, the page tables (entries, PMD leaves,
PTE tables, child counts, fragment pools, in insertion order), the RAM allocator and altmap
state, the sections, vmstat, the 2026 rework's state, a sample of struct page words read
through the vmemmap, and the state after teardown; a refused plan hashes its error.
"""

from __future__ import annotations

import hashlib
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

G, M, T = 1 << 30, 1 << 20, 1 << 40


def _machine_state(m: Any) -> list:
    f, pt = m.frames, m.pgtables
    n = f.n
    out: list = [n, f.refcount[:n].tobytes(), f.order[:n].tobytes(), f.kind[:n].tobytes(),
                 f.home[:n].tobytes(), f.pfn[:n].tobytes(), f.boot[:n].tobytes(),
                 f.frag_of[:n].tobytes(), sorted(f.altmap)]
    out.append([list(e.items()) for e in pt.entries])
    out.append(list(pt.pmd_leaf.items()))
    out.append([(t, a.tobytes()) for t, a in pt.pte.items()])
    out.append(list(pt.children.items()))
    out.append(sorted(pt._frag_pool.items()))
    out.append([(t, a.tobytes()) for t, a in pt.pte_ro.items()])
    r = m.ram
    out.append((r.capacity, r.used, r.peak, r._next_pfn, r._top))
    out.append([(k, (s.nr, s.subsection_map, s.early, s.nid, s.zone_device))
                for k, s in m.sparse.sections.items()])
    out.append(sorted(m.sparse.keep_vpns))
    out.append(sorted(m.vmstat.items()))
    st = getattr(m, "vmemmap_optimization", None)
    if st is not None:
        out.append((list(st.section_order.items()), list(st.tails.items())))
    out.append([(p.name, p.ranges, p.vmemmap_shift, p.nr_range, p.ref, p.flags,
                 None if p.altmap is None else vars(p.altmap).copy(),
                 [vars(s) if hasattr(s, "__dict__") else repr(s) for s in p.init_stats])
                for p in m.pgmaps])
    return out


def _struct_page_sample(p: Any) -> list:
    from vmemlab.page import struct_pages

    m = p._machine
    if m.arch.struct_page_size != 64:
        return []
    pfn, end = p._pgmap.pfn_range(0, m.arch.page_shift)
    n = end - pfn
    picks = np.unique(np.concatenate([
        np.arange(pfn, min(end, pfn + 600)),
        pfn + np.linspace(0, n - 1, 97).astype(np.int64),
        np.arange(max(pfn, end - 300), end),
        pfn + (np.arange(1, 40) * 262144 + 1) % n,
    ]))
    st = struct_pages(m)
    rows, idx = st.locate(picks)
    return [st.pool[rows, idx].tobytes()]


def _digest(obj: Any) -> str:
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def run_case(case: tuple) -> tuple[str, str]:
    import vmemlab

    arch, kernel, size, align, mp, start, ram, second = case
    key = json.dumps(case)
    try:
        p = vmemlab.plan(size, align=align, map=mp, arch=arch, kernel=kernel, start=start,
                         ram=ram)
        m = p._machine
        parts: list = [sorted(p.to_dict().items()), _machine_state(m)]
        if second is not None:
            try:
                q = vmemlab.plan(second[0], align=align, map=mp, start=second[1], machine=m)
                parts.append(sorted(q.to_dict().items()))
            except vmemlab.errors.VmemlabError as e:
                parts.append(("second-error", type(e).__name__, str(e)))
            parts.append(_machine_state(m))
        try:
            parts.append(_struct_page_sample(p))
        except vmemlab.errors.VmemlabError as e:
            parts.append(("sample-error", type(e).__name__, str(e)))
        parts.append(_machine_state(m))
        vmemlab.teardown(p)
        parts.append(_machine_state(m))
        return key, _digest(parts)
    except vmemlab.errors.VmemlabError as e:
        return key, "error:" + _digest((type(e).__name__, str(e)))


def grid(quick: bool) -> list[tuple]:
    import vmemlab

    cases = []
    kernels = vmemlab.kernels.kernel_names()
    base = 64 * G
    for arch, a in vmemlab.ARCHES.items():
        sec = 1 << a.section_size_bits
        for kernel in kernels:
            for align in a.dax_aligns:
                for mp in ("mem", "dev"):
                    sizes = [3 * sec + 64 * M if align <= 2 * M else 4 * G, 256 * G]
                    if not quick and arch in ("x86_64", "arm64-4k", "ppc64-radix-64k") \
                            and kernel in ("5.19", "6.6", "mm-2026", "v3"):
                        sizes.append(1 * T)
                    for size in sizes:
                        for start in (None, base + 2 * M, base + sec + 6 * M, base + 1 * G):
                            if (size >= T and start is not None) or \
                                    (size >= 256 * G and start not in (None, base + 2 * M)):
                                continue
                            cases.append((arch, kernel, size, align, mp, start, None, None))
                # a second namespace into the same machine, sharing the first one's last section
                cases.append((arch, kernel, 256 * G + 2 * M, align, "mem", None, None,
                              (8 * G, base + 256 * G + 2 * M + 2 * M)))
                # boot RAM, and RAM too small (ENOMEM after a re-plan)
                cases.append((arch, kernel, 256 * G, align, "mem", None, "16G", None))
                cases.append((arch, kernel, 1 * T, align, "mem", None, "1G", None))
    if not quick:
        for kernel in ("6.6", "mm-2026", "v3"):
            cases.append(("x86_64", kernel, 16 * T, 2 * M, "mem", None, None, None))
            cases.append(("x86_64", kernel, 4 * T, 1 * G, "mem", None, None, None))
            cases.append(("x86_64", kernel, 4 * T, 2 * M, "dev", None, None, None))
    return cases


def main() -> None:
    """``out.json [--quick] [--sample K] [--jobs N]``: K keeps every K-th case up to 1 TiB (a
    cross-section for a loaded machine); N worker processes (default 2)."""
    out_path = sys.argv[1]
    cases = grid("--quick" in sys.argv)
    if "--sample" in sys.argv:
        k = int(sys.argv[sys.argv.index("--sample") + 1])
        cases = [c for c in cases if c[2] <= T][::k]
    jobs = int(sys.argv[sys.argv.index("--jobs") + 1]) if "--jobs" in sys.argv else 2
    with ProcessPoolExecutor(jobs) as ex:
        res = dict(ex.map(run_case, cases, chunksize=4))
    with open(out_path, "w") as fh:
        json.dump(res, fh, indent=0, sort_keys=True)
    errors = sum(v.startswith("error:") for v in res.values())
    print(f"{len(res)} cases ({errors} refused) -> {out_path}")


if __name__ == "__main__":
    main()
