"""mm/hugetlb_vmemmap.c: HugeTLB Vmemmap Optimization (HVO) on the boot memmap of System RAM.

A HugeTLB page of order ``o`` has ``(1 << o) * 64 / PAGE_SIZE`` vmemmap pages (8 for 2 MiB,
4096 for 1 GiB on x86_64).  HVO keeps ``m.kernel.hvo_reserve_pages`` of them and remaps the rest,
read-only, onto one kept page, freeing the pages they mapped:

* **5.14-5.17** (``RESERVE_VMEMMAP_NR = 2``): pages 0 and 1 kept, pages 2.. remapped to page 1
  (tail struct pages only): 6 freed per 2 MiB, 4094 per 1 GiB.  No fake heads.
* **5.18+** (``RESERVE_VMEMMAP_NR = 1``, "free the 2nd vmemmap page"): pages 1.. remapped to
  page 0, the head page: 7 / 4095 freed.  The first struct page of every remapped vmemmap page
  is then an alias of the head and shows ``PG_head``: a *fake head*, which
  ``page_fixed_fake_head`` (:mod:`vmemlab.page`) resolves through ``page[1].compound_head``.
  [V: 5.19 mm/hugetlb_vmemmap.c read: ``RESERVE_VMEMMAP_NR 1U``, ``vmemmap_reuse =
  vmemmap_addr - PAGE_SIZE``, static key inc/dec per optimized page.]
* **6.2+** (11aad2631bf7, "remap head page to newly allocated page", Joao Martins):
  ``vmemmap_remap_free`` copies page 0 into a new page, maps the head PTE to it RW and the tails
  RO, and frees the old page 0 as well (``head_copy``; default on for the ``folio`` kernels).

Mechanics (``vmemmap_remap_range``, 6.1.192 read; 6.12.117's vmlinux calls the same split):
PMD-leaf vmemmap mappings in the range are split first
(``vmemmap_split_pmd``: ``pte_alloc_one_kernel``, 512 ``PAGE_KERNEL`` PTEs to ``head + i``,
``split_page`` unless the block is PageReserved; 6.1.192 mm/hugetlb_vmemmap.c read), so HVO
costs one PTE table per 2 MiB of vmemmap VA it touches; restore does not collapse it back
(6.1.192 mm/hugetlb_vmemmap.c has no path that reinstalls a PMD leaf).  Restore
(``vmemmap_remap_alloc``, on dissolve) allocates the freed pages again, copies the reuse page
into each (``copy_page``), and 5.18+ ``reset_struct_pages`` overwrites the first
``NR_RESET_STRUCT_PAGE`` struct pages of each copy so head data does not leak into tails; then
remaps RW.  ``m.kernel.nr_reset_struct_page`` is 3 in every variant with a reset (5.19, 6.1.192,
6.6.87, 6.12.0, 6.12.33: kernel-facts §0a 2; it became 4 only with the 2025-04 patch "mm,
hugetlb: Increment the number of pages to be reset on HVO"); 5.19 copies struct page 3 into each
of pages 0-2 (``m.kernel.reset_loop``), 6.1+ ``memcpy`` the block 3-5 onto 0-2 (Muchun Song's
"mm: hugetlb_vmemmap: simplify reset_struct_pages()", posted 2022-08-19 for 6.1).  With a block
copy, ``page[4]`` -- in 6.1 the HugeTLB hwpoison list head, ``page[4].private`` -- lands on
``page[1]`` of every restored vmemmap page.

The 6.12.117 restore bug (kernel variant ``6.12.117``, ``nr_reset_struct_page = 0``; measured,
``validation/results/hvo-6.12.117+deb12-amd64.json``): upstream stable 6.12.114 (Debian's
linux-source-6.12 6.12.117-1~deb12u1 changelog, entry 6.12.115-1) took two mainline commits
without the one between them.  c0b495b91a47 "mm/hugetlb: refactor code around vmemmap_walk"
(Kiryl Shutsemau's fake-head removal, v7 10/18) passes the new head copy as both
``vmemmap_head`` and ``vmemmap_tail``; mainline then gives the tails a clean shared tail page
in 622026e87c40 "mm/hugetlb: remove fake head pages".  c7bde43f6daf "mm/hugetlb_vmemmap: fix
incorrect vmemmap restore in rollback" (Muchun Song, ``Fixes: c0b495b91a47``, Cc: stable)
makes ``vmemmap_restore_pte`` copy the page the PTE maps, ``copy_page(dst, pte_page(*pte))``,
with no ``reset_struct_pages`` -- right in mainline, where that page is the shared tail page;
in 6.12.y, without 622026e87c40, it is the head copy (read in 6.12.117's
mm/hugetlb_vmemmap.c: ``vmemmap_tail = vmemmap_head``).  So 6.12.114-6.12.117 restore every
vmemmap page with copies of struct pages 0-3 and a dissolve hits "BUG: Bad page state" and
leaks the page.  No 6.12.y fix was found up to 6.12.117 (the newest tree read); the 2025 patch
"mm, hugetlb: increment the number of pages to be reset on HVO" (``NR_RESET_STRUCT_PAGE`` 4)
came in 6.12.111 and was overwritten by 6.12.114.

Contrast with device-dax (:func:`contrast_with_device_dax`): device-dax *populates* a
deduplicated memmap and reuses the *tail* vmemmap page (page 1), keeping 2 pages; HVO *remaps*
an existing memmap and (5.18+) reuses the *head* vmemmap page, keeping 1 -- one page more saved
per compound page.

Which arches: ``m.kernel.hvo_arches`` (5.17: ``HUGETLB_PAGE_FREE_VMEMMAP depends on X86_64``;
5.19: x86_64 and arm64 select ``ARCH_WANT_HUGETLB_PAGE_OPTIMIZE_VMEMMAP``, kernel-facts §0a 9;
6.1.192 arch/*/Kconfig: x86_64 only, arm64's was turned off by 060a2c92d1b6; 6.6/6.12: x86_64
of the arches modelled).

How the folio marks itself HugeTLB (``m.kernel.hugetlb_marker``, kernel-facts §0a 8): up to
6.1 ``page[1].compound_dtor = HUGETLB_PAGE_DTOR`` (6.1.192 ``PageHeadHuge``); 6.6.87 a page
type on the head, ``page_type &= ~PG_hugetlb`` (0x800) -- the stable backport of d99e3140a4d3
"mm: turn folio_test_hugetlb into a PageType"; 6.12 ``page_type = PGTY_hugetlb << 24`` (0xf4).
:func:`folio_test_hugetlb` reads it back.

Not modelled: the vmemmap_optimize sysctl/boot switch (HVO is applied when asked), batching
and TLB flushes, ``memmap_on_memory`` refusal, pre-HVO of boot gigantic pages (6.15),
HugeTLB cgroup/subpool fields (left NULL, as ``init_new_hugetlb_folio`` leaves them).
"""

