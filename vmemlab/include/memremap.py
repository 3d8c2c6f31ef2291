"""include/linux/memremap.h: ``struct dev_pagemap``, ``struct vmem_altmap`` and their inline
helpers (``pgmap_vmemmap_nr``, ``pgmap_altmap``, ``pgmap_pfn_valid``).

mm/memremap.c (:mod:`vmemlab.memremap`), mm/sparse-vmemmap.c, mm/mm_init.c, mm/gup.c and
drivers/ all include this header; none of them needs another's ``.c`` code for these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ParameterError
from ..units import as_int


@dataclass
class VmemAltmap:
    """``struct vmem_altmap`` (include/linux/memremap.h; mm.h in 6.x).

    Pre-allocated device pages for the memmap: ``base_pfn`` is the first pfn of the device,
    ``reserve`` pages at the start belong to the driver (the info block), ``free`` pages are set
    aside for struct pages, ``align`` counts pages skipped for alignment, ``alloc`` pages handed out.
    """

    base_pfn: int
    end_pfn: int
    reserve: int
    free: int
    align: int = 0
    alloc: int = 0

    def __post_init__(self) -> None:
        for name in ("base_pfn", "end_pfn", "reserve", "free", "align", "alloc"):
            setattr(self, name, as_int(name, getattr(self, name), 0, None,
                                       "a page count or pfn >= 0 (an int)"))
        if self.end_pfn < self.base_pfn:
            raise ParameterError("end_pfn", self.end_pfn, f">= base_pfn ({self.base_pfn:#x})")

    def vmem_altmap_offset(self) -> int:
        """``vmem_altmap_offset()``: pfns from ``base_pfn`` to the first device data pfn."""
        return self.reserve + self.free

    def vmem_altmap_next_pfn(self) -> int:
        """``vmem_altmap_next_pfn()`` (mm/sparse-vmemmap.c)."""
        return self.base_pfn + self.reserve + self.alloc + self.align

    def vmem_altmap_nr_free(self) -> int:
        """``vmem_altmap_nr_free()``: pages still available, never negative."""
        allocated = self.alloc + self.align
        return self.free - allocated if self.free > allocated else 0

    def altmap_alloc_block_buf(self, size: int, page_shift: int) -> int | None:
        """``altmap_alloc_block_buf(size, altmap)`` (mm/sparse-vmemmap.c, 5.x-6.x).

        Returns the first pfn of the block, or ``None`` when the altmap cannot satisfy it (the
        kernel returns NULL; its callers turn that into ``-ENOMEM``).  A block of ``nr`` pages is
        aligned to the lowest set bit of ``nr`` and the skipped pages are charged to ``align``.
        """
        if size & ((1 << page_shift) - 1):
            return None
        pfn = self.vmem_altmap_next_pfn()
        nr_pfns = size >> page_shift
        nr_align = nr_pfns & -nr_pfns  # 1UL << find_first_bit(&nr_pfns, BITS_PER_LONG)
        nr_align = (-(-pfn // nr_align) * nr_align) - pfn
        if nr_pfns + nr_align > self.vmem_altmap_nr_free():
            return None
        self.alloc += nr_pfns
        self.align += nr_align
        return pfn + nr_align

    def vmem_altmap_free(self, nr_pfns: int) -> None:
        """``vmem_altmap_free()``: ``alloc -= nr_pfns``; ``align`` is never given back."""
        if nr_pfns > self.alloc:
            raise AssertionError(f"altmap underflow: freeing {nr_pfns} of {self.alloc}")
        self.alloc -= nr_pfns


MEMORY_DEVICE_GENERIC = "MEMORY_DEVICE_GENERIC"
MEMORY_DEVICE_FS_DAX = "MEMORY_DEVICE_FS_DAX"
PGMAP_ALTMAP_VALID = 1 << 0


@dataclass(eq=False)
class DevPagemap:
    """``struct dev_pagemap`` (include/linux/memremap.h, 5.17+ field names).

    ``ranges`` holds ``(start, end_exclusive)`` physical byte ranges (the kernel's ``struct
    range`` has an inclusive end); ``nr_range`` is, while ``memremap_pages`` runs, the index of
    the range being onlined and afterwards the number of ranges.
    """

    ranges: list[tuple[int, int]]
    vmemmap_shift: int = 0
    altmap: VmemAltmap | None = None
    flags: int = 0
    type: str = MEMORY_DEVICE_GENERIC
    nr_range: int = 0
    name: str = "dax0.0"
    #: set by memremap_pages: struct pages memmap_init_zone_device wrote, per range
    init_stats: list = field(default_factory=list)
    #: ``percpu_ref_get_many(pgmap->ref, ...)``: one reference per compound page (5.17+)
    ref: int = 0
    #: bytes from the start of range 0 to where the device-dax data (file offset 0) begins:
    #: the nd_pfn ``dataoff`` for a namespace (not a kernel field: dev_dax keeps it in its range)
    data_offset: int = 0

    def pfn_range(self, i: int, page_shift: int) -> tuple[int, int]:
        s, e = self.ranges[i]
        return s >> page_shift, e >> page_shift


def pgmap_vmemmap_nr(pgmap: DevPagemap) -> int:
    """``pgmap_vmemmap_nr(pgmap)``: ``1 << pgmap->vmemmap_shift`` pages per compound page."""
    return 1 << pgmap.vmemmap_shift


def pgmap_altmap(pgmap: DevPagemap) -> VmemAltmap | None:
    """``pgmap_altmap(pgmap)``: the altmap if ``PGMAP_ALTMAP_VALID`` is set."""
    return pgmap.altmap if pgmap.flags & PGMAP_ALTMAP_VALID else None


def pgmap_pfn_valid(pgmap: DevPagemap, pfn: int, page_shift: int) -> bool:
    """``pgmap_pfn_valid(pgmap, pfn)``: inside a range, and (range 0 with an altmap) past the
    pages that hold the memmap and the info block."""
    for i in range(len(pgmap.ranges)):
        lo, hi = pgmap.pfn_range(i, page_shift)
        if lo <= pfn < hi:
            altmap = pgmap_altmap(pgmap)
            if i == 0 and altmap is not None:
                return pfn >= lo + altmap.vmem_altmap_offset()
            return True
    return False
