"""HugeTLB Vmemmap Optimization (vmemlab.hugetlb_vmemmap).

Expected values (x86_64, 4 KiB pages, 64-byte struct page), by independent arithmetic and
kernel-facts §10 (mm/hugetlb_vmemmap.c, Documentation/mm/vmemmap_dedup.rst):
* vmemmap pages per HugeTLB page: 512 * 64 / 4096 = 8 (2M); 262144 * 64 / 4096 = 4096 (1G);
* freed: 8 - 1 = 7 and 4096 - 1 = 4095 with one kept page (5.18+); 6 and 4094 with two (5.14-5.17);
* PMD splits: the 32 KiB memmap of a 2M page lies inside one 2 MiB PMD block of vmemmap -> 1 PTE
  table; the 16 MiB memmap of a 1G page covers 16 MiB / 2 MiB = 8 PMDs -> 8 PTE tables;
* fake heads (5.18+): the first struct page of each remapped vmemmap page (tail index 64 * k)
  aliases the head and shows PG_head.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmemlab.errors import KernelError, ParameterError
from vmemlab.hugetlb_vmemmap import (
    alloc_hugetlb_folio,
    contrast_with_device_dax,
    dissolve_free_huge_page,
    hugetlb_vmemmap_optimize,
    hugetlb_vmemmap_restore,
)
from vmemlab.machine import Machine
from vmemlab.page import (
    PageHead,
    PageTail,
    VmemmapFault,
    compound_head,
    compound_head_pfns,
    compound_order,
    page_fixed_fake_head,
    pfn_to_page,
    read_field,
    test_flag_bits,
    write_field,
)

GiB = 1 << 30

# kernel variant -> kept vmemmap pages (m.kernel.hvo_reserve_pages)
KEPT = {"5.17": 2, "5.19": 1, "6.1": 1, "6.6": 1, "6.12.117": 1}


@pytest.mark.parametrize("kernel", list(KEPT))
@pytest.mark.parametrize("size,order,vmemmap_pages,tables", [("2M", 9, 8, 1), ("1G", 18, 4096, 8)])
def test_hvo_frees_the_documented_pages(kernel, size, order, vmemmap_pages, tables):
    m = Machine("x86_64", kernel, ram=2 * GiB)
    folio = alloc_hugetlb_folio(m, size)
    head = pfn_to_page(m, folio.head_pfn)
    assert compound_order(head) == order
    used, data = m.ram.used, m.usage()["ram_data_pages"]
    r = hugetlb_vmemmap_optimize(m, folio)
    freed = vmemmap_pages - KEPT[kernel]
    assert (r.data_pages_freed, r.split_pte_tables) == (freed, tables)
    assert r.net_pages_saved == freed - tables
    assert m.ram.used == used - freed + tables
    assert m.usage()["ram_data_pages"] == data - freed
    # every struct page still finds its head, through the remapped (read-only) vmemmap
    pfns = folio.head_pfn + np.arange(0, 1 << order, 1 if order == 9 else 7, dtype=np.int64)
    assert (compound_head_pfns(m, pfns) == folio.head_pfn).all()
    hugetlb_vmemmap_restore(m, folio)
    # restore returns every data page; the split PTE tables stay (no re-collapse in the kernel)
    assert m.usage()["ram_data_pages"] == data
    assert m.ram.used == used + tables
    want = np.full(pfns.size, folio.head_pfn)
    if kernel == "6.12.117":
        # no reset_struct_pages (Debian 6.12.117, measured): struct page 64k of every restored
        # vmemmap page is a verbatim copy of the head, PG_head and no tail bit: its own head
        idx = pfns - folio.head_pfn
        copies = (idx % 64 == 0) & (idx > 0)
        want[copies] = pfns[copies]
    assert (compound_head_pfns(m, pfns) == want).all()


@pytest.mark.parametrize("kernel,size", [("5.19", "2M"), ("6.6", "2M"), ("6.6", "1G")])
def test_fake_heads_for_every_remapped_vmemmap_page(kernel, size):
    m = Machine("x86_64", kernel, ram=2 * GiB)
    folio = alloc_hugetlb_folio(m, size)
    hugetlb_vmemmap_optimize(m, folio)
    nr = folio.nr_pages
    firsts = folio.head_pfn + np.arange(64, nr, 64, dtype=np.int64)  # slot 0 of pages 1..
    assert test_flag_bits(m, firsts, "PG_head").all()  # the raw flag: an alias of the head
    for p in firsts[:: max(1, firsts.size // 64)].tolist():
        page = pfn_to_page(m, p)
        assert page_fixed_fake_head(page).pfn == folio.head_pfn
        assert PageTail(page) and not PageHead(page) and compound_head(page).pfn == folio.head_pfn
    assert (compound_head_pfns(m, firsts) == folio.head_pfn).all()
    assert PageHead(pfn_to_page(m, folio.head_pfn))
    hugetlb_vmemmap_restore(m, folio)
    # reset_struct_pages: restored copies no longer carry the head in slot 0
    assert not test_flag_bits(m, firsts, "PG_head").any()


def test_5_17_style_hvo_has_no_fake_heads():
    m = Machine("x86_64", "5.17", ram=GiB)
    folio = alloc_hugetlb_folio(m, "2M")
    hugetlb_vmemmap_optimize(m, folio)
    firsts = folio.head_pfn + np.arange(64, 512, 64, dtype=np.int64)
    assert not test_flag_bits(m, firsts, "PG_head").any()  # pages 2..7 alias page 1 (tails)


def test_tail_vmemmap_is_read_only_head_is_writable():
    m = Machine("x86_64", "6.6", ram=GiB)
    folio = alloc_hugetlb_folio(m, "2M")
    hugetlb_vmemmap_optimize(m, folio)
    before = m.state()
    with pytest.raises(VmemmapFault, match="read-only"):
        write_field(m, folio.head_pfn + 100, "private", 1)
    assert read_field(m, folio.head_pfn + 100, "private")[0] == 0
    write_field(m, folio.head_pfn + 3, "private", 5)  # vmemmap page 0 stays RW
    assert read_field(m, folio.head_pfn + 3, "private")[0] == 5
    assert m.state() == before


def test_errors_change_nothing():
    m = Machine("x86_64", "6.6", ram=GiB)
    folio = alloc_hugetlb_folio(m, "2M")
    hugetlb_vmemmap_optimize(m, folio)
    before = m.state()
    with pytest.raises(KernelError, match="already optimized"):
        hugetlb_vmemmap_optimize(m, folio)
    assert m.state() == before
    dissolve_free_huge_page(m, folio)
    after = m.state()
    with pytest.raises(KernelError, match="already dissolved"):
        dissolve_free_huge_page(m, folio)
    with pytest.raises(KernelError, match="not a HugeTLB page"):
        hugetlb_vmemmap_restore(m, folio)
    assert m.state() == after
    f2 = alloc_hugetlb_folio(m, "2M")
    with pytest.raises(KernelError, match="not optimized"):
        hugetlb_vmemmap_restore(m, f2)
    with pytest.raises(ParameterError):
        alloc_hugetlb_folio(m, "4M")  # no 4 MiB page-table level on x86_64
    with pytest.raises(ParameterError):
        alloc_hugetlb_folio(m, "512G")
    assert m.state() == after
    m1 = Machine("x86_64", "6.6", ram=2 * GiB)
    alloc_hugetlb_folio(m1, "1G")  # the second GiB: the first holds the reserved first MiB
    before1 = m1.state()
    with pytest.raises(KernelError, match="ENOMEM"):
        alloc_hugetlb_folio(m1, "1G")
    assert m1.state() == before1


def test_enomem_for_the_split_table_changes_nothing():
    m = Machine("x86_64", "6.6", ram=GiB)
    folio = alloc_hugetlb_folio(m, "2M")
    m.ram.capacity = m.ram.used  # no page left for the PTE table or the head copy
    before = m.state()
    with pytest.raises(KernelError, match="ENOMEM"):
        hugetlb_vmemmap_optimize(m, folio)
    assert m.state() == before and not folio.optimized


def test_head_copy_6_2_remaps_the_head_to_a_new_page():
    m = Machine("x86_64", "6.6", ram=GiB)
    folio = alloc_hugetlb_folio(m, "2M")
    vpn = folio.head_pfn * 64 >> 12
    old, _ = m.pgtables.resolve(np.array([vpn]))
    r = hugetlb_vmemmap_optimize(m, folio)
    new, _ = m.pgtables.resolve(np.array([vpn]))
    assert r.head_copy and new[0] != old[0] and r.data_pages_freed == 7
    assert m.frames.refcount[new[0]] == 8  # head PTE + 7 tail PTEs
    m2 = Machine("x86_64", "6.6", ram=GiB)
    f2 = alloc_hugetlb_folio(m2, "2M")
    r2 = hugetlb_vmemmap_optimize(m2, f2, head_copy=False)
    assert not r2.head_copy and r2.data_pages_freed == 7


@pytest.mark.parametrize("order,vmemmap_pages", [(9, 8), (18, 4096)])
def test_contrast_device_dax_reuses_tail_hvo_reuses_head(order, vmemmap_pages):
    c = contrast_with_device_dax(order, "6.6")
    assert c["device_dax"] == {"vmemmap_pages": vmemmap_pages, "kept": 2,
                               "reused_vmemmap_page": 1, "saved": vmemmap_pages - 2}
    assert c["hvo"] == {"vmemmap_pages": vmemmap_pages, "kept": 1, "reused_vmemmap_page": 0,
                        "saved": vmemmap_pages - 1}


FIELDS = ("flags", "compound_head", "mapping", "index", "private", "_refcount", "_mapcount")


@settings(max_examples=12, deadline=None)
@given(kernel=st.sampled_from(list(KEPT)), nth=st.integers(0, 5), head_copy=st.booleans())
def test_optimize_restore_roundtrip_keeps_struct_pages(kernel, nth, head_copy):
    """While optimized every struct page past the kept vmemmap pages reads the struct page at
    the same offset of the reuse page (5.18+: of page 0, so tails 64k+1 and 64k+2 show page[1]
    and page[2]'s compound metadata -- why the kernel reads tail metadata only via the head);
    after restore (reset_struct_pages) every meaningful field reads as before HVO.  vmstat
    counters (6.11+, kernel-facts §12) move by the pages freed and allocated."""
    if head_copy and KEPT[kernel] != 1:
        head_copy = False
    m = Machine("x86_64", kernel, ram=GiB)
    folios = [alloc_hugetlb_folio(m, "2M") for _ in range(nth + 1)]
    folio = folios[-1]
    pfns = folio.head_pfn + np.arange(512, dtype=np.int64)
    before = {f: read_field(m, pfns, f).copy() for f in FIELDS}
    vm = dict(m.vmstat)
    r = hugetlb_vmemmap_optimize(m, folio, head_copy=head_copy)
    if m.kernel.memmap_counter:  # 6.11+ counters; boot pages come off the boot counter
        assert m.vmstat["nr_memmap_boot_pages"] == vm["nr_memmap_boot_pages"] - 8 + KEPT[kernel] \
            - (1 if head_copy else 0)
        assert m.vmstat["nr_memmap_pages"] == vm["nr_memmap_pages"] + (1 if head_copy else 0)
    else:
        assert m.vmstat == vm
    assert r.data_pages_freed == 8 - KEPT[kernel]
    reuse = KEPT[kernel] - 1  # vmemmap page the others now map: 0 (5.18+) or 1 (5.14-5.17)
    for f in FIELDS:
        # struct page 64 * k + j (pages past the kept ones) reads struct page 64 * reuse + j
        want = before[f].copy()
        want[64 * (reuse + 1):] = np.tile(before[f][64 * reuse: 64 * reuse + 64], 7 - reuse)
        assert (read_field(m, pfns, f) == want).all(), f
        if reuse == 1:  # pages 2..7 alias tails 64..127, which have the same contents
            assert (want == before[f]).all()
    hugetlb_vmemmap_restore(m, folio)
    if kernel == "6.12.117":
        # measured bug (D10): no reset -- struct pages 64k + j are verbatim copies of j, j < 4
        for f in FIELDS:
            got = read_field(m, pfns, f)
            for j in range(4):
                assert (got[64 + j::64] == before[f][j]).all(), (f, j)
        return
    for f in FIELDS:
        got = read_field(m, pfns, f)
        if f == "mapping" and kernel.startswith("6.12"):
            # 6.12's folio has a page[3] (HugeTLB fields, the mapping slot is _hugetlb_cgroup,
            # NULL).  copy_page brings page[3] into struct page 64k + 3 of every restored page
            # and reset_struct_pages (3 struct pages: 3-5 onto 0-2) copies it onto 64k too, so
            # both read NULL, not TAIL_MAPPING -- what NR_RESET_STRUCT_PAGE 4 later fixed
            leak = np.sort(np.concatenate((np.arange(64, 512, 64), np.arange(67, 512, 64))))
            assert (got[leak] == 0).all()
            assert (np.delete(got, leak) == np.delete(before[f], leak)).all(), f
            continue
        assert (got == before[f]).all(), f


def test_hvo_is_refused_where_the_arch_does_not_offer_it():
    """arm64 turned HugeTLB vmemmap optimization off in 6.1 (060a2c92d1b6); the model offers
    HVO on x86_64 only and refuses elsewhere without changing anything."""
    m = Machine("arm64-4k", "6.6", ram=GiB)
    folio = alloc_hugetlb_folio(m, "2M")
    before = m.state()
    with pytest.raises(KernelError, match="does not select"):
        hugetlb_vmemmap_optimize(m, folio)
    assert m.state() == before


# -- per-version facts (issue 12 §4; sources in each docstring) -----------------------------------
def test_arm64_has_hvo_in_5_19_only():
    """kernel-facts §0a 9: 5.19 arm64 selects ARCH_WANT_HUGETLB_PAGE_OPTIMIZE_VMEMMAP (turned off
    by 060a2c92d1b6); Debian's 6.1.192 arch/*/Kconfig: only x86 selects it."""
    m = Machine("arm64-4k", "5.19", ram=GiB)
    assert hugetlb_vmemmap_optimize(m, alloc_hugetlb_folio(m, "2M")).data_pages_freed == 7
    m = Machine("arm64-4k", "6.1", ram=GiB)
    with pytest.raises(KernelError, match="does not select"):
        hugetlb_vmemmap_optimize(m, alloc_hugetlb_folio(m, "2M"))


@pytest.mark.parametrize("kernel, head_copy", [("5.19", False), ("6.1", False), ("6.6", True),
                                               ("6.12.117", True)])
def test_head_copy_is_6_2(kernel, head_copy):
    """11aad2631bf7 "remap head page to newly allocated page" is 6.2: 6.1.192's
    vmemmap_remap_free has no new-page allocation for the head."""
    m = Machine("x86_64", kernel, ram=GiB)
    assert hugetlb_vmemmap_optimize(m, alloc_hugetlb_folio(m, "2M")).head_copy is head_copy


@pytest.mark.parametrize("kernel, marked_p1", [("5.19", "loop"), ("6.1", "block"),
                                               ("6.6", "block")])
def test_reset_struct_pages_loop_vs_block(kernel, marked_p1):
    """NR_RESET_STRUCT_PAGE is 3 (6.1.192 mm/hugetlb_vmemmap.c; 6.6.87, 6.12.x per kernel-facts
    §0a 2).  5.19 copies struct page 3 into each of 0-2 in a loop; 6.1.192 does
    memcpy(start, start + 3, 3 * sizeof(struct page)), so struct page 4 lands on struct page 1
    of every restored vmemmap page.  Struct page 4 is head + 4: in 6.1 its private holds the
    hwpoison list head (SUBPAGE_INDEX_HWPOISON).  Mark it and look at tail 64 + 1."""
    m = Machine("x86_64", kernel, ram=GiB)
    folio = alloc_hugetlb_folio(m, "2M")
    h = folio.head_pfn
    hugetlb_vmemmap_optimize(m, folio)
    mark = 0x1234_5678
    write_field(m, h + 4, "private", mark)   # through the RW head vmemmap page
    hugetlb_vmemmap_restore(m, folio)
    got = [int(x) for x in read_field(m, h + 64 + np.arange(6), "private")]
    if marked_p1 == "loop":
        assert got == [0, 0, 0, 0, mark, 0]      # 0-2 take struct page 3's private (0)
    else:
        assert got == [0, mark, 0, 0, mark, 0]   # 1 takes struct page 4's
    assert int(read_field(m, h + 4, "private")[0]) == mark   # the head page itself is kept


@pytest.mark.parametrize("kernel, where, value", [
    ("6.1", "compound_dtor", 2),             # page[1].compound_dtor = HUGETLB_PAGE_DTOR
    ("6.6", "page_type", 0xFFFFF7FF),        # page_type &= ~PG_hugetlb (0x800), from UINT_MAX
    ("6.12.117", "page_type", 0xF4000000),   # page_type = PGTY_hugetlb (0xf4) << 24
])
def test_hugetlb_marker_per_version(kernel, where, value):
    """kernel-facts §0a 8 (6.6.87, 6.12) and 6.1.192 include/linux/page-flags.h PageHeadHuge:
    the folio is marked on the head's page type from 6.6.y, on page[1]'s dtor before; dissolve
    clears it (__folio_clear_hugetlb)."""
    from vmemlab.hugetlb_vmemmap import folio_test_hugetlb

    m = Machine("x86_64", kernel, ram=GiB)
    folio = alloc_hugetlb_folio(m, "2M")
    h = folio.head_pfn
    at = h + 1 if where == "compound_dtor" else h
    assert int(read_field(m, at, where)[0]) == value and folio_test_hugetlb(m, h)
    if where == "page_type":   # not PG_active on page[1] any more
        assert int(read_field(m, h + 1, "flags")[0]) & (1 << 8) == 0
    dissolve_free_huge_page(m, folio)
    assert not folio_test_hugetlb(m, h)


def test_hwpoison_list_moved_from_page4_private_to_page2_in_6_2():
    """6.1.192 mm/memory-failure.c raw_hwp_list_head: page_private(hpage +
    SUBPAGE_INDEX_HWPOISON), SUBPAGE_INDEX_HWPOISON = 4 with CONFIG_CGROUP_HUGETLB; 6.2+
    (dad6a5eb5556) folio->_hugetlb_hwpoison in page[2]."""
    from vmemlab.hugetlb_vmemmap import hugetlb_hwpoison_location

    assert hugetlb_hwpoison_location(Machine("x86_64", "6.1")) == (4, "private")
    assert hugetlb_hwpoison_location(Machine("x86_64", "6.6")) == (2, "_hugetlb_hwpoison")


def test_6_12_restore_copies_page3_hugetlb_fields_into_tails():
    """A real-kernel quirk the model reproduces: 6.12's struct folio spans four struct pages
    (page[3] holds _hugetlb_subpool .. _hugetlb_hwpoison, DWARF of Debian's 6.12.117), but
    reset_struct_pages still resets NR_RESET_STRUCT_PAGE = 3 (kernel-facts §0a 2), copying
    struct pages 3-5 onto 0-2 of every restored vmemmap page: page[3]'s HugeTLB words land in
    struct page 64k of each.  The 2025-04 patch "mm, hugetlb: Increment the number of pages to
    be reset on HVO" (NR_RESET_STRUCT_PAGE 4) is the fix; its commit id is not in the trees read."""
    m = Machine("x86_64", "6.12", ram=GiB)
    folio = alloc_hugetlb_folio(m, "2M")
    h = folio.head_pfn
    hugetlb_vmemmap_optimize(m, folio)
    mark = 0xFFFF888012345000
    write_field(m, h + 3, "_hugetlb_hwpoison", mark)   # page[3] @40 = word 5 ("private")
    hugetlb_vmemmap_restore(m, folio)
    tails = h + 64 * np.arange(1, 8)
    assert (read_field(m, tails, "private") == mark).all()
    m2 = Machine("x86_64", "6.1", ram=GiB)   # 6.1: page[3].private is SUBPAGE_INDEX_CGROUP_RSVD
    f2 = alloc_hugetlb_folio(m2, "2M")
    hugetlb_vmemmap_optimize(m2, f2)
    write_field(m2, f2.head_pfn + 3, "private", mark)
    hugetlb_vmemmap_restore(m2, f2)
    assert (read_field(m2, f2.head_pfn + 64 * np.arange(1, 8), "private") == mark).all()


@pytest.mark.parametrize("head_copy", [False, True])
def test_hvo_reuse_page_keeps_one_reference(head_copy):
    """6.1.192 mm/hugetlb_vmemmap.c vmemmap_remap_pte: set_pte_at(..., mk_pte(walk->reuse_page,
    PAGE_KERNEL_RO)) with no get_page, so the page 8 vmemmap pages now map keeps the single
    reference it had (unlike device-dax's vmemmap_pte_populate, which get_page()s the reused tail
    page once per PTE: 1 + 6 = 7 for 2 MiB, kernel-facts §3.3)."""
    from vmemlab.hugetlb_vmemmap import vmemmap_page_count

    m = Machine("x86_64", "6.6", ram=GiB)
    folio = alloc_hugetlb_folio(m, "2M")
    hugetlb_vmemmap_optimize(m, folio, head_copy=head_copy)
    assert vmemmap_page_count(m, folio.reuse_frame) == 1
    import vmemlab

    p = vmemlab.plan("128M", align="2M")
    vpn = (p._pgmap.ranges[0][0] >> 12) * 64 >> 12
    fr, _ = p._machine.pgtables.resolve(np.array([vpn + 1]))
    assert vmemmap_page_count(p._machine, int(fr[0])) == 7


def test_6_12_117_dissolve_of_an_hvo_page_hits_bad_page_state_and_leaks():
    """Measured on Debian 6.12.117 (validation/results/hvo-6.12.117+deb12-amd64.json, i12v's
    D10): after `echo 0 > nr_hugepages` of HVO-optimized 2 MiB pages, dmesg "BUG: Bad page
    state ... corrupted mapping in tail page | nonzero mapcount | PAGE_FLAGS_CHECK_AT_FREE
    flag(s) set" for struct pages 64k + {0..3} of every restored vmemmap page, and the huge
    pages are not freed: the restore (upstream stable 6.12.114, per Debian's changelog: the
    backports of c0b495b91a47 "mm/hugetlb: refactor code around vmemmap_walk", which passes the
    head copy as vmemmap_tail too, and of its fix c7bde43f6daf "mm/hugetlb_vmemmap: fix
    incorrect vmemmap restore in rollback", which copies the page the PTE maps, without
    mainline's 622026e87c40 "mm/hugetlb: remove fake head pages") copies the head-copy page into
    each restored page without reset_struct_pages.  7 restored pages x 4 = 28 bad struct
    pages."""
    from vmemlab.hugetlb_vmemmap import folio_test_hugetlb

    m = Machine("x86_64", "6.12.117", ram=GiB)
    folio = alloc_hugetlb_folio(m, "2M")
    h = folio.head_pfn
    hugetlb_vmemmap_optimize(m, folio)
    bad = dissolve_free_huge_page(m, folio)
    want = sorted(h + 64 * k + j for k in range(1, 8) for j in range(4))
    assert sorted(p for p, _ in bad) == want
    reasons = " ".join(r for _, r in bad)
    for msg in ("corrupted mapping in tail page", "nonzero mapcount",
                "PAGE_FLAGS_CHECK_AT_FREE flag(s) set"):
        assert msg in reasons
    assert m.hugetlb.leaked == [h]
    # kpageflags after the leak: HUGE (PGTY_hugetlb) and COMPOUND_HEAD (PG_head) at head + 64k
    assert folio_test_hugetlb(m, h + 64) and test_flag_bits(m, h + 64, "PG_head")[0]


@pytest.mark.parametrize("kernel", ["5.17", "5.19", "6.1", "6.6", "6.12.117"])
def test_dissolve_without_hvo_frees_cleanly(kernel):
    m = Machine("x86_64", kernel, ram=GiB)
    assert dissolve_free_huge_page(m, alloc_hugetlb_folio(m, "2M")) == []
    assert m.hugetlb.leaked == []


@pytest.mark.parametrize("kernel", ["5.19", "6.1", "6.6"])
def test_dissolve_after_hvo_frees_cleanly_where_the_reset_covers_the_folio(kernel):
    """Up to 6.6 the folio's metadata lives in struct pages 0-2 (plus page[3..4].private in
    6.1, which are NULL at dissolve), so reset_struct_pages leaves clean tails."""
    m = Machine("x86_64", kernel, ram=GiB)
    folio = alloc_hugetlb_folio(m, "2M")
    hugetlb_vmemmap_optimize(m, folio)
    assert dissolve_free_huge_page(m, folio) == []