from __future__ import annotations

import numpy as np

from .errors import KernelError, ParameterError
from .frames import VMEMMAP
from .hugetlb import (
    _find,
    alloc_hugetlb_folio,
    folio_set_hugetlb,
    folio_test_hugetlb,
    hugetlb_hwpoison_location,
    prep_compound_hugetlb,
)
from .include.hugetlb import (
    HugetlbFolio,
    HugetlbState,
    HvoReport,
    _state,
    _vmemmap_span,
    hugetlb_orders,
)
from .machine import Machine
from .memremap import DevPagemap, memremap_pages
from .page import (
    PG,
    SIZEOF_STRUCT_PAGE,
    TAIL_MAPPING,
    VmemmapFault,
    head_va,
    read_field,
    struct_pages,
    write_field,
)
from .units import as_int, parse_size
from .vmemmap_optimization import ZONE_NORMAL_NAME, vmemmap_shared_tail_page
from .vmemmap_optimization import _state as _vmemmap_optimization_state

__all__ = ["HugetlbFolio", "HugetlbState", "HvoReport", "hugetlb_orders", "alloc_hugetlb_folio",
           "prep_compound_hugetlb", "folio_set_hugetlb", "folio_test_hugetlb",
           "hugetlb_hwpoison_location", "vmemmap_page_count", "vmemmap_split_pmd",
           "vmemmap_remap_free", "hugetlb_vmemmap_optimize", "vmemmap_remap_alloc",
           "hugetlb_vmemmap_restore", "free_tail_pages_bad", "dissolve_free_huge_page",
           "hvo_savings", "contrast_with_device_dax", "hugetlb_vmemmap_optimize_folio",
           "hugetlb_vmemmap_restore_folio"]


def vmemmap_page_count(m: Machine, fid: int) -> int:
    """``page_count()`` of vmemmap data frame ``fid`` as the kernel keeps it.  The model's frame
    refcount holds one reference per PTE that maps the frame -- true for device-dax, whose
    ``vmemmap_pte_populate`` does ``get_page(reuse)`` for every reused PTE, and how the model
    decides when a frame is free.  HVO's ``vmemmap_remap_pte`` takes none (6.1.192
    mm/hugetlb_vmemmap.c: ``set_pte_at(&init_mm, addr, pte, mk_pte(walk->reuse_page,
    pgprot))``, no ``get_page``), so for the page an optimized HugeTLB page's tails were
    remapped onto, the model's count less those remapped PTEs: 1, the page's own reference."""
    n = int(m.frames.refcount[fid])
    st = m.hugetlb
    if st is None or m.kernel.shared_tail:
        # the 2026 rework's HVO already leaves the shared tail page's count alone
        # (vmemlab.vmemmap_optimization.hugetlb_vmemmap_optimize_folio)
        return n
    for f in st.folios:
        if f.optimized and f.reuse_frame == fid:
            s, e = _vmemmap_span(m, f)
            n -= e - s - f.reserve   # the tail PTEs vmemmap_remap_pte pointed here
    return n


