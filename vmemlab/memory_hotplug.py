"""mm/memory_hotplug.c: ``__add_pages`` / ``__remove_pages`` split a pfn range into
section-bounded chunks and hand each to mm/sparse.c."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import KernelError
from .frames import VmemAltmap

if TYPE_CHECKING:
    from .machine import Machine
    from .memremap import DevPagemap


def section_chunks(m: Machine, pfn: int, nr_pages: int) -> list[tuple[int, int]]:
    """``cur_nr_pages = min(end_pfn - pfn, SECTION_ALIGN_UP(pfn + 1) - pfn)`` steps."""
    pps = m.arch.PAGES_PER_SECTION
    end = pfn + nr_pages
    if end <= pfn:
        return []
    # the chunks end at each section boundary inside the range, and at its end
    bounds = [pfn, *range((pfn // pps + 1) * pps, end, pps), end]
    return [(lo, hi - lo) for lo, hi in zip(bounds, bounds[1:])]


def check_pfn_span(m: Machine, pfn: int, nr_pages: int, function: str) -> None:
    """``check_pfn_span()``: with SPARSEMEM_VMEMMAP, pfn and nr_pages must be subsection-aligned;
    ``check_hotplug_memory_addressable()``: the range must fit ``MAX_PHYSMEM_BITS``."""
    a = m.arch
    step = a.PAGES_PER_SUBSECTION
    if pfn % step or nr_pages % step or nr_pages <= 0:
        raise KernelError(
            "EINVAL", function,
            f"misaligned range: pfn {pfn:#x} and nr_pages {nr_pages} must be positive multiples "
            f"of PAGES_PER_SUBSECTION ({step} pages = 2 MiB)")
    max_pfn = 1 << (a.max_physmem_bits - a.page_shift)
    if pfn + nr_pages > max_pfn:
        raise KernelError("E2BIG", "check_hotplug_memory_addressable",
                          f"range ends at pfn {pfn + nr_pages:#x}, beyond MAX_PHYSMEM_BITS "
                          f"({a.max_physmem_bits} bits: {max_pfn:#x} pfns)")


def __add_pages(m: Machine, nid: int, pfn: int, nr_pages: int, altmap: VmemAltmap | None,
                pgmap: DevPagemap | None) -> None:
    """``__add_pages(nid, pfn, nr_pages, params)``.

    With an altmap, ``altmap->base_pfn`` must equal ``pfn`` and ``vmem_altmap_offset`` fit in the
    range (-EINVAL).  Chunks go to ``sparse_add_section`` in order.  The kernel stops at the
    first failing chunk; the model then also removes the chunks this call added, so a failed
    hot-add leaves nothing behind.
    """
    if altmap is not None:
        if altmap.base_pfn != pfn or altmap.vmem_altmap_offset() > nr_pages:
            raise KernelError("EINVAL", "__add_pages",
                              f"invalid altmap: base_pfn {altmap.base_pfn:#x} (range starts at "
                              f"{pfn:#x}), offset {altmap.vmem_altmap_offset()} pages of "
                              f"{nr_pages}")
        altmap.alloc = 0
    check_pfn_span(m, pfn, nr_pages, "__add_pages")
    done: list[tuple[int, int]] = []
    try:
        for cpfn, cur in section_chunks(m, pfn, nr_pages):
            m.sparse.sparse_add_section(nid, cpfn, cur, altmap, pgmap)
            done.append((cpfn, cur))
    except KernelError:
        for cpfn, cur in reversed(done):
            m.sparse.sparse_remove_section(cpfn, cur, altmap, pgmap)
        raise


def __remove_pages(m: Machine, pfn: int, nr_pages: int, altmap: VmemAltmap | None,
                   pgmap: DevPagemap | None = None) -> None:
    """``__remove_pages()``: ``sparse_remove_section`` for each section-bounded chunk."""
    check_pfn_span(m, pfn, nr_pages, "__remove_pages")
    chunks = section_chunks(m, pfn, nr_pages)
    for cpfn, cur in chunks:  # refuse before changing anything
        ms = m.sparse.sections.get(m.sparse.pfn_to_section_nr(cpfn))
        mask = m.sparse.subsection_mask(cpfn, cur)
        if ms is None or (ms.subsection_map & mask) != mask:
            raise KernelError("EINVAL", "clear_subsection_map",
                              f"pfns {cpfn:#x}-{cpfn + cur - 1:#x} are not all present")
    for cpfn, cur in chunks:
        m.sparse.sparse_remove_section(cpfn, cur, altmap, pgmap)
