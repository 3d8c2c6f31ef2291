"""include/linux/vmemmap-optimization.h: the 2026 shared-tail rework of vmemmap optimisation.

Kernel variant ``mm-2026`` (:mod:`vmemlab.kernels`).  Read in the search index's
``linux-mm/linux-mm`` tree (the mm development tree).  No release tree in the index carries it:
torvalds/linux has no vmemmap-optimization.h; the header also sits in two forks that track
linux-next (``analogdevicesinc/linux``, ``ravis-opensrc/linux``), whose stored Makefiles (other
commits) say 6.12.80 and 7.1-rc3, so they establish no release.  linux-next carried the series
in September 2026 (next-20260924), when mainline was at 7.3-rc:

* ``include/linux/vmemmap-optimization.h`` (blob of commit ``5543e26f8eed``, and a later revision
  that names the field ``compound_page_order``): ``section_compound_order()`` /
  ``section_set_compound_order_range()`` (the compound order recorded per memory section, set
  only for section-aligned ranges), ``vmemmap_optimizable_order()`` (``CONFIG_SPARSEMEM_VMEMMAP_
  OPTIMIZATION``, a power-of-two ``struct page``, ``order >= VMEMMAP_OPTIMIZATION_MIN_ORDER``)
  and ``vmemmap_shared_tail_page(order, zone)``.
* ``mm/sparse-vmemmap.c`` at ``028871b824fd`` (:data:`SOURCES`): ``vmemmap_shared_tail_page``
  (one page of tail struct pages per zone and order, cached in ``zone->vmemmap_tails[]``),
  ``vmemmap_populate_compound_pages`` (per compound page ONE new head vmemmap page; every other
  vmemmap page of the compound page maps the zone's shared tail page, ``get_page`` per PTE),
  ``section_activate`` (records the order from ``pgmap->vmemmap_shift`` when
  ``vmemmap_can_optimize``; a sub-section add into a section that has an order is
  ``-EOPNOTSUPP``), ``section_nr_vmemmap_pages`` and ``section_deactivate`` (order reset to 0
  when the section empties).
* ``arch/powerpc/mm/book3s64/radix_pgtable.c`` at ``2ca93037ad05``: ppc64 radix's own
  ``vmemmap_populate_compound_pages`` with the shared page (:func:`radix_populate_compound_pages`).
* ``include/linux/page-flags.h`` at ``03e0599da9e1`` (from Kiryl Shutsemau's series, which the
  rework builds on): ``compound_info`` of a tail holds a mask, so all tails of one order are
  identical and ``compound_head(page) = page & mask`` (:func:`compound_head_from_info`); no fake
  heads.
* ``mm/hugetlb_vmemmap.c`` at ``0454b15e9bbd`` (modelled in :mod:`vmemlab.hugetlb_vmemmap`,
  ``hugetlb_vmemmap_optimize_folio``): HVO maps every vmemmap page but the first onto
  ``vmemmap_shared_tail_page(h->order, folio_zone(folio))`` read-only, the first onto a new copy
  of the head vmemmap page, and frees every page the folio's vmemmap had.

What is shared, and at what scope: one page per (zone, order).  Device-dax takes it from the
``ZONE_DEVICE`` zone of the node (``device_zone(node)``), HVO from the folio's own zone, so a
device-dax namespace and a HugeTLB pool never share a page.  All compound pages of one order in
one zone share the same page, across namespaces.

Teardown: hot-remove clears PTEs through the arch ``vmemmap_free`` (x86 ``remove_pagetable``,
one ``put_page`` per PTE).  The shared tail page holds the reference its allocation took and
that reference is kept by ``zone->vmemmap_tails[]``; no function read frees it, so it stays for
the life of the zone, mapped or not.  A device-dax head vmemmap page is freed with its one PTE.

Not in the ``linux-mm/linux-mm`` copy (read elsewhere, or not modelled, or taken from the
nearest readable text; each item says which):

* The three constants are defined in include/linux/mmzone.h, which ``linux-mm/linux-mm`` stores
  only in older versions.  They are read in the ``ravis-opensrc/linux`` copy at blob
  ``268ba1e1ac4f`` (the id linux-next gave "mm/sparse-vmemmap: introduce
  CONFIG_SPARSEMEM_VMEMMAP_OPTIMIZATION" in one build): ``VMEMMAP_OPTIMIZATION_PAGES 1`` ("The
  number of retained vmemmap pages with HVO enabled"), ``VMEMMAP_OPTIMIZATION_NR_STRUCT_PAGES =
  VMEMMAP_OPTIMIZATION_PAGES * PAGE_SIZE / sizeof(struct page)`` and
  ``VMEMMAP_OPTIMIZATION_MIN_ORDER = ilog2(VMEMMAP_OPTIMIZATION_NR_STRUCT_PAGES) + 1``; the
  ``analogdevicesinc/linux`` copy (blob ``0f161655affa``) has the same last two.
* mm/mm_init.c and Documentation/mm/vmemmap_dedup.rst of the rework are not stored: how
  ``memmap_init_zone_device`` changes is unknown (a commit of the preceding HVO series is
  titled "mm/mm_init: skip initializing shared vmemmap tail pages"); the model keeps the last
  readable ``compound_nr_pages`` (mm_init.c at ``00f68374ed29``), so it writes struct pages 1..127
  of every compound page, the ones past the head page into the shared page.  With the mask
  encoding of ``compound_info`` (:func:`compound_info_mask`, read in page-flags.h) those writes
  are the same for every compound page of an order, so ``compound_head()`` stays right; the
  per-page fields the model's 6.x layout keeps in tails (``pgmap``) are whatever the last
  namespace wrote.
* ``vmemmap_can_optimize`` (include/linux/mm.h) in the rework: the readable mm.h copies predate
  it; the 6.6 rule is kept.
* arm64 keeps ``vmemmap_can_optimize`` false (no ``ARCH_WANT_OPTIMIZE_DAX_VMEMMAP`` in the
  trees read).
* Boot-time pre-HVO (``hugetlb_vmemmap_optimize_bootmem_page`` sets the section order so that
  ``vmemmap_alloc_pte`` maps the shared page while the boot memmap is built) is not modelled.

The series, as listed in linux-next's revision list of next-20260924 (commit ids of that
linux-next build; they change at every rebase) is :data:`SERIES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .errors import KernelError
from .frames import VMEMMAP
from .include.page_flags import (
    _is_power_of_2,
    compound_head_from_info,
    compound_info_has_mask,
    compound_info_mask,
)
from .sparse_vmemmap import (
    _fresh,
    _vpn_span,
    reuse_compound_section,
    vmemmap_can_optimize,
    vmemmap_free,
    vmemmap_populate,
)

if TYPE_CHECKING:
    from .machine import Machine
    from .memremap import DevPagemap

#: ``compound_info_*`` live in :mod:`vmemlab.include.page_flags` (include/linux/page-flags.h);
#: the rework's HVO (``hugetlb_vmemmap_optimize_folio``, ``hugetlb_vmemmap_restore_folio``) in
#: :mod:`vmemlab.hugetlb_vmemmap` (mm/hugetlb_vmemmap.c); re-exported names:
_REEXPORTED = (compound_head_from_info, compound_info_has_mask, compound_info_mask)

#: the files read, as (repository, path, commit of the stored blob)
SOURCES: tuple[tuple[str, str, str], ...] = (
    ("linux-mm/linux-mm", "include/linux/vmemmap-optimization.h",
     "5543e26f8eed9f02a80e83b68c070deef8851990"),
    ("linux-mm/linux-mm", "mm/sparse-vmemmap.c", "028871b824fdb49075ca7519e00e0d2c32c6ec44"),
    ("linux-mm/linux-mm", "mm/hugetlb_vmemmap.c", "0454b15e9bbd35d2dd3f52b071ca30b8cf5e44f1"),
    ("linux-mm/linux-mm", "include/linux/mmzone.h", "00f68374ed29c8e1aa1c204d9d5dad9cb5c4879a"),
    ("linux-mm/linux-mm", "mm/sparse-vmemmap.c (before the rework)",
     "1df1ca75bc017a2851be148aec246e1a8d97bd3c"),
    ("ravis-opensrc/linux", "include/linux/mmzone.h", "268ba1e1ac4f67526675aa9e3e9de221e88529bc"),
    ("analogdevicesinc/linux", "include/linux/mmzone.h", "0f161655affa6e7249bd85b6c9190960dfa949f8"),
    ("linux-mm/linux-mm", "arch/powerpc/mm/book3s64/radix_pgtable.c",
     "2ca93037ad052a5d20f343c4e57e5a6cec4b99ab"),
    ("analogdevicesinc/linux", "include/linux/vmemmap-optimization.h",
     "2476ca477c2b904536802b4db842a1ad86b685b2"),
)

#: Muchun Song's series "mm: Switch device DAX to section-based vmemmap optimization" (posted
#: 2026-08-31), as linux-next's next-20260924 revision list names its commits
SERIES: tuple[tuple[str, str], ...] = (
    ("c281a7e7ceb5", "mm/sparse-vmemmap: introduce CONFIG_VMEMMAP_OPTIMIZATION"),
    ("6bff2e4cf0fd", "mm/sparse-vmemmap: factor out shared vmemmap tail page allocation"),
    ("cf09d08aa02a", "mm/sparse-vmemmap: open-code init_compound_tail()"),
    ("d0de1ec76554", "mm/sparse-vmemmap: prepare DAX vmemmap population for compound page "
                     "orders"),
    ("a754b7513d60", "mm/sparse-vmemmap: set compound page order for device DAX"),
    ("883c415ad183", "mm/sparse-vmemmap: switch device DAX to shared tail vmemmap pages"),
    ("379531aea319", "mm/sparse-vmemmap: move vmemmap optimization helpers to a public header"),
    ("db97df68bb16", "powerpc/mm: switch device DAX to shared tail vmemmap pages"),
    ("be61adf33149", "mm/sparse-vmemmap: drop the extra tail page from device DAX reservation"),
    ("900a4486b379", "mm/sparse-vmemmap: drop unused section_nr_vmemmap_pages() arguments"),
    ("f25000f59be6", "Documentation/mm: update DAX vmemmap deduplication docs"),
)

#: include/linux/mmzone.h ``VMEMMAP_OPTIMIZATION_PAGES``: vmemmap pages a compound page keeps for
#: itself, the head vmemmap page (ravis-opensrc/linux blob 268ba1e1ac4f)
VMEMMAP_OPTIMIZATION_PAGES = 1

#: ``zone`` names the model uses for ``vmemmap_shared_tail_page``
ZONE_DEVICE_NAME = "Device"
ZONE_NORMAL_NAME = "Normal"


@dataclass
class VmemmapOptimizationState:
    """Per-machine state of the rework: ``mem_section->compound_page_order`` of each section
    and ``zone->vmemmap_tails[]`` of each (zone, node)."""

    section_order: dict[int, int] = field(default_factory=dict)
    #: (zone name, nid, order) -> frame id of the shared tail page
    tails: dict[tuple[str, int, int], int] = field(default_factory=dict)


def _state(m: Machine) -> VmemmapOptimizationState:
    st = getattr(m, "vmemmap_optimization", None)
    if st is None:
        st = VmemmapOptimizationState()
        m.vmemmap_optimization = st  # type: ignore[attr-defined]
    return st


def vmemmap_optimization_min_order(m: Machine) -> int:
    """``VMEMMAP_OPTIMIZATION_MIN_ORDER = ilog2(VMEMMAP_OPTIMIZATION_NR_STRUCT_PAGES) + 1``
    (include/linux/mmzone.h; the same value as the ``VMEMMAP_TAIL_MIN_ORDER`` it replaces): the
    lowest order whose struct pages fill more than the kept vmemmap page.  7 on x86_64, 11 with
    64K pages."""
    return vmemmap_optimization_nr_struct_pages(m).bit_length() - 1 + 1


def vmemmap_optimization_nr_struct_pages(m: Machine) -> int:
    """``VMEMMAP_OPTIMIZATION_NR_STRUCT_PAGES = VMEMMAP_OPTIMIZATION_PAGES * PAGE_SIZE /
    sizeof(struct page)`` (mmzone.h): the struct pages in the vmemmap page(s) a compound page
    keeps."""
    return VMEMMAP_OPTIMIZATION_PAGES * m.arch.PAGE_SIZE // m.arch.struct_page_size


def vmemmap_optimizable_order(m: Machine, order: int) -> bool:
    """``vmemmap_optimizable_order(order)`` (include/linux/vmemmap-optimization.h): the config
    (here: the kernel variant), a power-of-two ``struct page`` and a large enough order."""
    if not m.kernel.shared_tail:
        return False
    if not _is_power_of_2(m.arch.struct_page_size):
        return False
    return order >= vmemmap_optimization_min_order(m)


def section_compound_order(m: Machine, pfn: int) -> int:
    """``pfn_to_section_compound_order(pfn)``: the order recorded for ``pfn``'s section."""
    return _state(m).section_order.get(m.sparse.pfn_to_section_nr(pfn), 0)