# -- optimize ----------------------------------------------------------------------------------
def _check_optimizable(m: Machine, folio: HugetlbFolio) -> int:
    reserve = m.kernel.hvo_reserve_pages
    if reserve <= 0:
        raise KernelError("EOPNOTSUPP", "hugetlb_vmemmap_optimize",
                          f"kernel {m.kernel.name} has no HugeTLB vmemmap optimization")
    a = m.arch
    if a.name not in m.kernel.hvo_arches:
        raise KernelError("EOPNOTSUPP", "hugetlb_vmemmap_optimize",
                          f"{a.name}: kernel {m.kernel.name} does not select HugeTLB vmemmap "
                          "optimization there (it does on " + ", ".join(m.kernel.hvo_arches)
                          + "; arm64 only in 5.19, turned off by 060a2c92d1b6)")
    if a.struct_page_size & (a.struct_page_size - 1):
        raise KernelError("EOPNOTSUPP", "hugetlb_vmemmap_init",
                          "cannot optimize vmemmap pages because struct page crosses page "
                          "boundaries")
    s, e = _vmemmap_span(m, folio)
    if e - s <= reserve:
        raise KernelError("EOPNOTSUPP", "hugetlb_vmemmap_optimize",
                          f"{e - s} vmemmap page(s): nothing beyond the {reserve} kept")
    return reserve


def vmemmap_split_pmd(m: Machine, k: int) -> int:
    """``vmemmap_split_pmd(pmd, head, start, walk)`` (mm/hugetlb_vmemmap.c, 6.1.192 read): a new PTE table
    whose 512 PTEs map the PMD block's pages, ``split_page`` on the block; returns the table."""
    return m.pgtables.split_pmd_leaf(k)


def vmemmap_remap_free(m: Machine, reuse_vpn: int, end_vpn: int, head_copy: bool) -> tuple[int, int]:
    """``vmemmap_remap_free(start, end, reuse)``: split PMD leaves over ``[reuse, end)``
    (``vmemmap_remap_range`` -> ``vmemmap_pmd_entry`` -> :func:`vmemmap_split_pmd`); 6.2+
    ``head_copy``: copy the reuse page into a new page and map the reuse PTE to it RW; then
    ``vmemmap_remap_pte`` for every later page: ``PAGE_KERNEL_RO`` onto the reuse page, the old
    page freed (``free_vmemmap_page``; memmap counters adjusted, 6.11+).  Returns (reuse frame,
    data pages freed net of the copy)."""
    pt, f = m.pgtables, m.frames
    st = struct_pages(m)
    st.locate(np.array([reuse_vpn * st.per_page]))  # the reuse page's contents, to be shared
    for k in range(reuse_vpn >> pt.pte_bits, ((end_vpn - 1) >> pt.pte_bits) + 1):
        if k in pt.pmd_leaf:
            vmemmap_split_pmd(m, k)
    freed: list[int] = []
    frame, _ = pt.resolve(np.array([reuse_vpn]))
    reuse = int(frame[0])
    if head_copy:
        new = int(f.alloc_ram(1, 0, VMEMMAP, function="vmemmap_remap_free")[0])
        st.copy_page((int(f.home[new]), int(f.pfn[new])), (int(f.home[reuse]), int(f.pfn[reuse])))
        freed.append(pt.remap_pte(reuse_vpn, new, ro=False))
        f.put(np.array([new]))  # alloc's reference: the PTE holds one now
        reuse = new
    for vpn in range(reuse_vpn + 1, end_vpn):                             # vmemmap_remap_pte
        freed.append(pt.remap_pte(vpn, reuse, ro=True))
    freed_arr = np.array(freed, np.int64)
    boot = f.boot[freed_arr].copy()
    for fid in freed_arr.tolist():
        st.drop((int(f.home[fid]), int(f.pfn[fid])))
    dead = f.put(freed_arr)                                                # free_vmemmap_page
    if dead.size != freed_arr.size:
        raise AssertionError("a freed vmemmap page is still referenced")
    if m.kernel.memmap_counter:
        m.vmstat["nr_memmap_boot_pages"] -= int(boot.sum())
        m.vmstat["nr_memmap_pages"] -= int((~boot).sum()) - (1 if head_copy else 0)
    return reuse, len(freed) - (1 if head_copy else 0)


