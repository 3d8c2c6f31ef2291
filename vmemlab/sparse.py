"""mm/sparse.c: memory sections, subsection maps, section activation and deactivation.

A section is ``1 << SECTION_SIZE_BITS`` bytes (128 MiB on x86_64); since 5.3 it is split into
2 MiB subsections, tracked by ``ms->usage->subsection_map`` so that device memory can be added
and removed at subsection granularity (kernel-facts.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import KernelError
from .frames import VmemAltmap
from .sparse_vmemmap import (
    VMEMMAP_RESERVE_NR,
    __populate_section_memmap,
    check_section_memmap_span,
    vmemmap_can_optimize,
    vmemmap_free,
)
from .units import as_int
from .vmemmap_optimization import populate_section_memmap as shared_tail_populate_section_memmap
from .vmemmap_optimization import (
    section_activate_order,
    section_deactivate_done,
)
from .vmemmap_optimization import section_nr_vmemmap_pages as shared_tail_section_nr_vmemmap_pages

if TYPE_CHECKING:
    from .include.memremap import DevPagemap
    from .machine import Machine


@dataclass
class MemSection:
    """``struct mem_section`` as far as the model needs it."""

    nr: int
    subsection_map: int = 0  #: ``ms->usage->subsection_map`` as an int bitmask
    early: bool = False  #: ``SECTION_IS_EARLY``: boot memory, memmap from memblock
    nid: int = 0
    zone_device: bool = False  #: ``SECTION_TAINT_ZONE_DEVICE``

    @property
    def has_mem_map(self) -> bool:
        return self.subsection_map != 0


class Sparse:
    """The ``mem_section`` array (``SPARSEMEM_EXTREME``: only sections in use exist)."""

    def __init__(self, m: Machine) -> None:
        self.m = m
        self.sections: dict[int, MemSection] = {}
        #: vmemmap pages that were mapped before a hot-add now being undone (see memremap)
        self.keep_vpns: set[int] = set()
        #: the section whose memmap is being populated for the first time: not yet
        #: ``valid_section()`` (``SECTION_HAS_MEM_MAP`` comes with ``sparse_init_one_section``
        #: afterwards), so ``pfn_valid()`` is false over it even where its subsection bits are
        #: set already; ppc64's ``vmemmap_populated()`` depends on it
        self.activating: int | None = None
        a = m.arch
        # read for every section a hot-add touches
        self._section_shift = a.PFN_SECTION_SHIFT
        self._section_mask = a.PAGES_PER_SECTION - 1
        self._subsection_shift = a.PFN_SUBSECTION_SHIFT

    # -- pfn arithmetic -------------------------------------------------------------------------
    def pfn_to_section_nr(self, pfn: int) -> int:
        return pfn >> self._section_shift

    def section_nr_to_pfn(self, nr: int) -> int:
        return nr << self.m.arch.PFN_SECTION_SHIFT

    def subsection_mask(self, pfn: int, nr_pages: int) -> int:
        """``subsection_mask_set()``: bits for the subsections ``[pfn, pfn + nr_pages)`` covers
        inside ``pfn``'s section."""
        if nr_pages == 0:
            return 0
        mask, shift = self._section_mask, self._subsection_shift
        first = (pfn & mask) >> shift
        last = ((pfn + nr_pages - 1) & mask) >> shift
        return ((1 << (last + 1)) - 1) & ~((1 << first) - 1)

    def pfn_valid(self, pfn: int) -> bool:
        """``pfn_valid()``: the pfn's section exists and (hot-added sections) its subsection is
        present."""
        pfn = as_int("pfn", pfn, None, None, "a page frame number (an int)")
        if pfn < 0:
            return False
        ms = self.sections.get(self.pfn_to_section_nr(pfn))
        if ms is None:
            return False
        if ms.early:
            return True
        return bool(ms.subsection_map & self.subsection_mask(pfn, 1))

    def memmap_in_use(self, vpn_lo: int, vpn_hi: int) -> bool:
        """Does any present subsection's memmap lie in vmemmap pages ``[vpn_lo, vpn_hi)``?
        (Also true for :attr:`keep_vpns`: pages a failed hot-add's undo must leave mapped.)"""
        if self.keep_vpns and any(v in self.keep_vpns for v in range(vpn_lo, vpn_hi)):
            return True
        a = self.m.arch
        pfn_lo = (vpn_lo << a.page_shift) // a.struct_page_size
        pfn_hi = -(-(vpn_hi << a.page_shift) // a.struct_page_size)
        step = a.PAGES_PER_SUBSECTION
        for p in range(pfn_lo - pfn_lo % step, pfn_hi, step):
            if self.pfn_valid(p):
                return True
        return False

    # -- subsection map -------------------------------------------------------------------------
    def fill_subsection_map(self, pfn: int, nr_pages: int) -> None:
        """``fill_subsection_map()``: -EINVAL for an empty mask, -EEXIST on overlap."""
        ms = self.sections[pfn >> self._section_shift]
        mask = self.subsection_mask(pfn, nr_pages)
        if not mask:
            raise KernelError("EINVAL", "fill_subsection_map", "empty subsection mask")
        if ms.subsection_map & mask:
            raise KernelError(
                "EEXIST", "fill_subsection_map",
                f"pfns {pfn:#x}-{pfn + nr_pages - 1:#x} overlap subsections already present in "
                f"section {ms.nr}")
        ms.subsection_map |= mask

    def clear_subsection_map(self, pfn: int, nr_pages: int) -> bool:
        """``clear_subsection_map()``; returns whether the section is now empty.  -EINVAL (and
        a WARN in the kernel) if the subsections were not all present."""
        ms = self.sections.get(self.pfn_to_section_nr(pfn))
        mask = self.subsection_mask(pfn, nr_pages)
        if ms is None or (ms.subsection_map & mask) != mask:
            raise KernelError("EINVAL", "clear_subsection_map",
                              f"pfns {pfn:#x}-{pfn + nr_pages - 1:#x} are not all present")
        ms.subsection_map &= ~mask
        return ms.subsection_map == 0

    # -- activation -----------------------------------------------------------------------------
    def section_activate(self, nid: int, pfn: int, nr_pages: int, altmap: VmemAltmap | None,
                         pgmap: DevPagemap | None) -> None:
        """``section_activate(nid, pfn, nr_pages, altmap, pgmap)``: mark the subsections present
        and populate their memmap; on failure undo both (``section_deactivate``), -ENOMEM."""
        m = self.m
        if m.kernel.shared_tail and pgmap is not None:  # the 2026 rework: -EOPNOTSUPP first
            section_activate_order(m, pfn, nr_pages, altmap, pgmap)
        nr = pfn >> self._section_shift
        ms = self.sections[nr]
        first = not ms.subsection_map and not ms.early
        self.fill_subsection_map(pfn, nr_pages)
        self.activating = nr if first else None
        try:
            populate_section_memmap(m, pfn, nr_pages, altmap, pgmap)
        except KernelError as e:
            self.activating = None
            self.section_deactivate(pfn, nr_pages, altmap, pgmap=pgmap)
            raise KernelError("ENOMEM", "section_activate",
                              f"populating the memmap of pfns {pfn:#x}+{nr_pages} failed "
                              f"({e})") from e
        self.activating = None
        if m.kernel.memmap_counter:  # 6.11+: nr_memmap_pages
            m.memmap_pages_add(self.section_nr_vmemmap_pages(pfn, nr_pages, altmap, pgmap))

    def section_nr_vmemmap_pages(self, pfn: int, nr_pages: int, altmap: VmemAltmap | None = None,
                                 pgmap: DevPagemap | None = None) -> int:
        """What ``nr_memmap_pages`` (6.11+) moves by for a populated range.

        6.11 to the 2026 fix: ``DIV_ROUND_UP(nr_pages * sizeof(struct page), PAGE_SIZE)`` -- the
        full memmap, deduplicated or not, in RAM or on the device (kernel-facts.md §12).  With
        the fix (``section_nr_vmemmap_pages()``, mm/sparse-vmemmap.c, kernel variant
        ``6.12.117``): when ``vmemmap_can_optimize``, ``VMEMMAP_RESERVE_NR * nr_pages /
        pages_per_compound`` for orders below a section, else ``VMEMMAP_RESERVE_NR`` for a
        chunk whose pfn is compound-aligned and 0 for the others."""
        a = self.m.arch
        if self.m.kernel.shared_tail:  # the 2026 rework counts by the section's order
            return shared_tail_section_nr_vmemmap_pages(self.m, pfn, nr_pages)
        full = -(-(nr_pages * a.struct_page_size) // a.PAGE_SIZE)
        if not self.m.kernel.memmap_counter_dedup or not vmemmap_can_optimize(self.m, altmap,
                                                                              pgmap):
            return full
        order = pgmap.vmemmap_shift
        if order < a.PFN_SECTION_SHIFT:
            return VMEMMAP_RESERVE_NR * nr_pages // (1 << order)
        return VMEMMAP_RESERVE_NR if pfn % (1 << order) == 0 else 0

    def _memmap_pages(self, nr_pages: int) -> int:
        """The full count (boot memory, and every variant before the 2026 fix)."""
        return self.section_nr_vmemmap_pages(0, nr_pages)

    def section_deactivate(self, pfn: int, nr_pages: int, altmap: VmemAltmap | None,
                           populated: bool = False, pgmap: DevPagemap | None = None) -> None:
        """``section_deactivate(pfn, nr_pages, altmap, pgmap)``: clear the subsections, free
        their memmap (``depopulate_section_memmap``), drop the section once it is empty.  The
        pgmap argument is the 2026 "pass @pgmap argument to memory deactivation paths"; the
        model always passes it so the memmap counter can undo what activation added."""
        ms = self.sections[self.pfn_to_section_nr(pfn)]
        empty = self.clear_subsection_map(pfn, nr_pages)
        if not ms.early:
            # counted before the memmap goes: the 2026 fixes pass the pgmap down this path too
            counted = self.section_nr_vmemmap_pages(pfn, nr_pages, altmap, pgmap)
            depopulate_section_memmap(self.m, pfn, nr_pages, altmap)
            if populated:
                self.m.memmap_pages_add(-counted)
        if empty:
            del self.sections[ms.nr]
        if self.m.kernel.shared_tail:
            section_deactivate_done(self.m, pfn, empty)

    def sparse_add_section(self, nid: int, start_pfn: int, nr_pages: int,
                           altmap: VmemAltmap | None, pgmap: DevPagemap | None) -> None:
        """``sparse_add_section()``: ``sparse_index_init`` + ``section_activate`` for one
        section-bounded chunk."""
        nr = start_pfn >> self._section_shift
        created = nr not in self.sections
        if created:
            self.sections[nr] = MemSection(nr, nid=nid, zone_device=pgmap is not None)
        try:
            self.section_activate(nid, start_pfn, nr_pages, altmap, pgmap)
        except KernelError:
            if created and nr in self.sections and not self.sections[nr].subsection_map:
                del self.sections[nr]
            raise

    def sparse_remove_section(self, pfn: int, nr_pages: int, altmap: VmemAltmap | None,
                              pgmap: DevPagemap | None = None) -> None:
        """``sparse_remove_section()`` -> ``section_deactivate``."""
        self.section_deactivate(pfn, nr_pages, altmap, populated=True, pgmap=pgmap)


def depopulate_section_memmap(m: Machine, pfn: int, nr_pages: int,
                              altmap: VmemAltmap | None) -> None:
    """``depopulate_section_memmap()`` (mm/sparse.c): ``vmemmap_free`` of just this range."""
    start = pfn * m.arch.struct_page_size
    vmemmap_free(m, start, start + nr_pages * m.arch.struct_page_size, altmap)


def populate_section_memmap(m: Machine, pfn: int, nr_pages: int, altmap: VmemAltmap | None,
                            pgmap: DevPagemap | None) -> None:
    """``populate_section_memmap()`` (mm/sparse.c): the VMEMMAP build's wrapper of
    ``__populate_section_memmap`` (mm/sparse-vmemmap.c); kernel variant ``mm-2026`` takes the
    rework's instead (:func:`vmemlab.vmemmap_optimization.populate_section_memmap`), after the
    same subsection check."""
    if m.kernel.shared_tail:  # the 2026 rework (kernel variant mm-2026)
        check_section_memmap_span(m, pfn, nr_pages)
        return shared_tail_populate_section_memmap(m, pfn, nr_pages, altmap, pgmap)
    __populate_section_memmap(m, pfn, nr_pages, altmap, pgmap)
