"""Chapter 6, bootstrap: struct pages written and init time: seeded problems, registered with
:func:`vmemlab.exercises.base.exercise`."""

from __future__ import annotations

import random

from ..mm_init import calibrate_init_cost
from ..plan import plan
from .base import Exercise, a_or_an, exercise


@exercise("struct-pages-initialised")
def _init(r: random.Random, seed: int) -> Exercise:
    gib = r.choice([16, 64, 128])
    align = r.choice(["2M", "1G"])
    p = plan(f"{gib}G", align=align)
    return Exercise(
        "struct-pages-initialised", seed,
        f"memmap_init_zone_device for {a_or_an(gib)} {gib} GiB namespace at align {align} (x86_64, 6.6, "
        f"--map=mem): how many struct pages does it write?",
        p.struct_pages_initialised,
        f"compound_nr_pages = VMEMMAP_RESERVE_NR * (PAGE_SIZE / 64) = 128 per compound page; "
        f"{p.compound_pages} compound pages x 128 = {p.struct_pages_initialised}.",
        hint="only the struct pages in the two vmemmap pages each compound page keeps",
        params={"gib": gib, "align": align})


@exercise("init-time")
def _init_time(r: random.Random, seed: int) -> Exercise:
    gib = r.choice([64, 256, 512])
    align = r.choice(["4K", "2M"])
    model = calibrate_init_cost(plan("128G", align="4K")._pgmap.init_stats)
    stats = plan(f"{gib}G", align=align)._pgmap.init_stats
    ms = round(model.predict_ms(stats))
    n = sum(s.struct_pages_initialised for s in stats)
    return Exercise(
        "init-time", seed,
        f"With the cost model calibrated on the cover letter's 4K figure "
        f"({model.ns_per_struct_page:.2f} ns per struct page written), how many milliseconds "
        f"(rounded) does memmap_init_zone_device take for {a_or_an(gib)} {gib} GiB namespace at align "
        f"{align} (x86_64, 6.6, --map=mem)?",
        ms,
        f"{n} struct pages written x {model.ns_per_struct_page:.2f} ns = {ms} ms.",
        hint="struct pages written = compound pages x compound_nr_pages",
        params={"gib": gib, "align": align})