def hugetlb_vmemmap_optimize(m: Machine, folio: HugetlbFolio,
                             head_copy: bool | None = None) -> HvoReport:
    """``hugetlb_vmemmap_optimize_folio`` -> ``vmemmap_remap_free(start, end, reuse)``.

    Splits PMD leaves over ``[reuse, end)`` (``vmemmap_split_pmd``), optionally copies the head
    vmemmap page (6.2+, ``head_copy``; default: on for ``folio``-layout kernels with one kept
    page), remaps every vmemmap page past the kept ones read-only onto the reuse page and frees
    the pages they mapped.  Refuses (changing nothing) if the page is already optimized (the
    kernel returns silently there), dissolved, or RAM for the PTE tables / head copy is short.
    """
    folio = _find(m, folio)
    if m.kernel.shared_tail:  # the 2026 rework: tails onto the zone's shared tail page
        return hugetlb_vmemmap_optimize_folio(m, folio)
    if folio.optimized:
        raise KernelError("EINVAL", "hugetlb_vmemmap_optimize_folio",
                          f"HugeTLB page at pfn {folio.head_pfn:#x} is already optimized "
                          "(HPageVmemmapOptimized); the kernel returns without doing anything")
    if head_copy is not None and not isinstance(head_copy, bool):
        raise ParameterError("head_copy", head_copy, "True, False or None (the variant's default)")
    reserve = _check_optimizable(m, folio)
    if head_copy is None:
        head_copy = reserve == 1 and m.kernel.hvo_head_copy
    if head_copy and reserve != 1:
        raise ParameterError("head_copy", head_copy, "False: the 6.2 head copy needs 5.18+ HVO "
                             "(one kept vmemmap page)")
    pt = m.pgtables
    s, e = _vmemmap_span(m, folio)
    reuse_vpn = s + reserve - 1
    leaves = [k for k in range(reuse_vpn >> pt.pte_bits, ((e - 1) >> pt.pte_bits) + 1)
              if k in pt.pmd_leaf]
    need = len(leaves) + (1 if head_copy else 0)
    if m.ram.free is not None and m.ram.free < need:
        raise KernelError("ENOMEM", "vmemmap_remap_free",
                          f"needs {need} page(s) (PTE tables for the PMD split"
                          f"{' + the head copy' if head_copy else ''}), {m.ram.free} free")
    frame, _ = pt.resolve(np.arange(s, e, dtype=np.int64))
    if (frame < 0).any():
        raise VmemmapFault(f"vmemmap of HugeTLB page {folio.head_pfn:#x} is not mapped")
    reuse, data_freed = vmemmap_remap_free(m, reuse_vpn, e, head_copy)
    folio.optimized, folio.reuse_frame, folio.reserve = True, reuse, reserve
    if reserve == 1:
        _state(m).fake_head_key += 1
    return HvoReport(folio.order, e - s, reserve, reserve - 1, data_freed, len(leaves),
                     head_copy, data_freed - len(leaves))


def vmemmap_remap_alloc(m: Machine, reuse_vpn: int, end_vpn: int, reuse: int,
                        reserve: int) -> None:
    """``vmemmap_remap_alloc(start, end, reuse, gfp)``: allocate ``end - start`` pages, then
    ``vmemmap_restore_pte`` for each: ``copy_page`` of the reuse page, 5.18+
    ``reset_struct_pages`` (``m.kernel.nr_reset_struct_page`` = 3 struct pages: 5.19 copies
    struct page 3 into each of 0-2, 6.1+ copies the block 3-5 onto 0-2; none in 5.14-5.17,
    whose reuse page holds only tails; none in 6.12.114-6.12.117, whose backport of
    c7bde43f6daf copies the mapped head copy as it is), and the PTE back to ``PAGE_KERNEL``; the
    reuse page loses one reference per PTE."""
    pt, f = m.pgtables, m.frames
    st = struct_pages(m)
    key_reuse = (int(f.home[reuse]), int(f.pfn[reuse]))
    st.locate(np.array([reuse_vpn * st.per_page]))
    nr = end_vpn - reuse_vpn - 1
    new = f.alloc_ram(nr, 0, VMEMMAP, function="vmemmap_remap_alloc")
    n_reset = 0 if reserve == 2 else m.kernel.nr_reset_struct_page
    olds = []
    for vpn, fid in zip(range(reuse_vpn + 1, end_vpn), new.tolist()):     # vmemmap_restore_pte
        key = (int(f.home[fid]), int(f.pfn[fid]))
        st.copy_page(key, key_reuse)                                      # copy_page
        if n_reset:                                                       # reset_struct_pages
            raw = st._raw[st.slot[key]]  # the copy's 8-word struct pages
            if m.kernel.reset_loop:  # 5.19: memcpy(start + i, from, sizeof(*from)) per i
                raw[: 8 * n_reset] = np.tile(raw[8 * n_reset: 8 * n_reset + 8], n_reset)
            else:                    # 6.1+: memcpy(start, from, sizeof(*from) * N)
                raw[: 8 * n_reset] = raw[8 * n_reset: 16 * n_reset].copy()
        olds.append(pt.remap_pte(vpn, fid, ro=False))
    f.put(new)  # alloc's reference: the PTE holds one now
    f.put(np.array(olds, np.int64))
    if m.kernel.memmap_counter:
        m.vmstat["nr_memmap_pages"] += nr


