"""mm/memremap.c: ``memremap_pages``, ``memunmap_pages``.  ``struct dev_pagemap`` and its
helpers live in the header module :mod:`vmemlab.include.memremap` (include/linux/memremap.h) and
are re-exported here.

A device-dax instance hands ``memremap_pages`` a pgmap whose ``vmemmap_shift`` comes from the
device alignment (``dev_dax_probe``, 5.17+): 2 MiB -> 9, 1 GiB -> 18 on x86_64.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import KernelError, ParameterError, VmemlabError
from .include.memremap import (
    MEMORY_DEVICE_FS_DAX,
    MEMORY_DEVICE_GENERIC,
    PGMAP_ALTMAP_VALID,
    DevPagemap,
    VmemAltmap,
    pgmap_altmap,
    pgmap_pfn_valid,
    pgmap_vmemmap_nr,
)
from .memory_hotplug import __add_pages, __remove_pages, section_chunks
from .mm_init import memmap_init_zone_device
from .powerpc_vmemmap import ppc64_check_memmap, ppc64_memmap_vpns, ppc64_radix_vmemmap_6_6
from .sparse_vmemmap import reuse_compound_section, vmemmap_can_optimize
from .units import as_int
from .vmemmap_optimization import drop_new_unused_tails, shared_tail_keys

if TYPE_CHECKING:
    from .machine import Machine

__all__ = ["MEMORY_DEVICE_FS_DAX", "MEMORY_DEVICE_GENERIC", "PGMAP_ALTMAP_VALID", "DevPagemap",
           "VmemAltmap", "pgmap_altmap", "pgmap_pfn_valid", "pgmap_vmemmap_nr", "memremap_pages",
           "memunmap_pages", "vmemmap_overrun_vpns"]


def memremap_pages(m: Machine, pgmap: DevPagemap, nid: int = 0) -> None:
    """``memremap_pages(pgmap, nid)`` -> ``pagemap_range`` for each range.

    Refuses like the kernel: -EINVAL for an altmap with several ranges, -ENOMEM "Conflicting
    mapping in same section" when a range's first or last pfn already belongs to a pgmap, -ENXIO
    when it intersects System RAM; then ``__add_pages`` (which may refuse -EINVAL, -EEXIST,
    -E2BIG, -ENOMEM) and ``memmap_init_zone_device``.  On failure the ranges already added are
    removed again, so the machine is as it was.
    """
    a = m.arch
    _check_pgmap(m, pgmap)
    if pgmap_altmap(pgmap) is not None and len(pgmap.ranges) > 1:
        raise KernelError("EINVAL", "pagemap_range", "altmap not supported for multiple ranges")
    if pgmap in m.pgmaps:
        raise KernelError("EBUSY", "memremap_pages", f"{pgmap.name} is already mapped")
    for s, e in pgmap.ranges:
        for pfn in (s >> a.page_shift, (e >> a.page_shift) - 1):
            other = m.get_dev_pagemap(pfn)
            if other is not None:
                raise KernelError("ENOMEM", "pagemap_range",
                                  f"Conflicting mapping in same section: pfn {pfn:#x} belongs "
                                  f"to {other.name}")
        if s < m.boot_ram_end and e > 0:
            raise KernelError("ENXIO", "pagemap_range",
                              f"range {s:#x}-{e - 1:#x} intersects System RAM "
                              f"(0-{m.boot_ram_end - 1:#x})")
    tails_before = shared_tail_keys(m)  # mm-2026: shared tail pages a failure must give back
    done = 0
    pgmap.init_stats = []
    # pages a failure must not take away: mapped already (another range's, or a leak the
    # kernel left from an earlier hot-add)
    pre_mapped = [_mapped(m, vmemmap_overrun_vpns(m, pgmap, *pgmap.pfn_range(i, a.page_shift)))
                  for i in range(len(pgmap.ranges))]
    # vmemmap pages mapped before this call stay mapped if it fails (the undo in __add_pages
    # and below must not free a neighbour's page, or one the kernel leaked earlier)
    m.sparse.keep_vpns = _mapped(m, _chunk_edge_vpns(m, pgmap))
    leaked_before = set(m.pgtables.leaked_pte)
    # ppc64 radix before 6.6 frees only vmemmap_list blocks, so the undo below cannot take
    # back the pages the generic compound path mapped: note what was mapped before
    ppc64_before_6_6 = a.name == "ppc64-radix-64k" and not ppc64_radix_vmemmap_6_6(m)
    ppc64_span = ppc64_memmap_vpns(m, pgmap) if ppc64_before_6_6 else None
    ppc64_pre = _mapped(m, ppc64_span) if ppc64_before_6_6 else set()
    try:
        for i in range(len(pgmap.ranges)):
            pgmap.nr_range = i
            pfn, end_pfn = pgmap.pfn_range(i, a.page_shift)
            __add_pages(m, nid, pfn, end_pfn - pfn, pgmap_altmap(pgmap), pgmap)
            done += 1
            if ppc64_before_6_6:
                ppc64_check_memmap(m, pgmap, pfn, end_pfn)
            else:
                _check_memmap_mapped(m, pfn, end_pfn)
            pgmap.init_stats.append(
                memmap_init_zone_device(m, pfn, end_pfn - pfn, pgmap))
    except VmemlabError:
        try:
            for i in reversed(range(done)):
                pfn, end_pfn = pgmap.pfn_range(i, a.page_shift)
                __remove_pages(m, pfn, end_pfn - pfn, pgmap_altmap(pgmap), pgmap)
        finally:
            m.sparse.keep_vpns = set()
        for i in range(min(done + 1, len(pgmap.ranges))):
            _clear_stray_vmemmap(m, pgmap, *pgmap.pfn_range(i, a.page_shift),
                                 keep=pre_mapped[i])
        if ppc64_before_6_6:
            for v in sorted(_mapped(m, ppc64_span) - ppc64_pre):
                if not m.sparse.memmap_in_use(v, v + 1):
                    m.pgtables.remove_range(v, v + 1)
        m.pgtables.unleak_pte_tables(leaked_before)
        m.pgtables.prune_empty()
        pgmap.nr_range = 0
        pgmap.init_stats = []
        m.forget_struct_pages(pgmap)
        drop_new_unused_tails(m, tails_before)
        raise
    m.sparse.keep_vpns = set()
    pgmap.nr_range = len(pgmap.ranges)
    # percpu_ref_get_many(pgmap->ref, pfn_len(pgmap, range_id)): from pfn_first(), which skips
    # the pfns an altmap holds, one reference per compound page (5.17+)
    pgmap.ref = sum(st.compound_pages for st in pgmap.init_stats)
    m.pgmaps.append(pgmap)


def _check_pgmap(m: Machine, pgmap: DevPagemap) -> None:
    """What ``memremap_pages`` and its device-dax caller refuse before touching anything.

    * ``nr_range`` 0: ``WARN_ONCE(!nr_range, "nr_range must be specified")``, -EINVAL
      (mm/memremap.c, 5.10+).
    * A compound page larger than a range: device-dax refuses such a device before it builds
      the pgmap (``dev_dax_validate_align()``, drivers/dax/bus.c: the device size and every
      range length must be multiples of ``align``), -EINVAL; ``vmemmap_shift`` is
      ``order_base_2(align >> PAGE_SHIFT)`` there, so it never exceeds what the range holds.
    * Values the model cannot express (a float order, a negative or unaligned address) are
      :class:`ParameterError`.
    """
    a = m.arch
    if not isinstance(pgmap, DevPagemap):
        raise ParameterError("pgmap", pgmap, "a DevPagemap")
    shift = as_int("vmemmap_shift", pgmap.vmemmap_shift, 0, a.max_order,
                   f"an order from 0 to {a.max_order} on {a.name} (an int)")
    pgmap.vmemmap_shift = shift
    ranges = pgmap.ranges
    if not isinstance(ranges, (list, tuple)):
        raise ParameterError("ranges", ranges, "a list of (start, end) physical byte ranges")
    if len(ranges) == 0:
        raise KernelError("EINVAL", "memremap_pages", "nr_range must be specified (WARN_ONCE)")
    limit = 1 << 64  # a phys_addr_t; MAX_PHYSMEM_BITS is __add_pages' check (-E2BIG)
    clean = []
    for i, r in enumerate(ranges):
        if not isinstance(r, (list, tuple)) or len(r) != 2:
            raise ParameterError(f"ranges[{i}]", r, "a (start, end) pair of byte addresses")
        s = as_int(f"ranges[{i}] start", r[0], 0, limit,
                   "a physical byte address below 2^64 (an int)")
        e = as_int(f"ranges[{i}] end", r[1], 0, limit,
                   "a physical byte address up to 2^64 (an int)")
        if e <= s:
            raise ParameterError(f"ranges[{i}]", r, "start < end (end is exclusive)")
        if (e - s) >> a.page_shift < 1 << shift:
            raise KernelError(
                "EINVAL", "dev_dax_validate_align",
                f"range {i} ({(e - s) >> 20} MiB) is smaller than one compound page of order "
                f"{shift} ({(1 << (shift + a.page_shift)) >> 20} MiB)")
        nr_bytes = 1 << (shift + a.page_shift)
        if (e - s) % nr_bytes and nr_bytes < 1 << a.section_size_bits:
            # vmemmap_populate_compound_pages() maps each compound page's memmap up to
            # ``last = addr + size``, past ``end`` for a short last page, and vmemmap_free()
            # never clears those PTEs; device-dax never gets there (dev_dax_validate_align)
            raise KernelError(
                "EINVAL", "dev_dax_validate_align",
                f"range {i} ({(e - s) >> 20} MiB) is not a multiple of the compound page size "
                f"({nr_bytes >> 20} MiB, order {shift})")
        clean.append((s, e))
    pgmap.ranges = clean


def _check_memmap_mapped(m: Machine, pfn: int, end_pfn: int) -> None:
    """``memmap_init_zone_device`` writes every struct page of the range through the vmemmap;
    where the population left a hole the kernel faults there ("BUG: unable to handle page
    fault").  The generic ``vmemmap_populate_range()`` loop (``for (; addr < end; addr +=
    PAGE_SIZE)``, mm/sparse-vmemmap.c 5.19-6.12) misses the last vmemmap page when ``start``
    is not page-aligned and the memmap ends in the next page -- a subsection's memmap is half
    a page on arm64 16K and 1/32 on 64K.  The model refuses such a hot-add (-EFAULT) instead
    of leaving pfn_valid() pfns whose struct pages cannot be read."""
    a = m.arch
    sz = a.struct_page_size
    # only a chunk whose memmap starts inside a page can end on a page the loop never visits
    last = [((c + n) * sz - 1) >> a.page_shift for c, n in section_chunks(m, pfn, end_pfn - pfn)
            if (c * sz) % a.PAGE_SIZE]
    if not last:
        return
    vpn = m.pgtables.first_unmapped(np.unique(np.array(last, np.int64)))
    if vpn is not None:
        raise KernelError(
            "EFAULT", "memmap_init_zone_device",
            f"the memmap of pfns {pfn:#x}-{end_pfn - 1:#x} has a hole at vmemmap page {vpn}: "
            f"vmemmap_populate_range() stepped over it from an unaligned start; the kernel "
            f"would fault writing those struct pages")


def vmemmap_overrun_vpns(m: Machine, pgmap: DevPagemap, pfn: int, end_pfn: int) -> np.ndarray:
    """Vmemmap pages past each section chunk's memmap that the generic
    ``vmemmap_populate_compound_pages`` (5.19-6.x) may map: its loop populates a whole compound
    page's memmap, ``[addr, addr + size)``, even where that runs past ``end`` (a compound page
    cut by the chunk's end), and with a step under two pages it also maps ``addr +
    PAGE_SIZE``.  ``vmemmap_free(start, end)`` never clears them."""
    a = m.arch
    if not vmemmap_can_optimize(m, pgmap_altmap(pgmap), pgmap):
        return np.empty(0, np.int64)
    sz, page = a.struct_page_size, a.PAGE_SIZE
    out = []
    saved = pgmap.nr_range
    for i in range(len(pgmap.ranges)):
        lo, hi = pgmap.pfn_range(i, a.page_shift)
        if not (lo < end_pfn and pfn < hi):
            continue
        pgmap.nr_range = i
        for c, n in section_chunks(m, max(lo, pfn), min(hi, end_pfn) - max(lo, pfn)):
            if reuse_compound_section(m, c, pgmap):
                continue
            start, end = c * sz, (c + n) * sz
            size = min(end - start, pgmap_vmemmap_nr(pgmap) * sz)
            steps = -(-(end - start) // size)
            last_addr = start + (steps - 1) * size
            top = max(-(-(last_addr + size) // page), ((last_addr + page) >> a.page_shift) + 1)
            out.extend(range(end >> a.page_shift, top))
    pgmap.nr_range = saved
    return np.unique(np.array(out, np.int64))


def _chunk_edge_vpns(m: Machine, pgmap: DevPagemap) -> np.ndarray:
    """First and last vmemmap page of each section chunk's memmap: the only pages of a new
    range's memmap that can be mapped already (by a neighbour, or a page the kernel leaked)."""
    a, sz = m.arch, m.arch.struct_page_size
    out = []
    for i in range(len(pgmap.ranges)):
        lo, hi = pgmap.pfn_range(i, a.page_shift)
        for c, n in section_chunks(m, lo, hi - lo):
            out += [(c * sz) >> a.page_shift, ((c + n) * sz - 1) >> a.page_shift]
    return np.unique(np.array(out, np.int64))


