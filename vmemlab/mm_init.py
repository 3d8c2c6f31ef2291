"""mm/mm_init.c (mm/page_alloc.c before 6.4): ``memmap_init_zone_device`` and the compound
page helpers it uses.

This module counts what initialisation writes: ``memmap_init_zone_device`` walks the pgmap's
range one compound page at a time, initialises the head with ``__init_zone_device_page`` and,
for compound pages, ``compound_nr_pages(altmap, pgmap)`` struct pages through
``memmap_init_compound`` (kernel-facts.md §7).  With an altmap the pfns that hold the memmap
itself are skipped (``start_pfn = altmap->base_pfn + vmem_altmap_offset(altmap)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .sparse_vmemmap import compound_nr_pages

if TYPE_CHECKING:
    from .machine import Machine
    from .memremap import DevPagemap

#: bytes in one CPU cache line (x86_64, arm64 and ppc64 server parts modelled here: 64/128)
CACHE_LINE = 64


@dataclass(frozen=True)
class InitStats:
    """What one ``memmap_init_zone_device`` call did."""

    start_pfn: int
    nr_pages: int
    compound_pages: int
    pfns_per_compound: int
    struct_pages_per_compound: int
    struct_pages_initialised: int
    cache_lines_touched: int


def memmap_init_zone_device(m: Machine, start_pfn: int, nr_pages: int,
                            pgmap: DevPagemap) -> InitStats:
    """``memmap_init_zone_device(zone, start_pfn, nr_pages, pgmap)``: count the struct pages it
    writes.  Every initialised struct page is written through its own vmemmap address, so the
    cache lines touched are the distinct lines of those struct pages."""
    from .memremap import pgmap_altmap, pgmap_vmemmap_nr

    a = m.arch
    end_pfn = start_pfn + nr_pages
    altmap = pgmap_altmap(pgmap)
    if altmap is not None:
        start_pfn = altmap.base_pfn + altmap.vmem_altmap_offset()
        nr_pages = end_pfn - start_pfn
    pfns_per_compound = pgmap_vmemmap_nr(pgmap) if m.kernel.compound_devmap else 1
    n_compound = -(-nr_pages // pfns_per_compound) if nr_pages > 0 else 0
    per = compound_nr_pages(m, altmap, pgmap) if pfns_per_compound > 1 else 1
    per = min(per, pfns_per_compound)
    # the last compound page may be cut short by end_pfn
    last = nr_pages - (n_compound - 1) * pfns_per_compound if n_compound else 0
    total = (n_compound - 1) * per + min(per, last) if n_compound else 0
    lines_per = -(-per * a.struct_page_size // CACHE_LINE)
    lines = (n_compound - 1) * lines_per + -(-min(per, last) * a.struct_page_size // CACHE_LINE) \
        if n_compound else 0
    return InitStats(start_pfn, nr_pages, n_compound, pfns_per_compound, per, total, lines)