def hugetlb_vmemmap_restore(m: Machine, folio: HugetlbFolio) -> HvoReport:
    """``hugetlb_vmemmap_restore_folio`` -> ``vmemmap_remap_alloc(start, end, reuse)``: allocate
    the freed vmemmap pages again, copy the reuse page into each (5.18+:
    ``reset_struct_pages``), remap them RW.  The PTE tables of the split stay.  Refuses,
    changing nothing, if the page is not optimized (the kernel returns 0 there) or RAM is short
    (-ENOMEM, the page stays optimized)."""
    folio = _find(m, folio)
    if m.kernel.shared_tail:  # the 2026 rework: copies of the shared tail page
        return hugetlb_vmemmap_restore_folio(m, folio)
    if not folio.optimized:
        raise KernelError("EINVAL", "hugetlb_vmemmap_restore_folio",
                          f"HugeTLB page at pfn {folio.head_pfn:#x} is not optimized "
                          "(HPageVmemmapOptimized clear); the kernel returns 0 doing nothing")
    s, e = _vmemmap_span(m, folio)
    reserve = folio.reserve
    reuse_vpn = s + reserve - 1
    nr = e - reuse_vpn - 1
    if m.ram.free is not None and m.ram.free < nr:
        raise KernelError("ENOMEM", "vmemmap_remap_alloc",
                          f"needs {nr} page(s) to restore the vmemmap, {m.ram.free} free")
    vmemmap_remap_alloc(m, reuse_vpn, e, folio.reuse_frame, reserve)
    folio.optimized, folio.reuse_frame = False, -1
    if reserve == 1:
        _state(m).fake_head_key -= 1
    return HvoReport(folio.order, e - s, reserve, reserve - 1, -nr, 0, False, -nr)


#: PAGE_FLAGS_CHECK_AT_FREE (include/linux/page-flags.h) as page flag names; those the
#: kernel variant lacks are skipped
_CHECK_AT_FREE = ("PG_lru", "PG_locked", "PG_private", "PG_private_2", "PG_writeback",
                  "PG_reserved", "PG_slab", "PG_active", "PG_unevictable", "PG_mlocked")


def free_tail_pages_bad(m: Machine, head: int, nr: int) -> list[tuple[int, str]]:
    """The tail checks of ``free_pages_prepare`` for a compound page of ``nr`` pages at
    ``head``: ``free_tail_page_prepare`` (6.12: "corrupted mapping in tail page" unless
    ``mapping == TAIL_MAPPING``, skipped for tails 1, 2 and -- HugeTLB fields overlap it --
    3; "corrupted compound_head") and ``free_page_is_bad`` ("nonzero mapcount", "nonzero
    _refcount", "PAGE_FLAGS_CHECK_AT_FREE flag(s) set").  Returns (pfn, reason) per bad tail.
    Only struct pages a restore left dirty fail them: the copies of head, page[1..3] that
    Debian's 6.12.117 puts at the start of every restored vmemmap page (the real-kernel
    check's dmesg)."""
    tails = head + np.arange(1, nr, dtype=np.int64)
    idx = tails - head
    mapping = read_field(m, tails, "mapping")
    ch = read_field(m, tails, "compound_head")
    mapc = read_field(m, tails, "_mapcount")
    ref = read_field(m, tails, "_refcount")
    flags = read_field(m, tails, "flags")
    table = {}
    for name in _CHECK_AT_FREE:
        try:
            table[name] = PG(m, name)
        except ParameterError:
            continue
    mask = np.uint64(sum(1 << b for b in table.values()))
    skip = (idx == 1) | (idx == 2) | ((idx == 3) & (m.kernel.layout == "folio"))
    reasons: list[tuple[int, str]] = []
    bad_map = ~skip & (mapping != np.uint64(TAIL_MAPPING))
    bad_ch = ch != head_va(m, head) + np.uint64(1)
    bad_mc = mapc != -1
    bad_ref = ref != 0
    bad_fl = (flags & mask) != 0
    for i in np.flatnonzero(bad_map | bad_ch | bad_mc | bad_ref | bad_fl).tolist():
        why = [w for w, b in (("corrupted mapping in tail page", bad_map[i]),
                              ("corrupted compound_head", bad_ch[i]),
                              ("nonzero mapcount", bad_mc[i]), ("nonzero _refcount", bad_ref[i]),
                              ("PAGE_FLAGS_CHECK_AT_FREE flag(s) set", bad_fl[i])) if b]
        reasons.append((int(tails[i]), " | ".join(why)))
    return reasons