def section_set_compound_order_range(m: Machine, pfn: int, nr_pages: int, order: int) -> None:
    """``section_set_compound_order_range(pfn, nr_pages, order)``: record ``order`` on every
    section of the range, only if the range is whole sections (otherwise nothing)."""
    pps = m.arch.PAGES_PER_SECTION
    if (pfn | nr_pages) % pps:
        return
    st = _state(m)
    first = m.sparse.pfn_to_section_nr(pfn)
    for nr in range(first, first + nr_pages // pps):
        if order:
            st.section_order[nr] = order
        else:
            st.section_order.pop(nr, None)


def section_vmemmap_optimizable(m: Machine, pfn: int) -> bool:
    """``section_vmemmap_optimizable(ms)`` (mm/sparse.h): the section's order is optimizable."""
    return vmemmap_optimizable_order(m, section_compound_order(m, pfn))


def section_activate_order(m: Machine, pfn: int, nr_pages: int, altmap, pgmap) -> int:
    """The rework's first step of ``section_activate``: ``order = vmemmap_can_optimize(altmap,
    pgmap) ? pgmap->vmemmap_shift : 0``; adding less than a section into a section that already
    has an order is ``-EOPNOTSUPP`` (before anything is allocated)."""
    order = pgmap.vmemmap_shift if vmemmap_can_optimize(m, altmap, pgmap) else 0
    if nr_pages < m.arch.PAGES_PER_SECTION and section_compound_order(m, pfn):
        raise KernelError("EOPNOTSUPP", "section_activate",
                          f"pfns {pfn:#x}+{nr_pages}: a sub-section add into a section whose "
                          f"memmap is optimised for order {section_compound_order(m, pfn)}")
    return order


# -- the shared tail page --------------------------------------------------------------------
def vmemmap_shared_tail_page(m: Machine, order: int, zone: str = ZONE_DEVICE_NAME,
                             nid: int = 0) -> int:
    """``vmemmap_shared_tail_page(order, zone)`` (mm/sparse-vmemmap.c): the zone's page of tail
    struct pages for ``order``, allocated on first use (``vmemmap_alloc_block(PAGE_SIZE,
    zone_to_nid(zone))``: RAM, never an altmap) and cached in ``zone->vmemmap_tails[order -
    VMEMMAP_OPTIMIZATION_MIN_ORDER]``.  Its allocation reference is the zone's; nothing read
    frees it.  Returns the frame id."""
    st = _state(m)
    key = (zone, nid, order)
    fid = st.tails.get(key)
    if fid is not None:
        return fid
    fid = int(m.frames.alloc_ram(1, 0, VMEMMAP, boot=m.booting,
                                 function="vmemmap_shared_tail_page")[0])
    st.tails[key] = fid
    return fid


def shared_tail_pages(m: Machine) -> dict[tuple[str, int, int], dict[str, int]]:
    """Every shared tail page: its frame, reference count (1 for the zone + one per device-dax
    PTE) and how many vmemmap PTEs map it now."""
    st = _state(m)
    out = {}
    for key, fid in st.tails.items():
        out[key] = {"frame": fid, "refcount": int(m.frames.refcount[fid]),
                    "ptes": _ptes_mapping(m, fid)}
    return out


def _ptes_mapping(m: Machine, fid: int) -> int:
    return int(sum(int((t == fid).sum()) for t in m.pgtables.pte.values()))


def _drop_unused_tail(m: Machine, key: tuple[str, int, int]) -> None:
    """Undo a shared tail page allocated by an operation that then failed.  The kernel keeps it
    cached in the zone; the model gives it back so that a failed operation leaves
    ``Machine.state()`` unchanged (the house rule), and only if nothing maps it."""
    st = _state(m)
    fid = st.tails.get(key)
    if fid is not None and int(m.frames.refcount[fid]) == 1 and _ptes_mapping(m, fid) == 0:
        m.frames.put(np.array([fid], np.int64))
        del st.tails[key]


def shared_tail_keys(m: Machine) -> frozenset[tuple[str, int, int]]:
    """The (zone, nid, order) of every shared tail page allocated so far."""
    st = getattr(m, "vmemmap_optimization", None)
    return frozenset(st.tails) if st is not None else frozenset()


def drop_new_unused_tails(m: Machine, before: frozenset[tuple[str, int, int]]) -> None:
    """After a failed ``memremap_pages``: give back the shared tail pages allocated since
    ``before`` that nothing maps any more.  The kernel keeps them cached in the zone; the model
    promises that a failed operation changes nothing (as ``_clear_stray_vmemmap`` does for
    5.19's stray pages)."""
    for key in shared_tail_keys(m) - before:
        _drop_unused_tail(m, key)


# -- device-dax population ---------------------------------------------------------------------
def populate_section_memmap(m: Machine, pfn: int, nr_pages: int, altmap, pgmap) -> None:
    """``section_activate`` -> ``section_set_compound_order_range`` ->
    ``__populate_section_memmap`` in the rework: the shared-tail compound path when ``pgmap``
    is set and the section's order is optimizable, else the arch ``vmemmap_populate``."""
    a = m.arch
    if pgmap is not None:
        order = pgmap.vmemmap_shift if vmemmap_can_optimize(m, altmap, pgmap) else 0
        section_set_compound_order_range(m, pfn, nr_pages, order)
    start = pfn * a.struct_page_size
    end = start + nr_pages * a.struct_page_size
    if pgmap is not None and section_vmemmap_optimizable(m, pfn):
        if a.arch_compound_override:
            radix_populate_compound_pages(m, pfn, start, end)
        else:
            vmemmap_populate_compound_pages(m, pfn, start, end, pgmap)
    else:
        vmemmap_populate(m, start, end, altmap)


def vmemmap_populate_compound_pages(m: Machine, start_pfn: int, start: int, end: int,
                                    pgmap: DevPagemap, nid: int = 0) -> None:
    """``vmemmap_populate_compound_pages(start_pfn, start, end, node, pgmap)`` in the rework.

    The shared tail page of ``ZONE_DEVICE`` for the section's order first; a section that
    continues a compound page begun earlier (``reuse_compound_section``) maps all its vmemmap
    pages to it.  Otherwise, per compound page, a new page for the head vmemmap page and the
    shared page for every other vmemmap page (``VMEMMAP_POPULATE_DAX``: ``get_page`` per PTE).
    No altmap.  If a page-table or head-page allocation fails, the PTEs of ``[start, end)`` are
    cleared and a shared page allocated here is given back (see :func:`_drop_unused_tail`)."""
    a, pt = m.arch, m.pgtables
    ps = a.page_shift
    order = section_compound_order(m, start_pfn)
    key = (ZONE_DEVICE_NAME, nid, order)
    existed = key in _state(m).tails
    tail = vmemmap_shared_tail_page(m, order, ZONE_DEVICE_NAME, nid)
    try:
        vs, ve = start >> ps, -(-end >> ps)
        if reuse_compound_section(m, start_pfn, pgmap):
            pt.populate_ptes(np.arange(vs, ve, dtype=np.int64), reuse=tail)
            return
        size = min(end - start, (1 << order) * a.struct_page_size)
        heads = np.arange(start, end, size, dtype=np.int64) >> ps
        pt.populate_ptes(heads, fresh=_fresh(m, None))
        per = size >> ps
        if per > 1:
            rest = (heads[:, None] + np.arange(1, per, dtype=np.int64)[None, :]).ravel()
            pt.populate_ptes(rest, reuse=tail)
    except KernelError:
        vmemmap_free(m, start, end, None)
        if not existed:
            _drop_unused_tail(m, key)
        raise


def radix_populate_compound_pages(m: Machine, start_pfn: int, start: int, end: int,
                                  nid: int = 0) -> None:
    """ppc64 radix ``vmemmap_populate_compound_pages(start_pfn, start, end, node, pgmap)``
    (arch/powerpc/mm/book3s64/radix_pgtable.c at ``2ca93037ad05``).

    The shared tail page of ``ZONE_DEVICE`` for the section's order first; then for each
    vmemmap page from ``start`` on: a PMD leaf already there skips its range; a present PTE is
    skipped ("a compound page whose retained vmemmap page was mapped"); otherwise a page whose
    first pfn is aligned to the compound size (``pfn_offset == 0``) is the head vmemmap page (a
    new page, no altmap), and any other maps the shared page (``get_page``).  A 64K-page section
    has less memmap than one vmemmap page, so most sections find their page present.  On an
    allocation failure the PTEs of ``[start, end)`` are cleared and a shared page allocated here
    is given back (see :func:`_drop_unused_tail`)."""
    a, pt = m.arch, m.pgtables
    order = section_compound_order(m, start_pfn)
    key = (ZONE_DEVICE_NAME, nid, order)
    existed = key in _state(m).tails
    tail = vmemmap_shared_tail_page(m, order, ZONE_DEVICE_NAME, nid)
    try:
        vpns = _vpn_span(m, start - (start % a.PAGE_SIZE), end)
        vpns = vpns[[int(v >> pt.pte_bits) not in pt.pmd_leaf for v in vpns.tolist()]]
        first_pfn = vpns * a.STRUCT_PAGES_PER_PAGE
        head = first_pfn % (1 << order) == 0
        pt.populate_ptes(vpns[head], fresh=_fresh(m, None))
        pt.populate_ptes(vpns[~head], reuse=tail)
    except KernelError:
        vmemmap_free(m, start, end, None)
        if not existed:
            _drop_unused_tail(m, key)
        raise


def section_nr_vmemmap_pages(m: Machine, pfn: int, nr_pages: int) -> int:
    """``section_nr_vmemmap_pages(pfn, nr_pages, ...)`` in the rework (mm/sparse-vmemmap.c):
    what ``nr_memmap_pages`` moves by.  A section whose order is not optimizable counts its full
    memmap, ``DIV_ROUND_UP(nr_pages * sizeof(struct page), PAGE_SIZE)``; an order below a
    section counts ``VMEMMAP_OPTIMIZATION_PAGES`` per compound page; a larger order counts
    ``VMEMMAP_OPTIMIZATION_PAGES`` for the section holding the head, 0 for the others.  The
    shared tail page is not counted (nothing read counts it)."""
    a = m.arch
    if not section_vmemmap_optimizable(m, pfn):
        return -(-(nr_pages * a.struct_page_size) // a.PAGE_SIZE)
    order = section_compound_order(m, pfn)
    if order < a.PFN_SECTION_SHIFT:
        return VMEMMAP_OPTIMIZATION_PAGES * nr_pages // (1 << order)
    return VMEMMAP_OPTIMIZATION_PAGES if pfn % (1 << order) == 0 else 0


def section_deactivate_done(m: Machine, pfn: int, empty: bool) -> None:
    """End of the rework's ``section_deactivate``: an emptied section's order goes back to 0
    (``section_set_compound_order(ms, 0)``)."""
    if empty:
        _state(m).section_order.pop(m.sparse.pfn_to_section_nr(pfn), None)
