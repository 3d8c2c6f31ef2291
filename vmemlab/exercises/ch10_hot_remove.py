"""Chapter 10, hot-remove and lifetimes: seeded problems, registered with
:func:`vmemlab.exercises.base.exercise`."""

from __future__ import annotations

import random

import numpy as np

from ..plan import plan, teardown
from .base import Exercise, a_or_an, exercise


@exercise("teardown-refcount")
def _teardown_refcount(r: random.Random, seed: int) -> Exercise:
    k = r.randrange(1, 8)
    p = plan("2G", align="1G")
    m, pg = p._machine, p._pgmap
    a = m.arch
    pfn0 = pg.ranges[0][0] >> a.page_shift
    vpn_tail = (pfn0 * a.struct_page_size >> a.page_shift) + 1
    tail = int(m.pgtables.resolve(np.array([vpn_tail]))[0][0])
    for s in range(k):
        m.sparse.sparse_remove_section(pfn0 + s * a.PAGES_PER_SECTION, a.PAGES_PER_SECTION,
                                       None, pg)
    rc = int(m.frames.refcount[tail]) if m.frames.kind[tail] else 0
    return Exercise(
        "teardown-refcount", seed,
        f"x86_64, kernel 6.6, a 1 GiB device-dax compound page (8 sections of memmap). Its tail "
        f"vmemmap page starts with refcount 4095. Hot-remove removes the first {k} section(s). "
        f"What is the tail page's refcount now (0 if it was freed)?",
        rc,
        f"section 0 held the tail page's own mapping and 510 reuse PTEs (511 references); each "
        f"later section 512. After {k}: 4095 - 511 - {k - 1} x 512 = {rc}.",
        hint="each cleared PTE puts one reference", params={"sections": k})


@exercise("pages-returned")
def _pages_returned(r: random.Random, seed: int) -> Exercise:
    gib = r.choice([2, 4, 8])
    align = r.choice(["2M", "1G"])
    p = plan(f"{gib}G", align=align)
    m = p._machine
    before = m.ram.used
    teardown(p)
    back = before - m.ram.used
    return Exercise(
        "pages-returned", seed,
        f"Hot-removing {a_or_an(gib)} {gib} GiB namespace (align {align}, --map=mem, x86_64, 6.6) "
        f"that was the "
        f"only one in its region: how many RAM pages come back, data and page tables together?",
        back,
        f"every vmemmap data page ({p.ram_data_pages}) and every page-table page "
        f"({p.ram_pagetable_pages}) that populating it allocated: {back}.",
        hint="what populating it cost: data pages plus page-table pages",
        params={"gib": gib, "align": align})