def dissolve_free_huge_page(m: Machine, folio: HugetlbFolio) -> list[tuple[int, str]]:
    """``dissolve_free_huge_page()``: restore the vmemmap if optimized (-ENOMEM leaves the page
    a HugeTLB page), then give the pages back to the buddy allocator (``destroy_compound``:
    PG_head, tails' ``compound_head`` and ``mapping`` cleared; page[1] metadata zeroed).
    Dissolving twice is -EINVAL.

    The free path checks the tails first (:func:`free_tail_pages_bad`).  If any is bad the
    kernel prints "BUG: Bad page state" for each and does not free the page: the tails lose
    ``mapping`` and ``compound_head`` (``free_tail_page_prepare`` always clears them) but the
    bad ones and the head keep their flags, and the HugeTLB page is gone from both HugeTLB and
    the buddy allocator.  That is what Debian's 6.12.117 does after HVO (kernel variant
    ``6.12.117``; measured: every restored vmemmap page starts with copies of head, page[1],
    page[2] and page[3] because its restore no longer resets them: stable 6.12.114's backports
    of c0b495b91a47 and c7bde43f6daf without 622026e87c40, see the module docstring).  Returns
    the bad pages."""
    folio = _find(m, folio)
    head, nr = folio.head_pfn, folio.nr_pages
    # a free HugeTLB page sits in the pool with refcount 0 (the model's allocation left 1);
    # __update_and_free_hugetlb_folio restores the vmemmap before folio_ref_unfreeze
    if folio.optimized:
        write_field(m, head, "_refcount", 0)      # the head vmemmap page is writable (kept)
        hugetlb_vmemmap_restore(m, folio)
    tails = head + np.arange(1, nr, dtype=np.int64)
    folio_set_hugetlb(m, head, False)                                       # __clear_hugetlb
    if m.kernel.layout == "folio":   # free_pages_prepare: page[1].flags &= ~PAGE_FLAGS_SECOND
        p1 = read_field(m, head + 1, "flags")
        write_field(m, head + 1, "flags", p1 & ~np.uint64(0xFF))
    bad = free_tail_pages_bad(m, head, nr)
    if bad:
        write_field(m, tails, "compound_head", 0)
        write_field(m, tails, "mapping", 0)
        st = _state(m)
        st.bad_pages.extend(bad)
        st.leaked.append(head)
        folio.dissolved = True
        st.folios.remove(folio)
        return bad
    flags = int(read_field(m, head, "flags")[0])
    write_field(m, head, "flags", flags & ~(1 << PG(m, "PG_head")))
    write_field(m, head, "_refcount", 0)
    write_field(m, tails, "compound_head", 0)
    write_field(m, tails, "mapping", 0)
    p1 = read_field(m, head + 1, "flags")
    write_field(m, np.array([head + 1, head + 2]), "words", np.zeros((2, 8), np.uint64))
    write_field(m, head + 1, "flags", p1 & ~np.uint64(0xFF))
    va = head_va(m, np.array([head + 1, head + 2]))
    write_field(m, np.array([head + 1, head + 2]), "lru_next", va + np.uint64(8))
    write_field(m, np.array([head + 1, head + 2]), "lru_prev", va + np.uint64(8))
    write_field(m, np.array([head + 1, head + 2]), "_mapcount", -1)
    folio.dissolved = True
    _state(m).folios.remove(folio)
    return []


# -- reports -----------------------------------------------------------------------------------
def hvo_savings(kernel: str = "6.6", size: str = "2M", head_copy: bool | None = None,
                arch: str = "x86_64") -> dict[str, int]:
    """Run HVO on one HugeTLB page in a fresh machine and read the savings off the model:
    data pages freed, PTE tables added by the split, and net; plus the same for a second page
    in the same PMD (no new split: the table is shared)."""
    nbytes = parse_size(size, "size")
    m = Machine(arch, kernel, ram=max(3 * nbytes, 1 << 28))  # two pages above the first MiB
    before = m.ram.used
    f1 = alloc_hugetlb_folio(m, size)
    r1 = hugetlb_vmemmap_optimize(m, f1, head_copy)
    out = {"vmemmap_pages": r1.vmemmap_pages, "kept": r1.reserve,
           "data_pages_freed": r1.data_pages_freed, "split_pte_tables": r1.split_pte_tables,
           "net_pages_saved": r1.net_pages_saved, "ram_pages_delta": before - m.ram.used}
    try:
        f2 = alloc_hugetlb_folio(m, size)
    except KernelError:
        return out
    r2 = hugetlb_vmemmap_optimize(m, f2, head_copy)
    out["second_page_split_pte_tables"] = r2.split_pte_tables
    out["second_page_net_pages_saved"] = r2.net_pages_saved
    return out


