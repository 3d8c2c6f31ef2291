"""vmemlab.gup_refs: struct_page_footprint against a count made one struct page at a time.

The expected values are the docstring's definitions applied directly: every touched pfn's
struct page, its 64-byte lines (virtual: the vmemmap address; physical: the frame the init_mm
walk finds behind the line's vmemmap page), and the vmemmap pages behind them, collected in
Python sets.  The machines are small namespaces of each kind of vmemmap: deduplicated (tail
pages aliasing one frame), not deduplicated, memmap on the device, 64 KiB pages.
"""

from __future__ import annotations

import numpy as np
import pytest

import vmemlab
from vmemlab.frames import DEVICE, RAM
from vmemlab.gup_refs import CACHE_LINE, struct_page_footprint

MACHINES = [("x86_64", "2M", "mem", "6.6"), ("x86_64", "2M", "dev", "6.6"),
            ("x86_64", "1G", "mem", "v3"), ("x86_64", "2M", "mem", "5.17"),
            ("x86_64", "4K", "mem", "6.6"), ("arm64-64k", "512M", "mem", "5.19"),
            ("ppc64-radix-64k", "1G", "mem", "6.6")]


def brute_force(m, starts, ends) -> dict[str, int]:
    a = m.arch
    sps, P, L = a.struct_page_size, a.PAGE_SIZE, CACHE_LINE
    pfns = sorted({p for s, e in zip(starts, ends) for p in range(int(s), int(e))})
    vpns = sorted({(p * sps + off) // P for p in pfns for off in (0, sps - 1)})
    home, ppfn = m.pgtables.resolve_pfn(np.array(vpns, np.int64))
    behind = {v: (int(h), int(f)) for v, h, f in zip(vpns, home, ppfn)}
    out = dict(struct_pages=len(pfns), struct_pages_ram=0, struct_pages_device=0)
    vlines, plines = set(), set()
    for p in pfns:
        b0, b1 = p * sps, (p + 1) * sps
        h = behind[b0 // P][0]
        out["struct_pages_ram" if h == RAM else "struct_pages_device"] += 1
        for line in range(b0 // L, -(-b1 // L)):
            vlines.add(line)
            hp, fp = behind[line * L // P]
            plines.add((hp, fp, line * L % P // L))
    pages = {(h, f) for h, f, _ in plines}
    out.update(lines_virtual=len(vlines), lines=len(plines),
               lines_ram=sum(h == RAM for h, _, _ in plines),
               lines_device=sum(h == DEVICE for h, _, _ in plines),
               pages_ram=sum(h == RAM for h, _ in pages),
               pages_device=sum(h == DEVICE for h, _ in pages))
    return out


@pytest.mark.parametrize("arch,align,map_,kernel", MACHINES)
def test_footprint_matches_one_struct_page_at_a_time(arch, align, map_, kernel):
    p = vmemlab.plan("2G", align=align, map=map_, arch=arch, kernel=kernel)
    m = p._machine
    s0, e0 = p._pgmap.ranges[0]
    ps = m.arch.page_shift
    lo = (s0 >> ps) + p.device_data_pages + p.device_align_pages + 64  # past the altmap
    hi = e0 >> ps
    rng = np.random.default_rng(7)
    per_page = m.arch.PAGE_SIZE // m.arch.struct_page_size
    # single struct pages, runs inside one vmemmap page, runs across page boundaries, runs of
    # whole vmemmap pages, and overlapping runs (merged first)
    for max_len in (2, per_page // 2, 3 * per_page, 20 * per_page):
        n = int(rng.integers(1, 40))
        st = rng.integers(lo, hi - max_len, n)
        en = st + rng.integers(1, max_len, n)
        assert struct_page_footprint(m, st, en) == brute_force(m, st, en), (max_len, st, en)
    assert struct_page_footprint(m, np.array([lo]), np.array([lo])) == brute_force(m, [], [])
