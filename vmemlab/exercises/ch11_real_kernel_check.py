"""Chapter 11, the real-kernel check: seeded problems, registered with
:func:`vmemlab.exercises.base.exercise`."""

from __future__ import annotations

import random

from ..plan import plan
from .base import Exercise, a_or_an, exercise


@exercise("memmap-counter")
def _memmap_counter(r: random.Random, seed: int) -> Exercise:
    gib = r.choice([4, 16])
    align = r.choice(["2M", "1G"])
    kernel = r.choice(["6.12", "6.12.117"])
    p = plan(f"{gib}G", align=align, kernel=kernel)
    return Exercise(
        "memmap-counter", seed,
        f"Creating {a_or_an(gib)} {gib} GiB devdax namespace (align {align}, --map=mem) on kernel {kernel}: "
        f"by how many pages does /proc/vmstat nr_memmap_pages grow?",
        p.nr_memmap_pages,
        ("6.12 (6.11-6.12.10x) counts the full memmap, 64 B per 4 KiB page"
         if kernel == "6.12" else "6.12.117 counts VMEMMAP_RESERVE_NR (2) pages per compound "
                                 "page once deduplicated")
        + f": {p.nr_memmap_pages}.",
        hint="which kernel: before or after the 2026 accounting fix?",
        params={"gib": gib, "align": align, "kernel": kernel})