def contrast_with_device_dax(order: int = 9, kernel: str = "6.6") -> dict[str, dict[str, int]]:
    """Device-dax vs HVO for one compound page of ``order``, both read off the model: vmemmap
    pages, unique data pages kept, which vmemmap page the others map (0 = head page, 1 = first
    tail page), and pages saved.  Device-dax populates its memmap deduplicated and reuses the
    TAIL page; HVO remaps a populated memmap and reuses the HEAD page (5.18+)."""
    orders = [o for o in hugetlb_orders(Machine("x86_64", kernel)) if o]
    order = as_int("order", order, None, None, "a HugeTLB order on x86_64: "
                   + ", ".join(map(str, orders)))
    if order not in orders:
        raise ParameterError("order", order, "a HugeTLB order on x86_64: "
                             + ", ".join(map(str, orders)))
    m = Machine("x86_64", kernel)
    a = m.arch
    start = 64 << 30
    size = max(1 << (order + a.page_shift), a.PAGES_PER_SECTION << a.page_shift)
    pg = DevPagemap(ranges=[(start, start + size)], vmemmap_shift=order)
    memremap_pages(m, pg)
    s = start >> a.page_shift
    vs = s * SIZEOF_STRUCT_PAGE >> a.page_shift
    nv = (1 << order) * SIZEOF_STRUCT_PAGE >> a.page_shift
    fr, _ = m.pgtables.resolve(np.arange(vs, vs + nv, dtype=np.int64))
    dax = {"vmemmap_pages": nv, "kept": len(set(fr.tolist())),
           "reused_vmemmap_page": int(np.flatnonzero(fr == fr[-1])[0]),
           "saved": nv - len(set(fr.tolist()))}
    m2 = Machine("x86_64", kernel, ram=max(2 << (order + a.page_shift), 1 << 28))
    folio = alloc_hugetlb_folio(m2, 1 << (order + a.page_shift))
    r = hugetlb_vmemmap_optimize(m2, folio)
    vs2 = folio.head_pfn * SIZEOF_STRUCT_PAGE >> a.page_shift
    fr2, _ = m2.pgtables.resolve(np.arange(vs2, vs2 + nv, dtype=np.int64))
    hvo = {"vmemmap_pages": nv, "kept": len(set(fr2.tolist())),
           "reused_vmemmap_page": int(np.flatnonzero(fr2 == fr2[-1])[0]),
           "saved": r.data_pages_freed}
    return {"device_dax": dax, "hvo": hvo}