def _mapped(m: Machine, vpns: np.ndarray) -> set[int]:
    if not vpns.size:
        return set()
    frames, _ = m.pgtables.resolve(vpns)
    return set(vpns[frames >= 0].tolist())


def _clear_stray_vmemmap(m: Machine, pgmap: DevPagemap, pfn: int, end_pfn: int,
                         keep: set[int] = frozenset()) -> None:
    """After a failed hot-add, unmap the vmemmap pages :func:`vmemmap_overrun_vpns` says the
    population loop mapped past a chunk's memmap, where no present subsection uses them; the
    kernel would leak them, the model promises a failed operation changes nothing."""
    vpns = vmemmap_overrun_vpns(m, pgmap, pfn, end_pfn)
    if not vpns.size:
        return
    frames, _ = m.pgtables.resolve(vpns)
    for v in vpns[frames >= 0].tolist():
        if v not in keep and not m.sparse.memmap_in_use(v, v + 1):
            m.pgtables.remove_range(v, v + 1)

def memunmap_pages(m: Machine, pgmap: DevPagemap) -> None:
    """``memunmap_pages(pgmap)``: ``arch_remove_memory`` -> ``__remove_pages`` for each range;
    every vmemmap page and page-table page goes back where it came from."""
    if pgmap not in m.pgmaps:
        raise KernelError("EINVAL", "memunmap_pages", f"{pgmap.name} is not mapped")
    a = m.arch
    for i in range(len(pgmap.ranges)):
        pfn, end_pfn = pgmap.pfn_range(i, a.page_shift)
        __remove_pages(m, pfn, end_pfn - pfn, pgmap_altmap(pgmap), pgmap)
    m.pgmaps.remove(pgmap)
    m.forget_struct_pages(pgmap)
    pgmap.ref = 0
