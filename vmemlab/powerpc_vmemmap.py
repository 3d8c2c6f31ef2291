"""arch/powerpc/mm/init_64.c and arch/powerpc/mm/book3s64/radix_pgtable.c: the ppc64 radix
vmemmap.

Before 6.6 the arch ``vmemmap_populate`` maps 2 MiB blocks as PMD leaves, records each on
``vmemmap_list`` and frees only what that list holds, while 5.19-6.3 also send compound
device-dax ranges through the generic ``vmemmap_populate_compound_pages`` (base pages under PTE
tables); from 6.6 (Aneesh Kumar K.V.'s series) radix has its own populate, free and compound
populate.  Addresses are byte offsets from ``VMEMMAP_START``, as in :mod:`vmemlab.sparse_vmemmap`,
which dispatches here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import KernelError
from .frames import VMEMMAP, VmemAltmap
from .include.memremap import pgmap_vmemmap_nr

if TYPE_CHECKING:
    from .include.memremap import DevPagemap
    from .machine import Machine


def ppc64_radix_vmemmap_6_6(m: Machine) -> bool:
    """Does this kernel carry Aneesh Kumar K.V.'s 6.6 series ("Add support for DAX vmemmap
    optimization for ppc64", v6 2023-07-24): 368a0590d954 "powerpc/book3s64/vmemmap: switch radix
    to use a different vmemmap handling function" (``radix__vmemmap_populate``), f2b79c0d7968
    "powerpc/book3s64/radix: add support for vmemmap optimization for radix" (the arch
    ``vmemmap_populate_compound_pages``) and the ``PPC_RADIX_MMU`` select of
    ``ARCH_WANT_OPTIMIZE_DAX_VMEMMAP``?  The last one is what the kernel variants record
    (``m.kernel.dax_gate_arches``), and the three came together."""
    return m.arch.name in (m.kernel.dax_gate_arches or ())


def altmap_cross_boundary(m: Machine, altmap: VmemAltmap, start: int, page_size: int) -> bool:
    """``altmap_cross_boundary(altmap, start, page_size)`` (arch/powerpc/mm/init_64.c, read in
    Debian's 6.12.117; the same function since 5.x): would the vmemmap block at ``start``
    describe pfns outside the device, ``start_pfn + nr_pfn - 1 > altmap->end_pfn`` or
    ``start_pfn < altmap->base_pfn``?  The kernel's ``end_pfn`` is ``PHYS_PFN(nsio->res.end -
    end_trunc)``, the device's last pfn; :class:`~vmemlab.frames.VmemAltmap` keeps the exclusive
    end (``nvdimm_setup_pfn``), hence ``>=`` here."""
    sps = m.arch.struct_page_size
    start_pfn = start // sps
    nr_pfn = page_size // sps
    return start_pfn + nr_pfn - 1 >= altmap.end_pfn or start_pfn < altmap.base_pfn


def _ram_block(m: Machine, order: int, function: str) -> int | None:
    """``vmemmap_alloc_block_buf(size, node, NULL)``: a RAM block, or None if the buddy
    allocator (or memblock at boot) has none."""
    try:
        return int(m.frames.alloc_ram(1, order, VMEMMAP, boot=m.booting, function=function)[0])
    except KernelError:
        return None


def vmemmap_populated(m: Machine, vmemmap_addr: int, vmemmap_map_size: int) -> bool:
    """``vmemmap_populated(vmemmap_addr, vmemmap_map_size)`` (arch/powerpc/mm/init_64.c before
    6.6; read in Debian's 6.1.176): is any subsection whose struct pages begin in
    ``[vmemmap_addr, vmemmap_addr + vmemmap_map_size)`` ``pfn_valid()``?  Not the page tables:
    the kernel reads the subsection maps.  ``pfn_valid()`` also needs ``valid_section()``
    (``SECTION_HAS_MEM_MAP``), which ``sparse_init_one_section()`` sets only after a section's
    first populate, so the section being activated for the first time does not count
    (:attr:`vmemlab.sparse.Sparse.activating`)."""
    a, sp = m.arch, m.sparse
    sz, step = a.struct_page_size, a.PAGES_PER_SUBSECTION
    lo = (vmemmap_addr // sz) & ~(step - 1)
    hi = -(-(vmemmap_addr + vmemmap_map_size) // sz)
    pps = a.PAGES_PER_SECTION
    for nr in range(lo // pps, -(-hi // pps)):
        ms = sp.sections.get(nr)
        if ms is None or nr == sp.activating:
            continue
        if ms.early:
            return True
        s0 = nr * pps
        first = max(lo, s0) - s0
        if ms.subsection_map & sp.subsection_mask(s0 + first, min(hi, s0 + pps) - s0 - first):
            return True
    return False


def ppc64_vmemmap_populate_2m(m: Machine, start: int, end: int,
                              altmap: VmemAltmap | None) -> None:
    """ppc64 ``vmemmap_populate()`` before 6.6 (arch/powerpc/mm/init_64.c, read in Debian's
    6.1.176; the body became ``__vmemmap_populate`` in v6 12/13 "powerpc/book3s64/radix: remove
    mmu_vmemmap_psize", 601f006fddc6): ``page_size = 1 << mmu_psize_defs[mmu_vmemmap_psize].
    shift``, which ``radix__early_init_mmu`` set to 2 MiB (``MMU_PAGE_2M``) when the MMU has it.

    ``start`` is aligned down to 2 MiB, so every 2 MiB of vmemmap VA the range touches gets one
    ``PMD_SIZE`` block unless :func:`vmemmap_populated`.  The block comes from the altmap only
    if ``!altmap_cross_boundary(altmap, start, page_size)`` and the altmap can supply it, else
    from RAM; a RAM failure is ``-ENOMEM`` (no base-page fallback).  ``vmemmap_list_populate``
    records it (``m.vmemmap_list``: the only record ``vmemmap_free`` frees by), and
    ``vmemmap_create_mapping`` -> ``radix__map_kernel_page(..., PMD_SIZE)`` writes the PMD
    entry as a leaf without looking at it: a PTE table the generic compound path left there
    (5.19-6.3 ran it on ppc64 too) is leaked with its pages.  Not modelled: the ``struct
    vmemmap_backing`` entries themselves, 24 bytes each, carved from one page that
    ``vmemmap_list_alloc`` took at boot (2730 per 64K page), so no hot-add pays a page."""
    a, pt = m.arch, m.pgtables
    order = a.PMD_SHIFT - a.page_shift
    addr = start - start % a.PMD_SIZE
    while addr < end:
        k = addr >> a.PMD_SHIFT
        if not vmemmap_populated(m, addr, a.PMD_SIZE):
            pt.pmd_table_of(k)
            block = None
            if altmap is not None and not altmap_cross_boundary(m, altmap, addr, a.PMD_SIZE):
                block = m.frames.alloc_altmap(altmap, order)
            if block is None:
                block = _ram_block(m, order, "vmemmap_alloc_block_buf")
            if block is None:
                raise KernelError("ENOMEM", "vmemmap_populate",
                                  f"no {a.PMD_SIZE >> 20} MiB block for vmemmap page "
                                  f"{addr >> a.page_shift} (RAM exhausted)")
            m.vmemmap_list.setdefault(k, []).append(block)
            if k in pt.pmd_leaf:  # a leaf nothing valid uses: the kernel leaks the old block
                m.pgtables.leaked_blocks.append(pt.pmd_leaf[k])
                pt.pmd_leaf[k] = block
            else:
                pt.overwrite_pmd_leaf(k, block)
        addr += a.PMD_SIZE


def ppc64_vmemmap_free_2m(m: Machine, start: int, end: int, altmap: VmemAltmap | None) -> None:
    """ppc64 ``vmemmap_free(start, end, altmap)`` before 6.6 (arch/powerpc/mm/init_64.c, read
    in Debian's 6.1.176): for each ``PMD_SIZE`` block from ``ALIGN_DOWN(start)``, unless
    :func:`vmemmap_populated` (another present subsection still uses it), take its
    ``vmemmap_backing`` off ``vmemmap_list`` (``vmemmap_list_free``), give the block back (the
    altmap when its pfn lies in the altmap, else the page allocator) and
    ``vmemmap_remove_mapping`` -> ``remove_pagetable`` (clears the leaf, frees empty PMD and
    PUD tables).  A block with no list entry is skipped: the pages the generic
    ``vmemmap_populate_compound_pages`` mapped with PTEs (5.19-6.3 on ppc64) were never
    recorded there, so they stay mapped and allocated -- a kernel leak the model keeps.  Fixed
    in 6.4 by 87a7ae75d738 ("mm/vmemmap/devdax: fix kernel crash when probing devdax
    devices"), which took ppc64 off the compound path until 6.6's radix versions of both."""
    a, pt = m.arch, m.pgtables
    ptrs = a.PTRS_PER_PTE
    addr = start - start % a.PMD_SIZE
    while addr < end:
        k = addr >> a.PMD_SHIFT
        blocks = m.vmemmap_list.get(k)
        if blocks and not vmemmap_populated(m, addr, a.PMD_SIZE):
            block = blocks.pop()
            if not blocks:
                del m.vmemmap_list[k]
            if pt.pmd_leaf.get(k) == block:
                pt.remove_range(k * ptrs, (k + 1) * ptrs)
            else:  # an older block the leaf no longer maps: the kernel frees it all the same
                m.pgtables.leaked_blocks.remove(block)
                m.frames.put(np.array([block], np.int64))
        addr += a.PMD_SIZE


def radix__vmemmap_pte_populate(m: Machine, vpn: int, altmap: VmemAltmap | None,
                                reuse: int | None = None) -> int:
    """``radix__vmemmap_pte_populate(pmdp, addr, node, altmap, reuse)``
    (arch/powerpc/mm/book3s64/radix_pgtable.c, 6.6+; read in Debian's 6.12.117): only an empty
    PTE changes.  Without ``reuse`` the page comes from the altmap unless
    ``altmap_cross_boundary(altmap, addr, PAGE_SIZE)``, falling back to RAM when the altmap
    has none; with ``reuse`` the PTE maps it (``get_page``).  Returns the mapped frame."""
    a, pt = m.arch, m.pgtables
    cur = pt.lookup(vpn)
    if cur >= 0:
        return cur
    if reuse is not None:
        return int(pt.populate_ptes(np.array([vpn], np.int64), reuse=reuse)[0])
    if altmap is not None and altmap_cross_boundary(m, altmap, vpn << a.page_shift, a.PAGE_SIZE):
        altmap = None

    def fresh(n: int) -> np.ndarray:
        if altmap is not None:
            ids = m.frames.alloc_altmap_pages(altmap, n)
            if ids is not None:
                return ids
        return m.frames.alloc_ram(n, 0, VMEMMAP, boot=m.booting,
                                  function="vmemmap_alloc_block_buf")

    return int(pt.populate_ptes(np.array([vpn], np.int64), fresh=fresh)[0])


def radix__vmemmap_populate(m: Machine, start: int, end: int,
                            altmap: VmemAltmap | None) -> None:
    """``radix__vmemmap_populate(start, end, node, altmap)`` (arch/powerpc/mm/book3s64/
    radix_pgtable.c, new in 6.6 with 368a0590d954; read in Debian's 6.12.117, Makefile
    ``VERSION = 6``, ``PATCHLEVEL = 12``, ``SUBLEVEL = 117``).

    ``start`` is aligned down to a page; then per PMD: an empty PMD whose address is
    ``PMD_SIZE``-aligned and (with an altmap) passes ``altmap_cross_boundary(altmap, addr,
    PMD_SIZE)`` gets a ``PMD_SIZE`` block -- the whole 2 MiB, the memmap of 128 16 MiB sections,
    even when ``end`` is nearer -- from the altmap or RAM; a block the altmap or RAM cannot
    supply, an unaligned address, a crossing block or a PMD that already holds a PTE table give
    base pages (:func:`radix__vmemmap_pte_populate`), one page per step; a PMD leaf already there
    is kept (``vmemmap_check_pmd``)."""
    a, pt = m.arch, m.pgtables
    order = a.PMD_SHIFT - a.page_shift
    addr = start - start % a.PAGE_SIZE
    while addr < end:
        nxt = min(((addr >> a.PMD_SHIFT) + 1) << a.PMD_SHIFT, end)
        k = addr >> a.PMD_SHIFT
        pt.pmd_table_of(k)
        entry = pt.pmd_entry(k)
        if entry is None:
            if addr % a.PMD_SIZE == 0 and not (
                    altmap is not None and altmap_cross_boundary(m, altmap, addr, a.PMD_SIZE)):
                if altmap is not None:
                    block = m.frames.alloc_altmap(altmap, order)
                else:
                    block = _ram_block(m, order, "vmemmap_alloc_block_buf")
                if block is not None:
                    pt.set_pmd_leaf(k, block)
                    addr = nxt
                    continue
        elif entry[0] == "leaf":
            addr = nxt
            continue
        radix__vmemmap_pte_populate(m, addr >> a.page_shift, altmap)
        addr += a.PAGE_SIZE


def refuse_generic_under_ppc64_leaf(m: Machine, start: int, end: int) -> None:
    """ppc64 radix 5.19-6.3: the arch ``vmemmap_populate`` maps 2 MiB blocks as PMD leaves, and
    the generic ``vmemmap_pmd_populate`` takes any non-empty PMD for a table, so
    ``vmemmap_pte_populate`` would read the leaf's block as PTEs and write PTEs into struct
    page memory.  The model does not follow it there: -EFAULT, nothing changed."""
    a = m.arch
    for k in range(start >> a.PMD_SHIFT, ((end - 1) >> a.PMD_SHIFT) + 1):
        if k in m.pgtables.pmd_leaf:
            raise KernelError(
                "EFAULT", "vmemmap_pte_populate",
                f"the 2 MiB vmemmap block of PMD entry {k} is a PMD leaf (the arch "
                f"vmemmap_populate() mapped it for another range); the generic compound path "
                f"would walk that leaf as a PTE table and write PTEs into struct pages "
                f"(ppc64 radix 5.19-6.3, not modelled)")


def radix__vmemmap_populate_address(m: Machine, vpn: int) -> int | None:
    """``radix__vmemmap_populate_address(addr, node, NULL, NULL)`` (radix_pgtable.c, 6.6+): the
    page tables down to the PTE and a new page if it is empty; ``None`` (the kernel's NULL) when
    the PMD is a leaf ("mapped as a hugepage due to a nearby request")."""
    pt = m.pgtables
    if int(vpn >> pt.pte_bits) in pt.pmd_leaf:
        return None
    pt.pmd_table_of(int(vpn >> pt.pte_bits))
    return radix__vmemmap_pte_populate(m, vpn, None)


def vmemmap_compound_tail_page(m: Machine, addr: int, pfn_offset: int) -> int | None:
    """``vmemmap_compound_tail_page(addr, pfn_offset, node)`` (radix_pgtable.c, 6.6+): the frame
    of the compound page's second vmemmap page, ``map_addr = addr - pfn_offset *
    sizeof(struct page) + PAGE_SIZE``; if its PTE is empty, the head vmemmap page
    (``map_addr - PAGE_SIZE``) and then it are populated with new pages.  ``None`` when a PMD
    leaf covers either (the caller then maps a page of its own)."""
    a, pt = m.arch, m.pgtables
    tail_vpn = (addr - pfn_offset * a.struct_page_size + a.PAGE_SIZE) >> a.page_shift
    if int(tail_vpn >> pt.pte_bits) in pt.pmd_leaf:
        return None
    pt.pmd_table_of(int(tail_vpn >> pt.pte_bits))
    cur = pt.lookup(tail_vpn)
    if cur >= 0:
        return cur
    if radix__vmemmap_populate_address(m, tail_vpn - 1) is None:
        return None
    return radix__vmemmap_pte_populate(m, tail_vpn, None)


def radix_vmemmap_populate_compound_pages(m: Machine, start_pfn: int, start: int, end: int,
                                          pgmap: DevPagemap) -> None:
    """ppc64 radix's own ``vmemmap_populate_compound_pages(start_pfn, start, end, node, pgmap)``
    (arch/powerpc/mm/book3s64/radix_pgtable.c; added in 6.6 by f2b79c0d7968 "powerpc/book3s64/
    radix: add support for vmemmap optimization for radix"; read in Debian's 6.12.117).

    ``for (addr = start; addr < end; addr = next)`` over the vmemmap VA (``start`` is not
    page-aligned: a 16 MiB section's memmap is 16 KiB, a quarter of a 64K page):

    * a PMD leaf there: skip to the next PMD (``next = pmd_addr_end(addr, end)``);
    * a present PTE: skip one page ("a compound page whose VMEMMAP_RESERVE_NR pages were
      mapped");
    * ``pfn_offset = addr_pfn - ALIGN_DOWN(addr_pfn, nr_pages)`` of the struct page at ``addr``
      (absolute pfns, not relative to the range) is 0: a new head vmemmap page and, through
      :func:`radix__vmemmap_populate_address`, a new second page (``-ENOMEM`` if a PMD leaf
      covers that one); ``next = addr + 2 * PAGE_SIZE``;
    * otherwise the PTE maps the page :func:`vmemmap_compound_tail_page` returns, or a new page
      of its own when that is ``None``.

    Until the stable fix "powerpc/mm: fix wrong addr_pfn tracking in compound vmemmap
    population" (Muchun Song, ``Fixes: f2b79c0d7968``; in 6.12.110 per Debian's changelog),
    ``addr_pfn`` started at ``start_pfn`` and advanced by 1 or 2 per vmemmap page instead of
    being ``page_to_pfn(addr)``.  Only the first iteration of a call reads it before it
    drifts, and the calls ``__add_pages`` makes cover at most one section, 16 KiB of memmap,
    so the loop runs past a head step only on a range that starts with a head page -- where
    the next step is the ``next = addr + 2 * PAGE_SIZE`` one: both versions take the same
    steps for every call modelled here (6.6, 6.12 and 6.12.117 alike).  No altmap is used."""
    a, pt = m.arch, m.pgtables
    nr = pgmap_vmemmap_nr(pgmap)
    page, sps = a.PAGE_SIZE, a.struct_page_size
    addr = start
    while addr < end:
        vpn = addr >> a.page_shift
        k = vpn >> pt.pte_bits
        if k in pt.pmd_leaf:
            addr = min(((addr >> a.PMD_SHIFT) + 1) << a.PMD_SHIFT, end)
            continue
        pt.pmd_table_of(k)
        if pt.lookup(vpn) >= 0:
            addr += page
            continue
        pfn_offset = (addr // sps) % nr
        if pfn_offset == 0:
            radix__vmemmap_pte_populate(m, vpn, None)
            if radix__vmemmap_populate_address(m, vpn + 1) is None:
                raise KernelError("ENOMEM", "vmemmap_populate_compound_pages",
                                  f"vmemmap page {vpn + 1} (a compound page's second page) "
                                  "lies in a PMD leaf")
            addr += 2 * page
            continue
        tail = vmemmap_compound_tail_page(m, addr, pfn_offset)
        radix__vmemmap_pte_populate(m, vpn, None, tail)
        addr += page


# -- what memmap_init_zone_device would meet (5.19-6.3) ----------------------------------------
def ppc64_memmap_vpns(m: Machine, pgmap: DevPagemap) -> np.ndarray:
    """Every vmemmap page the memmap of ``pgmap``'s ranges lies in, and the page after each
    (the generic loop's step past a short compound memmap)."""
    a, sz = m.arch, m.arch.struct_page_size
    out = [np.arange((s >> a.page_shift) * sz >> a.page_shift,
                     -(-((e >> a.page_shift) * sz) // a.PAGE_SIZE) + 1, dtype=np.int64)
           for s, e in pgmap.ranges]
    return np.unique(np.concatenate(out)) if out else np.empty(0, np.int64)


def ppc64_check_memmap(m: Machine, pgmap: DevPagemap, pfn: int, end_pfn: int) -> None:
    """Before ``memmap_init_zone_device`` writes the struct pages of ``[pfn, end_pfn)`` on ppc64
    radix 5.19-6.3 (until 87a7ae75d738, 6.4 and its stable backports, took ppc64 off the
    generic compound path), two things the kernel gets wrong without noticing:

    * a hole: :func:`ppc64_vmemmap_populate_2m` skipped a 2 MiB block because another range's
      subsection in it is valid, while that range's memmap was mapped page by page by the
      generic compound path, so this range's struct pages are not mapped and the kernel
      faults writing them;
    * a stale alias: :func:`ppc64_vmemmap_free_2m` left an earlier compound range's PTEs
      mapped, ``vmemmap_pte_populate`` keeps a present PTE, and a vmemmap page of this range
      shares its frame with other vmemmap pages in a way this range's own layout does not (its
      tail page reuse: pages 1 .. n-1 of one compound page's memmap), so struct pages of
      different pfns would be written over each other.

    The model refuses both (-EFAULT) instead of following the kernel into a wrong memmap."""
    a, pt = m.arch, m.pgtables
    sz, ps = a.struct_page_size, a.page_shift
    lo, hi = (pfn * sz) >> ps, -(-(end_pfn * sz) // a.PAGE_SIZE)
    vpns = np.arange(lo, hi, dtype=np.int64)
    vpn = pt.first_unmapped(vpns)
    if vpn is not None:
        raise KernelError(
            "EFAULT", "memmap_init_zone_device",
            f"vmemmap page {vpn} of pfns {pfn:#x}-{end_pfn - 1:#x} is not mapped: "
            f"vmemmap_populate() skipped its 2 MiB block because another range's subsection "
            f"there is valid, and that range's memmap was mapped page by page by the generic "
            f"compound path (ppc64 radix 5.19-6.3); the kernel would fault writing those "
            f"struct pages")
    frames, _ = pt.resolve(vpns)
    where: dict[int, list[int]] = {}
    ptrs = a.PTRS_PER_PTE
    for k in range(lo // ptrs, (hi - 1) // ptrs + 1):
        t = pt.entries[1].get(k)
        if t is None or k in pt.pmd_leaf:
            continue
        table = pt.pte[t]
        for j in np.flatnonzero(table >= 0).tolist():
            where.setdefault(int(table[j]), []).append(k * ptrs + j)
    size = pgmap_vmemmap_nr(pgmap) * sz
    s0 = (pgmap.ranges[pgmap.nr_range][0] >> ps) * sz
    for f in set(frames.tolist()):
        vs = where.get(f, [])
        if len(vs) < 2 or _tail_reuse_of_one_compound(vs, s0, size, a.PAGE_SIZE, ps):
            continue
        raise KernelError(
            "EFAULT", "memmap_init_zone_device",
            f"vmemmap pages {vs[0]} and {vs[-1]} of pfns {pfn:#x}-{end_pfn - 1:#x} map the "
            f"same page: stale PTEs an earlier compound range left (ppc64 radix 5.19-6.3 "
            f"vmemmap_free() frees only vmemmap_list blocks), kept by vmemmap_pte_populate(); "
            f"the kernel would write struct pages of different pfns over each other")


def _tail_reuse_of_one_compound(vs: list[int], s0: int, size: int, page: int, ps: int) -> bool:
    """Do vmemmap pages ``vs`` all lie in pages 1 .. n-1 of one compound page's memmap (whose
    memmap starts at byte ``s0 + c * size``), as the tail page reuse maps them?"""
    if size < 2 * page:
        return False
    c0 = ((min(vs) - 1) * page - s0) // size
    for c in (c0, c0 + 1):
        h = (s0 + c * size) >> ps
        if c >= 0 and h + 1 <= min(vs) and max(vs) <= h + (size >> ps) - 1:
            return True
    return False