def hugetlb_vmemmap_optimize_folio(m: Machine, folio: HugetlbFolio) -> HvoReport:
    """``__hugetlb_vmemmap_optimize_folio`` (mm/hugetlb_vmemmap.c at ``0454b15e9bbd``).

    ``vmemmap_tail = vmemmap_shared_tail_page(h->order, folio_zone(folio))``; a new page
    (``alloc_pages_node``) gets a copy of the head vmemmap page (``memmap_pages_add(1)``);
    ``vmemmap_remap_free`` over the whole vmemmap (PMD leaves split first) maps the first PTE to
    the copy ``PAGE_KERNEL`` and every other PTE to the shared tail ``PAGE_KERNEL_RO``
    (``mk_pte``, no ``get_page``), and every page the vmemmap had is freed
    (``free_vmemmap_page``: boot or normal counter -1 each).  No fake heads: the shared page
    holds tails only.  Checks (already optimized, RAM for the split/head/shared page) happen
    first, so a refusal changes nothing."""
    pt, f = m.pgtables, m.frames
    if folio.optimized:
        raise KernelError("EINVAL", "hugetlb_vmemmap_optimize_folio",
                          f"HugeTLB page at pfn {folio.head_pfn:#x} is already optimized; the "
                          "kernel returns without doing anything")
    _check_optimizable(m, folio)
    s, e = _vmemmap_span(m, folio)
    key = (ZONE_NORMAL_NAME, 0, folio.order)
    leaves = [k for k in range(s >> pt.pte_bits, ((e - 1) >> pt.pte_bits) + 1)
              if k in pt.pmd_leaf]
    need = len(leaves) + 1 + (0 if key in _vmemmap_optimization_state(m).tails else 1)
    if m.ram.free is not None and m.ram.free < need:
        raise KernelError("ENOMEM", "__hugetlb_vmemmap_optimize_folio",
                          f"needs {need} page(s) (PTE tables for the split, the head copy, the "
                          f"shared tail page), {m.ram.free} free")
    frame, _ = pt.resolve(np.arange(s, e, dtype=np.int64))
    if (frame < 0).any():
        raise VmemmapFault(f"vmemmap of HugeTLB page {folio.head_pfn:#x} is not mapped")
    new_tail = key not in _vmemmap_optimization_state(m).tails
    tail = vmemmap_shared_tail_page(m, folio.order, ZONE_NORMAL_NAME, 0)
    st = struct_pages(m)
    st.locate(np.array([s * st.per_page, (s + 1) * st.per_page]))  # contents to be copied
    for k in leaves:
        vmemmap_split_pmd(m, k)
    frame, _ = pt.resolve(np.array([s, s + 1]))
    old_head = int(frame[0])
    if new_tail:
        # The kernel fills a new shared page with tails of a NULL head (mm_zero_struct_page,
        # _mapcount -1, node, zone, prep_compound_tail(page, NULL, order)); the model copies
        # the folio's second vmemmap page, whose tails prep_compound_page wrote with the same
        # mask-encoded compound_info (TAIL_MAPPING and a zero refcount besides).
        st.copy_page((int(f.home[tail]), int(f.pfn[tail])),
                     (int(f.home[frame[1]]), int(f.pfn[frame[1]])))
    head = int(f.alloc_ram(1, 0, VMEMMAP, function="__hugetlb_vmemmap_optimize_folio")[0])
    st.copy_page((int(f.home[head]), int(f.pfn[head])),
                 (int(f.home[old_head]), int(f.pfn[old_head])))
    freed = [pt.remap_pte(s, head, ro=False)]
    f.put(np.array([head]))  # the allocation's reference: the PTE holds one now
    for vpn in range(s + 1, e):
        freed.append(pt.remap_pte(vpn, tail, ro=True))
    f.refcount[tail] -= e - s - 1  # mk_pte without get_page: HVO's PTEs take no reference
    freed_arr = np.array(freed, np.int64)
    boot = f.boot[freed_arr].copy()
    for fid in freed_arr.tolist():
        st.drop((int(f.home[fid]), int(f.pfn[fid])))
    dead = f.put(freed_arr)
    if dead.size != freed_arr.size:
        raise AssertionError("a freed vmemmap page is still referenced")
    if m.kernel.memmap_counter:
        m.vmstat["nr_memmap_boot_pages"] -= int(boot.sum())
        m.vmstat["nr_memmap_pages"] -= int((~boot).sum()) - 1
    folio.optimized, folio.reuse_frame, folio.reserve = True, tail, 1
    data_freed = len(freed) - 1
    return HvoReport(folio.order, e - s, 1, 0, data_freed, len(leaves), True,
                     data_freed - len(leaves))


def hugetlb_vmemmap_restore_folio(m: Machine, folio: HugetlbFolio) -> HvoReport:
    """``__hugetlb_vmemmap_restore_folio`` -> ``vmemmap_remap_alloc`` (mm/hugetlb_vmemmap.c at
    ``0454b15e9bbd``): over the vmemmap past ``HUGETLB_VMEMMAP_RESERVE_SIZE``, allocate one page
    per PTE (``memmap_pages_add``), and for each PTE that maps the shared tail page copy the
    shared page into a new page and map it ``PAGE_KERNEL`` (``vmemmap_restore_pte``).  The head
    copy stays mapped.  The shared page keeps its zone reference."""
    pt, f = m.pgtables, m.frames
    if not folio.optimized:
        raise KernelError("EINVAL", "hugetlb_vmemmap_restore_folio",
                          f"HugeTLB page at pfn {folio.head_pfn:#x} is not optimized; the kernel "
                          "returns 0 doing nothing")
    s, e = _vmemmap_span(m, folio)
    nr = e - s - 1
    if m.ram.free is not None and m.ram.free < nr:
        raise KernelError("ENOMEM", "vmemmap_remap_alloc",
                          f"needs {nr} page(s) to restore the vmemmap, {m.ram.free} free")
    tail = folio.reuse_frame
    st = struct_pages(m)
    new = f.alloc_ram(nr, 0, VMEMMAP, function="vmemmap_remap_alloc")
    key_tail = (int(f.home[tail]), int(f.pfn[tail]))
    for vpn, fid in zip(range(s + 1, e), new.tolist()):
        if key_tail in st.slot:
            st.copy_page((int(f.home[fid]), int(f.pfn[fid])), key_tail)
        pt.remap_pte(vpn, fid, ro=False)
    f.put(new)  # the allocation's reference: each PTE holds one now
    if m.kernel.memmap_counter:
        m.vmstat["nr_memmap_pages"] += nr
    folio.optimized, folio.reuse_frame = False, -1
    return HvoReport(folio.order, e - s, 1, 0, -nr, 0, False, -nr)
