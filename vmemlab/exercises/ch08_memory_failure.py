"""Chapter 8, memory failure: seeded problems, registered with
:func:`vmemlab.exercises.base.exercise`."""

from __future__ import annotations

import random

from ..dax_device import dax_mmap_plan
from ..errors import KernelError
from ..memory_failure import memory_failure
from ..plan import plan
from ..units import format_size
from .base import Exercise, exercise


@exercise("mf-unmap-len")
def _mf_unmap_len(r: random.Random, seed: int) -> Exercise:
    kernel = r.choice(["5.17", "6.6"])
    c = r.randrange(1, 200)
    t = r.randrange(1, 512)
    p = plan("1G", align="2M", map="dev", kernel=kernel)
    vma = dax_mmap_plan(p)
    dev_mib = (vma.vm_end - vma.vm_start) >> 20
    pfn = int(vma.va_to_pfn(vma.vm_start + c * p.align + t * p.page_size))
    res = memory_failure(p._machine, pfn, mappings=[("app", vma)])
    mib = res.unmap_start >> 20
    return Exercise(
        "mf-unmap-len", seed,
        f"Kernel {kernel}, x86_64: a process maps a whole device-dax instance (a 1 GiB "
        f"namespace, align 2M, --map=dev: {dev_mib} MiB of data after the memmap on the "
        f"device) from file offset 0, every page faulted in. memory_failure() hits tail {t} "
        f"of the compound page at file offset {2 * c} MiB. At which file offset (in MiB) does "
        f"the range unmap_mapping_range() tears down start?",
        mib,
        f"start = (head->index << PAGE_SHIFT) & ~(size - 1) with the HEAD's index (patch 1 "
        f"fetches compound_head first) and size = 2 MiB (a PMD mapping): {mib} MiB; the length "
        f"is size, {res.unmap_len >> 20} MiB (the start + size length was fixed in 5.13 by "
        f"4d75136be8bf).",
        hint="start = (head->index << PAGE_SHIFT) & ~(size - 1); whose index?",
        params={"kernel": kernel, "c": c, "t": t, "device_mib": dev_mib})


@exercise("mf-enxio-pfns")
def _mf_enxio_pfns(r: random.Random, seed: int) -> Exercise:
    gib = r.choice([1, 4, 16, 64])
    p = plan(f"{gib}G", align="2M", map="dev")
    m, pg = p._machine, p._pgmap
    base = pg.ranges[0][0] >> m.arch.page_shift

    def refused(pfn: int) -> bool:
        try:
            memory_failure(m, pfn)
        except KernelError as e:
            return e.errno == "ENXIO"
        return False

    lo, hi = 0, (pg.ranges[0][1] - pg.ranges[0][0]) >> m.arch.page_shift
    while lo < hi:  # first pfn offset memory_failure accepts (binary search on the model)
        mid = (lo + hi) // 2
        if refused(base + mid):
            lo = mid + 1
        else:
            hi = mid
    return Exercise(
        "mf-enxio-pfns", seed,
        f"A {gib} GiB namespace, --map=dev, align 2M (x86_64, 6.6). memory_failure() refuses "
        f"with -ENXIO every pfn at the start of the namespace that holds the info block or the "
        f"memmap (pgmap_pfn_valid() is false). How many pfns is that?",
        lo,
        f"pgmap_pfn_valid: pfn >= range start + vmem_altmap_offset() = reserve + free = "
        f"{pg.altmap.reserve} + {lo - pg.altmap.reserve}: the 8 KiB info block, {gib} GiB / 4 KiB "
        f"x 64 B of struct pages, rounded up to the 2 MiB alignment: {lo} pfns "
        f"({format_size(lo << m.arch.page_shift)}).",
        hint="the data starts at the first 2 MiB boundary after 8 KiB + 64 bytes per 4 KiB page",
        params={"gib": gib})
