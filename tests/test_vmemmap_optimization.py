"""The 2026 shared-tail rework (kernel variant ``mm-2026``, vmemlab/vmemmap_optimization.py).

Expected values are worked out by hand from the source text read in the search index's
``linux-mm/linux-mm`` tree (mm/sparse-vmemmap.c at 028871b824fd, mm/hugetlb_vmemmap.c at
0454b15e9bbd), x86_64 with 4K pages and a 64-byte struct page:

* ``vmemmap_populate_compound_pages``: per compound page ONE new head vmemmap page; every other
  vmemmap page of the compound page maps ``vmemmap_shared_tail_page(order, device_zone(node))``
  with ``get_page`` per PTE.  A 2 MiB compound page has 512 * 64 / 4096 = 8 vmemmap pages, so 1
  own + 7 shared; a 1 GiB one 262144 * 64 / 4096 = 4096 vmemmap pages: 1 own + 4095 shared.
* The shared page: one per zone and order, allocated once, its allocation reference kept by
  ``zone->vmemmap_tails[]``; nothing read frees it.
* ppc64 radix (arch/powerpc/mm/book3s64/radix_pgtable.c at 2ca93037ad05): the same split by each
  vmemmap page's pfn offset in its compound page; 64K pages.
* Per TiB: 2^40 / 2^21 = 524288 compound pages of 2 MiB -> 524288 head pages + 1 shared page;
  1 TiB of memory has 2^28 struct pages = 16 GiB of memmap = 8192 PTE tables of 2 MiB each.
  1 GiB pages: 1024 head pages + 1 shared page + 8192 PTE tables.  (5.19: 2 own pages per
  compound page, kernel-facts.md §3.4: 4 GiB / 40 MiB of data+tables at 2M / 1G.)
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vmemlab
from vmemlab.errors import KernelError
from vmemlab.hugetlb_vmemmap import (
    alloc_hugetlb_folio,
    hugetlb_vmemmap_optimize,
    hugetlb_vmemmap_restore,
    hvo_savings,
)
from vmemlab.machine import Machine
from vmemlab.memremap import DevPagemap, memremap_pages, memunmap_pages
from vmemlab.page import PageHead, compound_head_pfns, pfn_to_page, read_field
from vmemlab.units import GiB, MiB, TiB
from vmemlab.viz.savings import savings_point
from vmemlab.vmemmap_optimization import (
    SERIES,
    ZONE_DEVICE_NAME,
    shared_tail_pages,
    vmemmap_optimization_min_order,
)

K = "mm-2026"
PAGE = 4096
START = 64 * GiB


def _vmemmap_frames(m: Machine, pgmap: DevPagemap) -> np.ndarray:
    a = m.arch
    s, e = pgmap.ranges[0]
    lo = (s >> a.page_shift) * a.struct_page_size >> a.page_shift
    hi = (e >> a.page_shift) * a.struct_page_size >> a.page_shift
    frame, _ = m.pgtables.resolve(np.arange(lo, hi, dtype=np.int64))
    return frame


@pytest.mark.parametrize("order, per", [(9, 8), (18, 4096)])
def test_one_own_page_per_compound_page_the_rest_shared(order, per):
    # source: vmemmap_populate_compound_pages (head page new, the rest the shared page)
    m = Machine("x86_64", K)
    n = 3
    size = max(n << (order + 12), 128 * MiB)
    pg = DevPagemap(ranges=[(START, START + size)], vmemmap_shift=order)
    memremap_pages(m, pg)
    f = _vmemmap_frames(m, pg).reshape(-1, per)
    heads, rest = f[:, 0], f[:, 1:]
    tail = shared_tail_pages(m)[(ZONE_DEVICE_NAME, 0, order)]["frame"]
    assert (rest == tail).all(), "every non-head vmemmap page maps the one shared page"
    assert len(np.unique(heads)) == f.shape[0] and tail not in heads
    assert (m.frames.refcount[heads] == 1).all()
    # refcount: 1 (the zone's allocation reference) + one get_page per PTE
    assert m.frames.refcount[tail] == 1 + rest.size
    assert m.vmstat["nr_memmap_pages"] == f.shape[0]  # section_nr_vmemmap_pages: 1 per compound


@pytest.mark.parametrize("order, data_pages, pte_tables", [
    (9, 524288 + 1, 8192),   # 2 MiB: one head page per compound page + the shared page
    (18, 1024 + 1, 8192),    # 1 GiB
])
def test_per_tib_x86_64(order, data_pages, pte_tables):
    p = savings_point("x86_64", K, order)
    assert (p.ram_data_pages, p.pte_table_pages) == (data_pages, pte_tables)
    assert p.bytes_per_tib == (data_pages + pte_tables) * PAGE
    # against 5.19 (kernel-facts §3.4: 4 GiB of data pages at 2M, 2 data pages per 1G page)
    old = savings_point("x86_64", "5.19", order)
    assert old.ram_data_pages - p.ram_data_pages == TiB // (1 << (order + 12)) - 1


def test_direct_plan_matches_hand_count_2m():
    # 1 GiB namespace, 2 MiB pages: 512 compound pages -> 512 heads + 1 shared page;
    # 1 GiB of memory has 16 MiB of memmap -> 8 PTE tables
    p = vmemlab.plan("1G", align="2M", kernel=K)
    assert p.ram_data_pages == 513 and p.pagetables["pte"] == 8
    assert p.nr_memmap_pages == 512 and p.optimised


def test_section_unaligned_namespace_is_not_optimised():
    # section_set_compound_order_range() records an order only for whole sections; a 64 MiB
    # namespace is half an x86 section, so it takes vmemmap_populate (base pages, full memmap)
    p = vmemlab.plan("64M", align="2M", kernel=K)
    assert not p.optimised
    assert p.ram_data_pages == 64 * MiB // PAGE * 64 // PAGE  # 1024 pages of struct pages
    assert p.nr_memmap_pages == p.ram_data_pages


def test_subsection_add_into_an_optimised_section_is_eopnotsupp():
    # section_activate: nr_pages < PAGES_PER_SECTION && section_compound_order(ms) -> -EOPNOTSUPP
    m = Machine("x86_64", K)
    memremap_pages(m, DevPagemap(ranges=[(START, START + 128 * MiB)], vmemmap_shift=9,
                                 name="dax0.0"))
    before = m.state()
    with pytest.raises(KernelError) as e:
        m.sparse.section_activate(0, START >> 12, 512, None,
                                  DevPagemap(ranges=[(START, START + 2 * MiB)], vmemmap_shift=9))
    assert "EOPNOTSUPP" in str(e.value)
    assert m.state() == before


@pytest.mark.parametrize("ram, gib", [("128M", 64), ("256M", 512)])
def test_failed_hot_add_changes_nothing(ram, gib):
    # RAM runs out part way (the memmap of the later sections does not fit): the kernel keeps
    # the shared page cached in the zone; the model gives it back (house rule: a failed
    # operation leaves Machine.state() unchanged)
    m = Machine("x86_64", K, ram=ram)
    before = m.state()
    with pytest.raises(KernelError, match="ENOMEM"):
        memremap_pages(m, DevPagemap(ranges=[(START, START + gib * GiB)], vmemmap_shift=9))
    assert m.state() == before and shared_tail_pages(m) == {}


def test_shared_page_is_per_order_and_zone_and_outlives_the_namespace():
    m = Machine("x86_64", K)
    a = DevPagemap(ranges=[(START, START + GiB)], vmemmap_shift=9, name="a")
    b = DevPagemap(ranges=[(START + 2 * GiB, START + 3 * GiB)], vmemmap_shift=9, name="b")
    c = DevPagemap(ranges=[(START + 4 * GiB, START + 6 * GiB)], vmemmap_shift=18, name="c")
    for pg in (a, b, c):
        memremap_pages(m, pg)
    tails = shared_tail_pages(m)
    assert set(tails) == {(ZONE_DEVICE_NAME, 0, 9), (ZONE_DEVICE_NAME, 0, 18)}
    # two namespaces of one order share one page: 2 * 512 compound pages * 7 PTEs
    assert tails[(ZONE_DEVICE_NAME, 0, 9)]["ptes"] == 2 * 512 * 7
    for pg in (a, b, c):
        memunmap_pages(m, pg)
    tails = shared_tail_pages(m)
    assert all(t["refcount"] == 1 and t["ptes"] == 0 for t in tails.values())
    assert m.ram.used == 2 and m.vmstat["nr_memmap_pages"] == 0
    # adding again reuses the same pages
    memremap_pages(m, a)
    assert shared_tail_pages(m)[(ZONE_DEVICE_NAME, 0, 9)]["frame"] == tails[
        (ZONE_DEVICE_NAME, 0, 9)]["frame"]


def test_min_order_from_vmemmap_tail_min_order():
    # ilog2(PAGE_SIZE / sizeof(struct page)) + 1 (mmzone.h): 4096 / 64 = 64 -> 7; 64K: 1024 -> 11
    assert vmemmap_optimization_min_order(Machine("x86_64", K)) == 7
    assert vmemmap_optimization_min_order(Machine("arm64-64k", K)) == 11


def test_arm64_keeps_the_full_memmap():
    # arm64 never selects ARCH_WANT_OPTIMIZE_DAX_VMEMMAP: vmemmap_can_optimize() false, same as 6.6
    p, q = (vmemlab.plan("1G", align="2M", arch="arm64-4k", kernel=k) for k in (K, "6.6"))
    assert not p.optimised and p.ram_data_pages == q.ram_data_pages == 1 * GiB // PAGE * 64 // PAGE


def test_ppc64_radix_1g_one_own_page_per_compound_page():
    # arch/powerpc/mm/book3s64/radix_pgtable.c (2ca93037ad05): pfn_offset == 0 -> head page, the
    # rest of the vmemmap pages -> vmemmap_shared_tail_page().  64K pages: a 1 GiB compound page
    # has 16384 struct pages = 1 MiB of memmap = 16 vmemmap pages: 1 own + 15 shared.
    p = vmemlab.plan("4G", align="1G", arch="ppc64-radix-64k", kernel=K)
    n = p.compound_pages
    assert p.ram_data_pages == n + 1 and p.nr_memmap_pages == n
    t = shared_tail_pages(p._machine)[(ZONE_DEVICE_NAME, 0, 14)]
    assert t["ptes"] == 15 * n and t["refcount"] == 1 + 15 * n
    # per TiB: 1024 heads + 1 shared page (6.6: 2 own pages per compound page = 2048)
    pt, old = (savings_point("ppc64-radix-64k", k, 14) for k in (K, "6.6"))
    assert (pt.ram_data_pages, old.ram_data_pages) == (1024 + 1, 2048)
    assert pt.pte_table_pages == old.pte_table_pages
    # 2 MiB pages: 32 struct pages, 2 KiB of memmap, below VMEMMAP_OPTIMIZATION_MIN_ORDER (11)
    assert not vmemlab.plan("1G", align="2M", arch="ppc64-radix-64k", kernel=K).optimised


def test_series_titles_recorded():
    titles = [t for _, t in SERIES]
    assert "mm/sparse-vmemmap: switch device DAX to shared tail vmemmap pages" in titles
    assert "mm/sparse-vmemmap: drop the extra tail page from device DAX reservation" in titles


@pytest.mark.parametrize("align, order", [("2M", 9), ("1G", 18)])
def test_compound_head_is_right_through_the_shared_page(align, order):
    # include/linux/page-flags.h (03e0599da9e1): set_compound_head(tail, head, order) stores
    # GENMASK(63, order + log2(64)) | 1, the same for every tail of the order; compound_head()
    # = page address & mask.  So a tail read through the shared page finds its own head.
    p = vmemlab.plan("4G", align=align, kernel=K)
    m, pg = p._machine, p._pgmap
    first = pg.init_stats[0].start_pfn
    nr = 1 << order
    heads = first + nr * np.arange(p.compound_pages, dtype=np.int64)
    offs = np.array([1, 63, 64, 100, nr - 1], dtype=np.int64)
    got = compound_head_pfns(m, (heads[:, None] + offs[None, :]).ravel()).reshape(-1, offs.size)
    assert (got == heads[:, None]).all()
    info = read_field(m, heads + 100, "compound_head")
    assert (info == info[0]).all() and int(info[0]) == ((1 << 64) - (1 << (order + 6))) | 1


# -- HVO -----------------------------------------------------------------------------------------
def test_hvo_maps_tails_to_the_shared_page_and_frees_every_old_page():
    # __hugetlb_vmemmap_optimize_folio: new head copy (+1), all 8 old pages freed, tails RO onto
    # the shared page of the folio's zone (mk_pte: no reference taken)
    m = Machine("x86_64", K, ram="1G")
    f1, f2 = alloc_hugetlb_folio(m, "2M"), alloc_hugetlb_folio(m, "2M")
    r1 = hugetlb_vmemmap_optimize(m, f1)
    r2 = hugetlb_vmemmap_optimize(m, f2)
    assert r1.data_pages_freed == r2.data_pages_freed == 7  # 8 freed, 1 new head copy
    tails = shared_tail_pages(m)
    assert list(tails) == [("Normal", 0, 9)]
    t = tails[("Normal", 0, 9)]
    assert t["ptes"] == 2 * 7 and t["refcount"] == 1
    vs = f1.head_pfn * 64 // PAGE
    assert m.pgtables.pte_is_ro(np.arange(vs + 1, vs + 8)).all()
    assert not m.pgtables.pte_is_ro(np.array([vs])).any()
    # net RAM: first page 8 - 1 (copy) - 1 (shared page) - 1 (PTE table of the split) = 5
    assert hvo_savings(K, "2M")["ram_pages_delta"] == 5
    # no fake heads: the shared page holds tails only, and each tail finds its own head
    for f in (f1, f2):
        offs = np.array([1, 64, 100, 511], dtype=np.int64)
        assert (compound_head_pfns(m, f.head_pfn + offs) == f.head_pfn).all()
        assert not PageHead(pfn_to_page(m, f.head_pfn + 64))
    hugetlb_vmemmap_restore(m, f1)
    assert shared_tail_pages(m)[("Normal", 0, 9)]["ptes"] == 7
    assert (compound_head_pfns(m, f1.head_pfn + np.array([100, 511])) == f1.head_pfn).all()


# -- teardown properties -------------------------------------------------------------------------
SLOTS = 6  # namespaces placed at START + 2 GiB * slot, 1 or 2 GiB each


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.tuples(st.integers(0, SLOTS - 1), st.sampled_from([9, 18]),
                              st.sampled_from([1, 2])), min_size=1, max_size=8))
def test_teardown_never_frees_a_mapped_shared_page_and_returns_everything(ops):
    """Adds and removes namespaces in any order.  After every step: each shared page is live,
    its refcount is 1 + the PTEs mapping it (so it is never freed while mapped).  After removing
    everything: the only frames left are the shared pages (one per order used), unmapped, each
    holding only the zone's reference; the counter is back to 0."""
    m = Machine("x86_64", K)
    live: dict[int, DevPagemap] = {}
    orders_used: set[int] = set()
    for slot, order, gib in ops:
        if slot in live:
            memunmap_pages(m, live.pop(slot))
        else:
            s = START + slot * 2 * GiB
            pg = DevPagemap(ranges=[(s, s + gib * GiB)], vmemmap_shift=order, name=f"dax{slot}")
            memremap_pages(m, pg)
            live[slot] = pg
            orders_used.add(order)
        for t in shared_tail_pages(m).values():
            assert m.frames.kind[t["frame"]] != 0, "a shared page was freed"
            assert t["refcount"] == 1 + t["ptes"]
    for pg in list(live.values()):
        memunmap_pages(m, pg)
    tails = shared_tail_pages(m)
    assert {k[2] for k in tails} == orders_used
    assert all(t["ptes"] == 0 and t["refcount"] == 1 for t in tails.values())
    assert set(m.frames.live().tolist()) == {t["frame"] for t in tails.values()}
    assert m.ram.used == len(tails)
    assert m.vmstat["nr_memmap_pages"] == 0
