"""Invariants of vmemmap population and teardown, over random configurations (hypothesis).

The invariants are the kernel's (kernel-facts.md §3, §13): every vmemmap page of a populated
range is mapped; with deduplication each compound page's head vmemmap page is private and all
its tail-only vmemmap pages map one shared page; a reused page's reference count is one per PTE
mapping it (``get_page(reuse)`` per reuse PTE, paired with ``put_page_testzero`` on free); and
removing everything returns every frame.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vmemlab
from vmemlab.errors import KernelError
from vmemlab.frames import PAGETABLE
from vmemlab.machine import Machine
from vmemlab.memremap import DevPagemap, memremap_pages, memunmap_pages, pgmap_vmemmap_nr
from vmemlab.page import read_field
from vmemlab.sparse_vmemmap import vmemmap_can_optimize

GiB = 1 << 30


def memmap_vpns(m: Machine, pgmap: DevPagemap) -> np.ndarray:
    a = m.arch
    s, e = pgmap.ranges[0]
    lo = ((s >> a.page_shift) * a.struct_page_size) >> a.page_shift
    hi = -(-((e >> a.page_shift) * a.struct_page_size) >> a.page_shift)
    return np.arange(lo, hi, dtype=np.int64)


def pte_entries(m: Machine) -> np.ndarray:
    """Every present PTE of every PTE table (each table once)."""
    tables = [t[t >= 0] for t in m.pgtables.pte.values()]
    return np.concatenate(tables) if tables else np.empty(0, np.int64)


configs = st.sampled_from([
    (arch, align, kern)
    for arch, a in vmemlab.ARCHES.items()
    for align in a.dax_aligns
    for kern in vmemlab.KERNELS
])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs, map_=st.sampled_from(["mem", "dev"]), compounds=st.integers(1, 3))
def test_population_invariants(cfg, map_, compounds):
    arch, align, kern = cfg
    a = vmemlab.get_arch(arch)
    section = 1 << a.section_size_bits
    size = max((compounds + 1) * align, 2 * section)
    size = -(-size // section) * section
    p = vmemlab.plan(size, align=align, map=map_, arch=arch, kernel=kern)
    m, pgmap = p._machine, p._pgmap
    vpns = memmap_vpns(m, pgmap)
    frame, _ = m.pgtables.resolve(vpns)
    assert (frame >= 0).all(), "every vmemmap page of the range resolves to a frame"

    # reference counts: a PTE-mapped data frame's count equals the PTEs mapping it (a PTE
    # table shared by several PMD entries, as in v3, holds its PTEs once)
    ids, counts = np.unique(pte_entries(m), return_counts=True)
    if m.kernel.shared_tail:  # mm-2026: the zone holds one more reference on its shared pages
        from vmemlab.vmemmap_optimization import shared_tail_pages

        counts = counts + np.isin(ids, [t["frame"] for t in shared_tail_pages(m).values()])
    assert (m.frames.refcount[ids] == counts).all()

    # mm-2026 shares one tail page across compound pages: tests/test_vmemmap_optimization.py
    if vmemmap_can_optimize(m, None, pgmap) and map_ == "mem" and not m.kernel.shared_tail:
        nr = pgmap_vmemmap_nr(pgmap)
        per = nr * a.struct_page_size // a.PAGE_SIZE
        if per >= 2:
            f = frame.reshape(-1, per)
            heads, tails = f[:, 0], f[:, 1:]
            assert (m.frames.refcount[heads] == 1).all(), "head vmemmap page is private"
            assert (tails == tails[:, :1]).all(), "tail-only pages map one shared frame"
            assert len(np.unique(tails[:, 0])) == f.shape[0], "one tail frame per compound"
            if not m.kernel.pmd_reuse:
                assert (m.frames.refcount[tails[:, 0]] == per - 1).all()

    before = vmemlab.Machine(arch, kern).state()
    vmemlab.teardown(p)
    after = m.state()
    step = min(pgmap_vmemmap_nr(pgmap), a.PAGES_PER_SECTION) * a.struct_page_size
    if (vmemmap_can_optimize(m, None, pgmap) and map_ == "mem" and step < 2 * a.PAGE_SIZE
            and not (a.arch_compound_override and m.kernel.can_optimize_rule == "reserve_nr")):
        # the generic loop with a step under two pages maps one page past the range, which
        # teardown never frees (test_5_19_tiny_order_populates_one_page_past_the_range)
        return
    if m.kernel.shared_tail:  # the zone keeps its shared tail pages (test_vmemmap_optimization)
        return
    assert after["ram_used"] == 0 and after["live_frames"] == 0
    assert after["usage"] == before["usage"]
    assert after["vmstat"] == before["vmstat"]


@settings(max_examples=25, deadline=None)
@given(order=st.sampled_from([0, 9, 18]), ops=st.lists(st.tuples(st.booleans(),
                                                             st.integers(0, 3)), max_size=12),
       kern=st.sampled_from(list(vmemlab.KERNELS)))
def test_add_remove_cycles_return_every_frame(order, ops, kern):
    """Random hot-add / hot-remove of four 1 GiB slots in any order."""
    m = Machine("x86_64", kern)
    initial = m.state()
    maps: dict[int, DevPagemap] = {}
    base = 64 * GiB
    for add, slot in ops:
        if add and slot not in maps:
            pg = DevPagemap(ranges=[(base + slot * GiB, base + (slot + 1) * GiB)],
                            vmemmap_shift=order, name=f"dax{slot}.0")
            memremap_pages(m, pg)
            maps[slot] = pg
        elif not add and slot in maps:
            memunmap_pages(m, maps.pop(slot))
    for pg in list(maps.values()):
        memunmap_pages(m, pg)
    if m.kernel.shared_tail:  # the zone keeps its shared tail pages (test_vmemmap_optimization)
        from vmemlab.vmemmap_optimization import shared_tail_pages

        assert m.ram.used == len(shared_tail_pages(m))
        return
    assert m.state() == initial
    assert m.frames.pages(PAGETABLE) == 0


def test_1g_compound_refcounts_match_kernel_facts():
    """kernel-facts.md §13: a 1G devdax page has 2 data pages with refcounts 1 (head) and 4095
    (tail: 1 + 510 reuse PTEs in section 1 + 7 * 512 in sections 2-8), plus 8 PTE tables."""
    p = vmemlab.plan("2G", align="1G")  # 1 GiB holds the info block: the data needs a second
    m = p._machine
    frame, _ = m.pgtables.resolve(memmap_vpns(m, p._pgmap)[:4096])
    ids, counts = np.unique(frame, return_counts=True)
    assert sorted(m.frames.refcount[ids].tolist()) == [1, 4095]
    assert sorted(counts.tolist()) == [1, 4095]
    assert p.pagetables["pte"] == 2 * 8


def test_v3_shares_one_pte_table_across_sections_3_to_8():
    p = vmemlab.plan("2G", align="1G", kernel="v3")
    m = p._machine
    a = m.arch
    k0 = (p._pgmap.ranges[0][0] >> a.page_shift) * 64 >> a.PMD_SHIFT
    entries = [m.pgtables.pmd_entry(k0 + i) for i in range(8)]
    tables = [t for kind, t in entries]
    assert len(set(tables[1:])) == 1 and tables[0] != tables[1]
    assert m.frames.refcount[tables[1]] == 7  # one reference per PMD entry pointing at it
    vmemlab.teardown(p)
    assert m.state()["live_frames"] == 0


def test_5_19_tiny_order_populates_one_page_past_the_range():
    """With order 1 (128 B of memmap per compound page) the 5.19 loop populates the page of
    ``addr + PAGE_SIZE`` for the last compound page: one vmemmap page beyond the section's
    memmap.  The 6.6 rule (more than VMEMMAP_RESERVE_NR pages) never takes this path."""
    m = Machine("x86_64", "5.19")
    pg = DevPagemap(ranges=[(64 * GiB, 64 * GiB + (128 << 20))], vmemmap_shift=1)
    memremap_pages(m, pg)
    vpns = memmap_vpns(m, pg)
    beyond, _ = m.pgtables.resolve(np.array([vpns[-1] + 1]))
    assert beyond[0] >= 0
    memunmap_pages(m, pg)
    # the stray page stays, and with it the tables above it: its own PTE table (the next
    # section's), the PMD table and the PUD table
    assert m.state()["live_frames"] == 4
    assert m.frames.pages(PAGETABLE) == 3


# -- ppc64 radix, 64K pages (arch/powerpc/mm/book3s64/radix_pgtable.c and init_64.c as read in
# Debian's linux-source-6.12 6.12.117: Makefile VERSION 6, PATCHLEVEL 12, SUBLEVEL 117).
# Arithmetic shared by these tests: pfn p's struct page is at vmemmap offset p * 64, so one
# 2 MiB PMD of vmemmap VA holds the struct pages of 2 MiB / 64 = 32768 pfns = 2 GiB of memory,
# 32 pages of 64 KiB; a GiB of memory has 16 vmemmap pages.
PPC = "ppc64-radix-64k"


def _ppc_add(kernel: str, ranges: list[tuple[int, int, int]]):
    m = Machine(PPC, kernel)
    pgs = [DevPagemap(ranges=[(s, e)], vmemmap_shift=shift, name=f"dax{i}.0")
           for i, (s, e, shift) in enumerate(ranges)]
    for pg in pgs:
        memremap_pages(m, pg)
    return m, pgs


def test_ppc64_radix_6_6_pmd_blocks_only_from_pmd_aligned_addresses():
    """radix__vmemmap_populate (6.6+, 368a0590d954): radix_pgtable.c:1148 aligns start down to
    a page only; :1174 sends an address that is not PMD_SIZE-aligned to base_mapping (:1204,
    one page per step, :1219); an aligned empty PMD gets vmemmap_alloc_block_buf(PMD_SIZE)
    (:1183).  Memory [3G, 6G): vmemmap [3M, 6M): 16 base pages for [3M, 4M), one 2 MiB block
    (32 pages) for [4M, 6M): 48 data pages, PMD entry 2 a leaf, entry 1 a PTE table."""
    for kernel in ("6.6", "6.12", "6.12.117"):
        m, pgs = _ppc_add(kernel, [(3 * GiB, 6 * GiB, 0)])
        assert sorted(m.pgtables.pmd_leaf) == [2]
        assert m.pgtables.pmd_entry(1)[0] == "table"
        assert m.usage()["ram_data_pages"] == 16 + 32
        frame, _ = m.pgtables.resolve(np.arange(48, 64, dtype=np.int64))
        assert len(set(frame.tolist())) == 16 and (m.frames.order[frame] == 0).all()
        memunmap_pages(m, pgs[0])
        assert m.state()["live_frames"] == 0


def test_ppc64_radix_before_6_6_maps_every_touched_2m_block():
    """Before 6.6 ppc64 vmemmap_populate (init_64.c, the body 6.12 keeps as __vmemmap_populate)
    used page_size = 2 MiB on radix (radix__early_init_mmu: mmu_vmemmap_psize = MMU_PAGE_2M,
    removed by 601f006fddc6), aligned start down to it (init_64.c:209) and mapped a whole block
    with vmemmap_create_mapping (:265): [3G, 6G) takes the blocks of [2M, 4M) and [4M, 6M),
    64 data pages and no PTE table."""
    for kernel in ("5.17", "5.19", "6.1"):
        m, pgs = _ppc_add(kernel, [(3 * GiB, 6 * GiB, 0)])
        assert sorted(m.pgtables.pmd_leaf) == [1, 2]
        assert m.usage()["ram_data_pages"] == 64 and m.usage()["pte_tables"] == 0
        memunmap_pages(m, pgs[0])
        assert m.state()["live_frames"] == 0


def test_ppc64_radix_block_covers_128_sections_and_stays_while_used():
    """kernel-facts §0a 6: a block maps 2 GiB worth of struct pages (128 sections of 16 MiB)
    even when the range ends earlier (radix_pgtable.c:1174-1186 never looks at ``end``); the
    next range inside it finds the leaf (vmemmap_check_pmd, :1197) and allocates nothing; the
    leaf is freed only when no section in it is present (remove_pmd_table,
    vmemmap_pmd_is_unused)."""
    m, (a,) = _ppc_add("6.12.117", [(4 * GiB, 5 * GiB, 0)])
    assert m.usage()["ram_data_pages"] == 32  # twice the 16 pages of 1 GiB of memmap
    b = DevPagemap(ranges=[(5 * GiB, 6 * GiB)], name="dax1.0")
    memremap_pages(m, b)
    assert m.usage()["ram_data_pages"] == 32
    memunmap_pages(m, a)
    assert sorted(m.pgtables.pmd_leaf) == [2] and m.usage()["ram_data_pages"] == 32
    memunmap_pages(m, b)
    assert m.state()["live_frames"] == 0


def test_ppc64_radix_altmap_cross_boundary():
    """altmap_cross_boundary (init_64.c:187-200): a block may come from the device only if every
    pfn it describes lies in [base_pfn, end_pfn].  A 1 GiB map=dev namespace at 4 GiB: the
    2 MiB block would describe [4G, 6G), past the device, so 6.6+ take base pages (:1174) from
    the altmap (radix__vmemmap_pte_populate, :1042: each page's 1024 pfns are inside): 16
    device pages, no RAM data; before 6.6 the whole block comes from RAM (init_64.c:231): 32
    RAM pages.  3 GiB at 3 GiB: 16 base pages + a block for [4G, 6G) inside the device, all
    on the device in 6.6+; before 6.6 [2G, 4G) crosses (RAM), [4G, 6G) does not (device)."""
    want = {("6.12.117", "1G"): (0, 16), ("6.12.117", "3G"): (0, 48),
            ("6.1", "1G"): (32, 0), ("6.1", "3G"): (32, 32)}
    for (kernel, size), (ram, dev) in want.items():
        start = 4 * GiB if size == "1G" else 3 * GiB
        p = vmemlab.plan(size, align="64K", map="dev", arch=PPC, kernel=kernel, start=start)
        assert (p.ram_data_pages, p.device_data_pages) == (ram, dev), (kernel, size)


def test_ppc64_radix_compound_pages_skip_an_existing_pmd_leaf():
    """radix vmemmap_populate_compound_pages (f2b79c0d7968): "existing huge mapping. Skip the
    range" (radix_pgtable.c:1339).  A 1 GiB-aligned compound pgmap alone costs its head and
    tail vmemmap pages (:1365-1381, 2 data pages, 16384 * 64 / 65536 = 16 vmemmap pages per
    compound page, the rest reused); behind a 4K-aligned namespace whose 2 MiB block already
    maps its struct pages it costs nothing."""
    m, _ = _ppc_add("6.12.117", [(5 * GiB, 6 * GiB, 14)])
    assert m.usage()["ram_data_pages"] == 2
    m, _ = _ppc_add("6.12.117", [(4 * GiB, 5 * GiB, 0), (5 * GiB, 6 * GiB, 14)])
    assert m.usage()["ram_data_pages"] == 32 and sorted(m.pgtables.pmd_leaf) == [2]


# -- ppc64 radix before 6.6: arch vmemmap_populate/vmemmap_free around the generic compound path
# (arch/powerpc/mm/init_64.c and book3s64/radix_pgtable.c, read in Debian's 6.1.176 source;
# 5.19-6.3 pass every pgmap with vmemmap_shift > 0 to the generic
# vmemmap_populate_compound_pages, kernel-facts §2)
MiB = 1 << 20


def test_ppc64_before_6_6_vmemmap_free_leaves_the_generic_compound_ptes_mapped():
    """Found by the stateful machine (seed 25, ppc64-radix-64k v3 and 5.19).  vmemmap_free()
    frees a block only through vmemmap_list_free(start), which knows only the blocks
    vmemmap_populate() recorded; the generic compound path records nothing, so unmapping a
    2 MiB compound namespace at 64 GiB leaves its memmap mapped: vmemmap page 64G/64K * 64 B /
    64K = 1024 and, with a step under two pages (32 * 64 B = 2 KiB), the page after it (the
    5.19 loop of test_5_19_tiny_order_populates_one_page_past_the_range): 2 data pages and
    their PTEs.  The next order-0 namespace there finds no valid subsection in the block
    (vmemmap_populated() reads pfn_valid, not the page tables), takes a new 2 MiB block (32
    pages) and __map_kernel_page() writes the PMD entry as a leaf over the PTE table: the table
    and its 2 pages are lost for good, and every struct page of the new range is mapped."""
    for kernel in ("5.19", "v3"):
        m = Machine(PPC, kernel, ram="1G")
        boot = m.usage()["ram_data_pages"]
        for (s, e), shift in (((64 * GiB, 65 * GiB), 0), ((64 * GiB, 64 * GiB + 2 * MiB), 5)):
            pg = DevPagemap(ranges=[(s, e)], vmemmap_shift=shift)
            memremap_pages(m, pg)
            memunmap_pages(m, pg)
        assert m.usage()["ram_data_pages"] == boot + 2, kernel
        assert m.pgtables.mapped_ptes() == 2 and m.pgtables.lookup(1024) >= 0
        pg = DevPagemap(ranges=[(64 * GiB, 64 * GiB + 2 * MiB)], vmemmap_shift=0)
        memremap_pages(m, pg)
        assert m.pgtables.pmd_entry(1024 >> 5)[0] == "leaf"
        assert m.usage()["ram_data_pages"] == boot + 2 + 32
        (t, (k, table)), = m.pgtables.leaked_pte.items()
        assert k == 32 and (table >= 0).sum() == 2
        pfns = np.arange(64 * GiB >> 16, (64 * GiB + 2 * MiB) >> 16)
        assert read_field(m, pfns, "_refcount").size == 32  # no VmemmapFault
        memunmap_pages(m, pg)
        assert m.usage()["ram_data_pages"] == boot + 2 and not m.pgtables.pmd_leaf.get(32)
        assert m.vmemmap_list == {0: [m.vmemmap_list[0][0]]}  # only boot's block is recorded


def test_ppc64_before_6_6_later_range_in_a_compound_block_is_refused_unchanged():
    """vmemmap_populate() skips a block when any subsection in it is valid (vmemmap_populated,
    init_64.c).  With a 2 MiB compound namespace live at 64 GiB (memmap mapped page by page by
    the generic path), an order-0 namespace at 64.5 GiB -- the same 2 MiB vmemmap block, since
    one block holds the struct pages of 2 GiB -- would have its memmap (vmemmap page
    (64G + 512M)/64K * 64 / 64K = 1032) left unmapped, and memmap_init_zone_device would fault:
    the model refuses it (-EFAULT) and changes nothing.  6.1 (87a7ae75d738 backported: no
    compound path on ppc64) and 6.6+ (radix's own path) map it."""
    for kernel in ("5.19", "v3", "6.1", "6.6"):
        m, _ = _ppc_add(kernel, [(64 * GiB, 64 * GiB + 2 * MiB, 5)])
        before = m.state()
        late = DevPagemap(ranges=[(64 * GiB + 512 * MiB, 64 * GiB + 514 * MiB)], name="dax1.0")
        if kernel in ("5.19", "v3"):
            with pytest.raises(KernelError, match="vmemmap page 1032") as e:
                memremap_pages(m, late)
            assert e.value.errno == "EFAULT" and m.state() == before
        else:
            memremap_pages(m, late)
            assert m.pgtables.lookup(1032) >= 0


def test_ppc64_before_6_6_compound_range_under_a_pmd_leaf_is_refused_unchanged():
    """The other order: an order-0 namespace's 2 MiB block is a PMD leaf, and the generic
    vmemmap_pmd_populate() takes any non-empty PMD for a table, so vmemmap_pte_populate()
    would read the block's struct pages as PTEs.  The model does not follow the kernel into
    that corruption: -EFAULT named in the message, nothing changed."""
    m, _ = _ppc_add("5.19", [(64 * GiB + 512 * MiB, 64 * GiB + 514 * MiB, 0)])
    before = m.state()
    with pytest.raises(KernelError, match="walk that leaf as a PTE table"):
        memremap_pages(m, DevPagemap(ranges=[(64 * GiB, 64 * GiB + 2 * MiB)], vmemmap_shift=5,
                                     name="dax1.0"))
    assert m.state() == before


def test_ppc64_before_6_6_stale_tail_alias_is_refused_unchanged():
    """Found by the deep stateful run (seed 41, v3 and 5.19).  A 1 GiB compound namespace at
    64 GiB has 16384 * 64 B = 1 MiB of memmap, vmemmap pages 1024-1039: a head page, a tail
    page at 1025 and PTEs 1026-1039 mapping that tail page too.  vmemmap_free() leaves them
    (no vmemmap_list entry).  A 130 MiB namespace of 2 MiB compound pages there (2 KiB of
    memmap each, so its own layout shares no page) would find vmemmap pages 1025 and 1026
    present, vmemmap_pte_populate() keeps them, and 1026's struct pages would be written over
    1025's: -EFAULT, nothing changed."""
    for kernel in ("5.19", "v3"):
        m = Machine(PPC, kernel, ram="1G")
        for (s, e), shift in (((64 * GiB, 64 * GiB + 2 * MiB), 0), ((64 * GiB, 65 * GiB), 14)):
            pg = DevPagemap(ranges=[(s, e)], vmemmap_shift=shift)
            memremap_pages(m, pg)
            memunmap_pages(m, pg)
        assert m.pgtables.lookup(1026) == m.pgtables.lookup(1039) == m.pgtables.lookup(1025)
        before = m.state()
        with pytest.raises(KernelError, match="vmemmap pages 1025 and 1039") as e:
            memremap_pages(m, DevPagemap(ranges=[(64 * GiB, 64 * GiB + 130 * MiB)],
                                         vmemmap_shift=5))
        assert e.value.errno == "EFAULT" and m.state() == before
        # the same 1 GiB layout again is what the stale PTEs already say: accepted
        memremap_pages(m, DevPagemap(ranges=[(64 * GiB, 65 * GiB)], vmemmap_shift=14))


def test_ppc64_before_6_6_refused_compound_add_takes_back_its_own_pages():
    """Found by the deep stateful run (seed 41).  A 2 MiB compound namespace at 64 GiB + 64 MiB,
    then one over [64 GiB + 62 MiB, + 68 MiB): its first section chunk maps vmemmap page 1024
    (and the page after), the second chunk overlaps the first namespace (-EEXIST), and the
    arch vmemmap_free() of the undo frees nothing the generic path mapped.  The kernel leaks
    that page; the model's promise is that a refused operation changes nothing."""
    for kernel in ("5.19", "v3"):
        m, _ = _ppc_add(kernel, [(64 * GiB + 64 * MiB, 64 * GiB + 66 * MiB, 5)])
        before = m.state()
        with pytest.raises(KernelError) as e:
            memremap_pages(m, DevPagemap(ranges=[(64 * GiB + 62 * MiB, 64 * GiB + 68 * MiB)],
                                         vmemmap_shift=5, name="dax1.0"))
        assert e.value.errno == "EEXIST" and m.state() == before


def test_ppc64_before_6_6_populate_twice_leaks_then_free_twice_returns_both_blocks():
    """The two branches of ppc64 vmemmap_populate/vmemmap_free (init_64.c before 6.6, read in
    Debian's 6.1.176) no Machine operation reaches (a leaf stays only while a pfn of its block
    is valid, and then vmemmap_populated() skips the block), called directly as the kernel
    functions are.  With no valid subsection in the block, a second vmemmap_populate()
    allocates a second 2 MiB block: vmemmap_list_populate() pushes it at the list head and
    vmemmap_create_mapping() writes the PMD leaf over the first, which nothing maps any more.
    vmemmap_free() then takes vmemmap_list_free(start), the first list entry with that
    address, so the newest block (the leaf: cleared with the mapping), and a second call the
    older one: freed although unmapped.  The vmemmap of 64 GiB is at offset
    64G / 64K * 64 B = 64 MiB, PMD entry 64M / 2M = 32; a block is 2 MiB / 64 KiB = 32 pages."""
    from vmemlab.powerpc_vmemmap import ppc64_vmemmap_free_2m, ppc64_vmemmap_populate_2m

    m = Machine(PPC, "6.1", ram="1G")
    before, data = m.state(), m.usage()["ram_data_pages"]
    start = (64 * GiB >> 16) * 64
    ppc64_vmemmap_populate_2m(m, start, start + 2 * MiB, None)
    first = m.pgtables.pmd_leaf[32]
    ppc64_vmemmap_populate_2m(m, start, start + 2 * MiB, None)
    second = m.pgtables.pmd_leaf[32]
    assert second != first and m.pgtables.leaked_blocks == [first]
    assert m.vmemmap_list[32] == [first, second]
    assert m.usage()["ram_data_pages"] == data + 64
    ppc64_vmemmap_free_2m(m, start, start + 2 * MiB, None)
    assert 32 not in m.pgtables.pmd_leaf and m.vmemmap_list[32] == [first]
    assert m.usage()["ram_data_pages"] == data + 32  # the older block: still allocated
    ppc64_vmemmap_free_2m(m, start, start + 2 * MiB, None)
    assert m.pgtables.leaked_blocks == [] and 32 not in m.vmemmap_list
    assert m.state() == before
