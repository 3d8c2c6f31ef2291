"""mm/sparse-vmemmap.c: populating and freeing the virtual memmap.

Addresses are byte offsets from ``VMEMMAP_START`` (so ``pfn_to_page(pfn)`` is
``pfn * sizeof(struct page)``), and every function takes the :class:`~vmemlab.machine.Machine`
whose page tables and frames it changes.  Functions follow mainline 5.19-6.x unless the docstring
names another variant; the ``v3`` kernel variant adds the series' patch 14 (PMD-level reuse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import KernelError
from .frames import VMEMMAP, VmemAltmap
from .include.memremap import pgmap_vmemmap_nr
from .powerpc_vmemmap import (
    ppc64_radix_vmemmap_6_6,
    ppc64_vmemmap_free_2m,
    ppc64_vmemmap_populate_2m,
    radix__vmemmap_populate,
    radix_vmemmap_populate_compound_pages,
    refuse_generic_under_ppc64_leaf,
)

if TYPE_CHECKING:
    from .include.memremap import DevPagemap
    from .machine import Machine

#: include/linux/mm.h (6.6+): vmemmap pages kept per compound page when deduplicating
VMEMMAP_RESERVE_NR = 2


def is_power_of_2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def vmemmap_can_optimize(m: Machine, altmap: VmemAltmap | None, pgmap: DevPagemap | None) -> bool:
    """``vmemmap_can_optimize(altmap, pgmap)`` -- may this memmap take the deduplicating path?

    * 5.17: never (no deduplication).
    * 5.19-6.3 (and v3): ``is_power_of_2(sizeof(struct page)) && pgmap &&
      pgmap_vmemmap_nr(pgmap) > 1 && !altmap`` (inline in ``__populate_section_memmap``).
    * 6.1.192, 6.6.87, 6.12 (include/linux/mm.h ``__vmemmap_can_optimize``; 6.1.y has the
      stable backport of 87a7ae75d738): the compound memmap must be more than
      ``VMEMMAP_RESERVE_NR`` pages, no altmap, and the arch gate ``m.kernel.dax_gate_arches``
      (6.1.y ``CONFIG_ARCH_WANT_HUGETLB_PAGE_OPTIMIZE_VMEMMAP``: x86_64; 6.6
      ``CONFIG_ARCH_WANT_OPTIMIZE_DAX_VMEMMAP``: x86_64, PPC_RADIX_MMU; 6.12 adds riscv).
    """
    k, a = m.kernel, m.arch
    if not k.vmemmap_dedup or pgmap is None or altmap is not None:
        return False
    if not is_power_of_2(a.struct_page_size):
        return False
    nr = pgmap_vmemmap_nr(pgmap)
    if k.can_optimize_rule == "nr>1":
        return nr > 1
    nr_vmemmap_pages = (nr * a.struct_page_size) >> a.page_shift
    gate = k.dax_gate_arches is None or a.name in k.dax_gate_arches
    return gate and nr_vmemmap_pages > VMEMMAP_RESERVE_NR


def compound_nr_pages(m: Machine, altmap: VmemAltmap | None, pgmap: DevPagemap) -> int:
    """``compound_nr_pages(altmap, pgmap)`` (mm/mm_init.c): struct pages of each compound page that
    ``memmap_init_zone_device`` writes; the rest alias pages already written.

    5.19-6.3: ``2 * (PAGE_SIZE / sizeof(struct page))`` when deduplicated; 6.6+:
    ``VMEMMAP_RESERVE_NR * (PAGE_SIZE / sizeof(struct page))``; otherwise every struct page."""
    if not vmemmap_can_optimize(m, altmap, pgmap):
        return pgmap_vmemmap_nr(pgmap)
    return VMEMMAP_RESERVE_NR * m.arch.STRUCT_PAGES_PER_PAGE


# -- allocation -----------------------------------------------------------------------------
def _fresh(m: Machine, altmap: VmemAltmap | None):
    """An allocator of order-0 vmemmap data pages: ``vmemmap_alloc_block_buf(PAGE_SIZE, ...)``."""

    def alloc(n: int) -> np.ndarray:
        if altmap is not None:
            ids = m.frames.alloc_altmap_pages(altmap, n)
            if ids is None:
                raise KernelError("ENOMEM", "altmap_alloc_block_buf",
                                  f"the altmap has {altmap.vmem_altmap_nr_free()} free page(s), "
                                  f"{n} needed")
            return ids
        return m.frames.alloc_ram(n, 0, VMEMMAP, boot=m.booting,
                                  function="vmemmap_alloc_block_buf")

    return alloc


def _vpn_bounds(m: Machine, start: int, end: int) -> tuple[int, int]:
    """``[lo, hi)``: the vmemmap pages visited by ``for (addr = start; addr < end; addr +=
    PAGE_SIZE)``."""
    ps = m.arch.page_shift
    lo = start >> ps
    return lo, lo + (-(-(end - start) >> ps) if end > start else 0)


def _vpn_span(m: Machine, start: int, end: int) -> np.ndarray:
    """The vpns of :func:`_vpn_bounds`, as an array."""
    lo, hi = _vpn_bounds(m, start, end)
    return np.arange(lo, hi, dtype=np.int64)


# -- population -----------------------------------------------------------------------------
def vmemmap_populate_range(m: Machine, start: int, end: int, altmap: VmemAltmap | None = None,
                           reuse: int | None = None) -> np.ndarray:
    """``vmemmap_populate_range(start, end, node, altmap, reuse)``: map every page in
    ``[start, end)``, with new pages or with ``reuse`` (one ``get_page`` per new PTE)."""
    lo, hi = _vpn_bounds(m, start, end)
    return m.pgtables.populate_pte_range(lo, hi, fresh=_fresh(m, altmap), reuse=reuse)


def vmemmap_populate_basepages(m: Machine, start: int, end: int,
                               altmap: VmemAltmap | None) -> np.ndarray:
    """``vmemmap_populate_basepages()``: base pages, from the altmap when one is passed."""
    return vmemmap_populate_range(m, start, end, altmap, None)


def vmemmap_populate_hugepages(m: Machine, start: int, end: int,
                               altmap: VmemAltmap | None) -> None:
    """``vmemmap_populate_hugepages()`` (generic 6.x; x86 5.x had the same logic in init_64.c).

    Each empty PMD gets a ``PMD_SIZE`` block from the altmap or RAM; an altmap that cannot supply
    it is ``-ENOMEM`` (no fallback), RAM that cannot falls back to base pages for that PMD.  A
    present leaf is kept (``vmemmap_check_pmd``); a present PTE table gets base pages.
    """
    a, pt = m.arch, m.pgtables
    pmd_order = a.PMD_SHIFT - a.page_shift
    addr = start
    while addr < end:
        nxt = min(((addr >> a.PMD_SHIFT) + 1) << a.PMD_SHIFT, end)
        k = addr >> a.PMD_SHIFT
        pt.pmd_table_of(k)
        entry = pt.pmd_entry(k)
        if entry is None:
            if altmap is not None:
                block = m.frames.alloc_altmap(altmap, pmd_order)
                if block is None:
                    raise KernelError(
                        "ENOMEM", "vmemmap_populate_hugepages",
                        f"the altmap cannot supply a {a.PMD_SIZE >> 20} MiB block "
                        f"({altmap.vmem_altmap_nr_free()} page(s) free); no fallback with an altmap")
                pt.set_pmd_leaf(k, block)
                addr = nxt
                continue
            try:
                block = m.frames.alloc_ram(1, pmd_order, VMEMMAP, boot=m.booting,
                                           function="vmemmap_alloc_block_buf")
            except KernelError:
                block = None  # the buddy allocator failed: fall back to base pages
            if block is not None:
                pt.set_pmd_leaf(k, int(block[0]))
                addr = nxt
                continue
        elif entry[0] == "leaf":
            addr = nxt
            continue
        vmemmap_populate_basepages(m, addr, nxt, altmap)
        addr = nxt


def vmemmap_populate(m: Machine, start: int, end: int, altmap: VmemAltmap | None) -> None:
    """The arch ``vmemmap_populate(start, end, node, altmap)``.

    x86_64 (arch/x86/mm/init_64.c): less than a section of memmap -> base pages with a NULL
    altmap; otherwise PMD blocks (PSE).  arm64 (arch/arm64/mm/mmu.c): 4K pages -> PMD blocks,
    16K/64K -> base pages (with the altmap); a partial section takes base pages only with the
    stable backport seen in 6.1.192, 6.6.87 and 6.12.33 (``m.kernel.arm64_partial_basepages``);
    5.17, 5.19 and 6.12.0 map its whole PMD block.  ppc64 radix: PMD_SIZE (2 MiB) blocks, by
    :func:`radix__vmemmap_populate` from 6.6 and by :func:`ppc64_vmemmap_populate_2m` before.
    """
    a = m.arch
    if a.name == "ppc64-radix-64k":
        if ppc64_radix_vmemmap_6_6(m):
            return radix__vmemmap_populate(m, start, end, altmap)
        return ppc64_vmemmap_populate_2m(m, start, end, altmap)
    partial = end - start < a.PAGES_PER_SECTION * a.struct_page_size
    if partial and a.name == "arm64-4k" and not m.kernel.arm64_partial_basepages:
        partial = False  # ARM64_KERNEL_USES_PMD_MAPS: PMD blocks whatever the size
    if partial or not a.vmemmap_hugepages:
        vmemmap_populate_basepages(m, start, end, altmap if a.basepages_use_altmap else None)
    else:
        vmemmap_populate_hugepages(m, start, end, altmap)


def reuse_compound_section(m: Machine, start_pfn: int, pgmap: DevPagemap) -> bool:
    """``reuse_compound_section(start_pfn, pgmap)``: is this section inside a compound page that
    started in an earlier section?  (``offset`` is taken from the range being onlined.)"""
    nr_pages = pgmap_vmemmap_nr(pgmap)
    offset = start_pfn - (pgmap.ranges[pgmap.nr_range][0] >> m.arch.page_shift)
    return offset % nr_pages != 0 and nr_pages > m.arch.PAGES_PER_SUBSECTION


def compound_section_tail_page(m: Machine, addr: int) -> int:
    """``compound_section_tail_page(addr)``: the page the PTE of ``addr - PAGE_SIZE`` maps
    (the previous section's last vmemmap page, which holds only tail struct pages)."""
    frame = m.pgtables.lookup((addr - m.arch.PAGE_SIZE) >> m.arch.page_shift)
    if frame < 0:
        # the kernel takes pte_page() of the empty PTE (pfn 0) and would map it: refuse
        raise KernelError("ENOMEM", "compound_section_tail_page",
                          "the previous section's vmemmap is not populated (sections must be "
                          "populated in order; the kernel would map pfn 0's page here)")
    return frame


def _v3_pmd_reuse(m: Machine, start_pfn: int, start: int, end: int, pgmap: DevPagemap) -> bool:
    """v3 patch 14 ("improve memory savings for compound pud geometry", not merged): from the
    third section of a compound page on, each PMD points at the previous PMD's PTE table
    (``get_page`` on that table) instead of filling a new one.  Returns False when it does not
    apply (second section, or a memmap chunk that is not whole PMDs)."""
    a, pt = m.arch, m.pgtables
    nr = pgmap_vmemmap_nr(pgmap)
    offset = start_pfn - (pgmap.ranges[pgmap.nr_range][0] >> a.page_shift)
    if (offset % nr) < 2 * a.PAGES_PER_SECTION:
        return False
    if start % a.PMD_SIZE or end % a.PMD_SIZE:
        return False
    prev = pt.pmd_entry((start - a.PAGE_SIZE) >> a.PMD_SHIFT)
    if prev is None or prev[0] != "table":
        return False
    for k in range(start >> a.PMD_SHIFT, end >> a.PMD_SHIFT):
        pt.set_pmd_table(k, prev[1])
    return True


def vmemmap_populate_compound_pages(m: Machine, start_pfn: int, start: int, end: int,
                                    pgmap: DevPagemap) -> None:
    """``vmemmap_populate_compound_pages(start_pfn, start, end, node, pgmap)`` (5.19-6.x).

    Per compound page: a new page for the head vmemmap page, a new page for the first
    tail-only vmemmap page, and every further vmemmap page mapped to that tail page.  A section
    that continues a compound page begun in an earlier section maps all its pages to the
    previous section's last vmemmap page.  No altmap is ever used here.
    """
    a, pt = m.arch, m.pgtables
    if a.arch_compound_override and ppc64_radix_vmemmap_6_6(m):
        # the ppc64 radix override came in 6.6 (f2b79c0d7968); 5.19-6.3 ran the generic code
        return radix_vmemmap_populate_compound_pages(m, start_pfn, start, end, pgmap)
    if a.arch_compound_override:
        refuse_generic_under_ppc64_leaf(m, start, end)
    if reuse_compound_section(m, start_pfn, pgmap):
        if m.kernel.pmd_reuse and _v3_pmd_reuse(m, start_pfn, start, end, pgmap):
            return
        frames, _ = pt.resolve(_vpn_span(m, start, end))
        if (frames >= 0).all():
            # every PTE is present already (a section's memmap smaller than a page, ppc64's
            # 16 MiB sections): vmemmap_pte_populate() changes nothing, and the kernel never
            # dereferences the page compound_section_tail_page() returned
            return
        tail = compound_section_tail_page(m, start)
        vmemmap_populate_range(m, start, end, None, tail)
        return
    ps, page = a.page_shift, a.PAGE_SIZE
    size = min(end - start, pgmap_vmemmap_nr(pgmap) * a.struct_page_size)
    if size >= 2 * page and size % page == 0 and _fill_empty_tables(m, start, end, size >> ps):
        return
    fresh = _fresh(m, None)
    if size <= page:
        # A compound memmap no bigger than a page (5.19 with tiny orders): each step populates
        # the page of ``addr`` and the page after it, which may lie past ``end``.  Steps of at
        # most a page leave no page out: every page from ``start``'s to the one after the
        # last ``addr``'s.
        last = start + (end - start - 1) // size * size
        pt.populate_pte_range(start >> ps, (last >> ps) + 2, fresh=fresh)
        return
    addrs = np.arange(start, end, size, dtype=np.int64)
    if size >= 2 * page and size % page == 0:
        heads = addrs >> ps
        ht = np.empty(2 * heads.size, np.int64)
        ht[0::2], ht[1::2] = heads, heads + 1
        mapped = pt.populate_ptes(ht, fresh=fresh)
        per = size >> ps
        if per > 2:
            vpns = (heads[:, None] + np.arange(2, per, dtype=np.int64)[None, :]).ravel()
            pt.populate_ptes(vpns, reuse=np.repeat(mapped[1::2], per - 2))
    else:
        # more than a page but not two or more whole pages (a range shorter than its compound
        # page): the page of ``addr`` and the page after it again
        pt.populate_ptes(_page_and_next(addrs >> ps), fresh=fresh)


def _page_and_next(vpns: np.ndarray) -> np.ndarray:
    """The distinct pages of ``vpns`` (ascending) and of the page after each, ascending: the
    union of ``addr >> PAGE_SHIFT`` and ``(addr + PAGE_SIZE) >> PAGE_SHIFT``, which is that
    vpn + 1.  Linear (a mask over the span), where ``np.unique`` hashed twice as many."""
    if vpns.size == 0:
        return vpns
    lo = int(vpns[0])
    mark = np.zeros(int(vpns[-1]) - lo + 2, bool)
    mark[vpns - lo] = True
    mark[vpns - lo + 1] = True
    return np.flatnonzero(mark) + lo


def _fill_empty_tables(m: Machine, start: int, end: int, per: int) -> bool:
    """Fast path of the loop above when ``[start, end)`` covers whole, still-empty PTE tables
    (every fresh x86 section): the same PTEs, frames and reference counts, written per table
    with numpy instead of per compound page.  Returns False (nothing done) otherwise."""
    a, pt = m.arch, m.pgtables
    ps, ptrs = a.page_shift, a.PTRS_PER_PTE
    vs, ve = start >> ps, end >> ps
    if vs % ptrs or ve % ptrs or ptrs % per:
        return False
    ks = range(vs // ptrs, ve // ptrs)
    pmd_leaf, pmd_tables = pt.pmd_leaf, pt.entries[1]
    for k in ks:
        if k in pmd_leaf or k in pmd_tables:
            return False
    fresh = _fresh(m, None)
    n = ptrs // per
    for k in ks:
        table = pt.pte[pt.table_for(0, k)]
        ids = fresh(2 * n)  # consecutive ids: head, tail, head, tail, ...
        heads, tails = ids[0::2], ids[1::2]
        table.reshape(n, per)[:] = tails[:, None]  # every PTE of a compound page: its tail page
        table[0::per] = heads                      # but the first: its head page
        # the tails, as a slice (the column is read after fresh(), which may have grown it)
        m.frames.refcount[int(ids[1]):int(ids[-1]) + 1:2] += per - 2
    return True


def check_section_memmap_span(m: Machine, pfn: int, nr_pages: int) -> None:
    """The ``WARN_ON_ONCE`` at the top of ``__populate_section_memmap``: ``pfn`` and ``nr_pages``
    must be subsection-aligned (-ENOMEM, the kernel returns NULL).  ``populate_section_memmap``
    (:mod:`vmemlab.sparse`) runs it before the 2026 rework's populate too."""
    a = m.arch
    if pfn % a.PAGES_PER_SUBSECTION or nr_pages % a.PAGES_PER_SUBSECTION:
        raise KernelError("ENOMEM", "__populate_section_memmap",
                          f"pfn {pfn:#x} / nr_pages {nr_pages} not subsection-aligned (WARN)")


def __populate_section_memmap(m: Machine, pfn: int, nr_pages: int, altmap: VmemAltmap | None,
                              pgmap: DevPagemap | None) -> None:
    """``__populate_section_memmap(pfn, nr_pages, nid, altmap, pgmap)``: the deduplicating
    compound path when ``vmemmap_can_optimize``, else the arch ``vmemmap_populate``."""
    a = m.arch
    check_section_memmap_span(m, pfn, nr_pages)
    start = pfn * a.struct_page_size
    end = start + nr_pages * a.struct_page_size
    if vmemmap_can_optimize(m, altmap, pgmap):
        vmemmap_populate_compound_pages(m, pfn, start, end, pgmap)
    else:
        vmemmap_populate(m, start, end, altmap)


# -- teardown -------------------------------------------------------------------------------
def vmemmap_free(m: Machine, start: int, end: int, altmap: VmemAltmap | None) -> None:
    """``vmemmap_free(start, end, altmap)`` -> x86 ``remove_pagetable(start, end, false, altmap)``.

    Clearing a PTE puts its page (a reused tail page is freed when its last PTE goes); a PMD
    block goes back to the altmap (``vmem_altmap_free``) or RAM; empty tables are freed.  Pages
    at the edges that another present subsection's memmap still uses are kept.  ppc64 radix
    before 6.6 has its own: :func:`ppc64_vmemmap_free_2m`."""
    a = m.arch
    if a.name == "ppc64-radix-64k" and not ppc64_radix_vmemmap_6_6(m):
        return ppc64_vmemmap_free_2m(m, start, end, altmap)
    ps = a.page_shift
    vs, ve = start >> ps, -(-end >> ps)
    in_use = m.sparse.memmap_in_use
    if start % a.PAGE_SIZE and in_use(vs, vs + 1):
        vs += 1
    if end % a.PAGE_SIZE and ve > vs and in_use(ve - 1, ve):
        ve -= 1
    if ve > vs:
        m.pgtables.remove_range(vs, ve, in_use)


