"""Struct pages stored inside the vmemmap frames (vmemlab.page).

Expected values come from independent arithmetic on the kernel's definitions, never from the
model's own helpers:
* head of pfn p in a compound page of nr pfns starting at f: ``f + ((p - f) // nr) * nr``;
* a struct page is 64 bytes, so a 4 KiB vmemmap page holds 64 of them; with deduplication
  (kernel-facts §3.3) vmemmap page 0 (struct pages 0-63) and page 1 (64-127) of each compound
  page are its own, every later vmemmap page maps page 1, so tail k >= 64 aliases exactly the
  tails k' >= 64 with k' % 64 == k % 64 (kernel-facts §7 "Simulator consequence");
* include/linux/mm_types.h field offsets as listed in vmemlab/page.py's docstring.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmemlab.arch import ARCHES
from vmemlab.errors import ParameterError
from vmemlab.machine import Machine
from vmemlab.memremap import DevPagemap, memremap_pages, memunmap_pages
from vmemlab.page import (
    TAIL_MAPPING,
    PageCompound,
    PageHead,
    PageTail,
    VmemmapFault,
    add_field,
    compound_head,
    compound_head_pfns,
    compound_nr,
    compound_order,
    compound_pincount_ptr,
    hpage_pincount_available,
    page_count,
    page_pgmap,
    page_ref_add,
    page_ref_count,
    page_ref_sub,
    page_to_pfn,
    pfn_to_page,
    pincount_location,
    read_field,
    struct_page_dtype,
    struct_pages,
    write_field,
)

GiB, MiB = 1 << 30, 1 << 20
BASE = 64 * GiB
FIRST = BASE >> 12
X86_ORDERS = (0, 9, 18)  # device-dax 4K, 2M, 1G on x86_64 (drivers/dax/bus.c dax_align_valid)
KERNELS = ("6.6", "5.19", "5.17", "v3")


def namespace(kernel: str, order: int, size: int | None = None) -> tuple[Machine, DevPagemap]:
    """A device-dax style pgmap (no altmap, --map=mem) of ``size`` bytes at 64 GiB."""
    size = size or max(128 * MiB, 1 << (order + 12))
    m = Machine("x86_64", kernel)
    pg = DevPagemap(ranges=[(BASE, BASE + size)], vmemmap_shift=order, name="dax0.0")
    memremap_pages(m, pg)
    return m, pg


def expected_head(pfns: np.ndarray, nr: int) -> np.ndarray:
    return FIRST + ((pfns - FIRST) // nr) * nr


def test_struct_page_is_64_bytes_with_kernel_offsets():
    # offsets from include/linux/mm_types.h (see module docstring of vmemlab.page)
    m = Machine("x86_64", "6.6")
    dt = struct_page_dtype(m.kernel)
    assert dt.itemsize == 64
    want = {"flags": 0, "compound_head": 8, "pgmap": 8, "mapping": 24, "index": 32,
            "_mapcount": 48, "_refcount": 52, "_flags_1": 0, "_pincount": 32,
            "_folio_nr_pages": 36, "_entire_mapcount": 24}
    assert {k: dt.fields[k][1] for k in want} == want
    d517 = struct_page_dtype(Machine("x86_64", "5.17").kernel)
    assert d517.fields["compound_order"][1] == 17 and d517.fields["hpage_pinned_refcount"][1] == 16
    d519 = struct_page_dtype(Machine("x86_64", "5.19").kernel)
    assert d519.fields["compound_pincount"][1] == 24 and d519.fields["compound_nr"][1] == 28


@pytest.mark.parametrize("kernel,order", list(itertools.product(KERNELS, X86_ORDERS)))
def test_compound_head_of_every_sampled_pfn_is_the_head(kernel, order):
    m, pg = namespace(kernel, order)
    nr = 1 << order
    n = (pg.ranges[0][1] - BASE) >> 12
    if n <= 32768:
        pfns = FIRST + np.arange(n, dtype=np.int64)  # every pfn
    else:  # 1 GiB compound page: every pfn of the first two vmemmap pages, all 64-aligned
        rng = np.random.default_rng(order)  # tails (one per vmemmap page) and a random sample
        pfns = FIRST + np.unique(np.concatenate([
            np.arange(256), np.arange(0, n, 64), rng.integers(0, n, 4096)])).astype(np.int64)
    got = compound_head_pfns(m, pfns)
    assert (got == expected_head(pfns, nr)).all()
    head = pfn_to_page(m, FIRST)
    if order:
        assert PageHead(head) and not PageTail(head) and PageCompound(head)
        assert compound_order(head) == order and compound_nr(head) == nr
        for k in (1, 2, 63, 64, 127, 128, nr - 1):
            t = head + k
            assert PageTail(t) and not PageHead(t) and compound_head(t) == head
            assert compound_order(t) == 0  # compound_order() of a tail is 0 (not PageHead)
    else:
        assert not PageCompound(head) and compound_order(head) == 0 and compound_nr(head) == 1
        assert compound_head(head + 5) == head + 5


@pytest.mark.parametrize("kernel", KERNELS)
def test_init_writes_kernel_values(kernel):
    m, pg = namespace(kernel, 9)
    head = pfn_to_page(m, FIRST)
    # __init_zone_device_page + memmap_init_compound: head refcount 1, tails 0 (set_page_count)
    assert page_ref_count(head) == 1 and page_ref_count(head + 200) == 0
    assert page_count(head + 200) == 1  # page_count() reads the folio (the head)
    assert page_pgmap(head + 300) is pg
    assert read_field(m, FIRST + 200, "mapping")[0] == TAIL_MAPPING  # prep_compound_tail
    assert read_field(m, FIRST + 200, "compound_head")[0] == m.arch.vmemmap_start + FIRST * 64 + 1
    assert read_field(m, FIRST, "_mapcount")[0] == -1


def alias_set(nr: int, k: int) -> set[int]:
    """Indices whose struct page shares tail k's physical struct page (deduplicated memmap)."""
    if k < 64:
        return {k}
    return {j for j in range(64, nr) if j % 64 == k % 64}


_counter = itertools.count(1000)


@pytest.fixture(scope="module")
def dedup_2m():
    return namespace("6.6", 9)


@settings(max_examples=25, deadline=None)
@given(cp=st.integers(0, 63), k=st.integers(1, 511))
def test_write_to_a_tail_is_seen_through_every_alias(dedup_2m, cp, k):
    m, _ = dedup_2m
    head = FIRST + cp * 512
    v = next(_counter)
    write_field(m, head + k, "private", v)
    vals = read_field(m, head + np.arange(512), "private")
    assert set(np.flatnonzero(vals == v).tolist()) == alias_set(512, k)
    # other compound pages are untouched
    other = FIRST + ((cp + 1) % 64) * 512
    assert not (read_field(m, other + np.arange(512), "private") == v).any()


def test_1g_alias_spans_sections_and_5_17_has_no_aliases():
    m, _ = namespace("6.6", 18, GiB)
    write_field(m, FIRST + 64 * 4000 + 7, "private", 4242)
    vals = read_field(m, FIRST + np.arange(0, 1 << 18, 1, dtype=np.int64), "private")
    hit = np.flatnonzero(vals == 4242)
    assert hit.size == 4095  # tails 64+7, 128+7, ..., 262080+7: (262144 - 64) / 64
    assert (hit % 64 == 7).all() and hit.min() == 71
    m2, _ = namespace("5.17", 9)  # 5.17: no deduplication, every struct page is its own
    write_field(m2, FIRST + 300, "private", 9)
    assert np.flatnonzero(read_field(m2, FIRST + np.arange(512), "private") == 9).tolist() == [300]


def test_add_field_accumulates_repeats_and_aliases(dedup_2m):
    m, _ = dedup_2m
    head = FIRST + 10 * 512
    before = page_ref_count(pfn_to_page(m, head))
    add_field(m, np.full(512, head), "_refcount", 1)  # 512 gets on the head (GUP per subpage)
    assert page_ref_count(pfn_to_page(m, head)) == before + 512
    page_ref_sub(pfn_to_page(m, head), 512)
    page_ref_add(pfn_to_page(m, head), 3)
    assert page_ref_count(pfn_to_page(m, head)) == before + 3
    # tails 64 and 128 share a struct page: two adds land on one counter
    add_field(m, np.array([head + 64, head + 128]), "_mapcount", 1)
    assert read_field(m, head + 64, "_mapcount")[0] == -1 + 2


@pytest.mark.parametrize("kernel,where", [("5.17", (2, "hpage_pinned_refcount")),
                                          ("v3", (2, "hpage_pinned_refcount")),
                                          ("5.19", (1, "compound_pincount")),
                                          ("6.6", (1, "_pincount"))])
def test_pincount_location_per_kernel(kernel, where):
    # kernel-facts §9 table: 5.7-5.17 page[2].hpage_pinned_refcount, 5.18+ page[1], folio _pincount
    m, _ = namespace(kernel, 9)
    assert pincount_location(m) == where
    p, name = compound_pincount_ptr(pfn_to_page(m, FIRST + 77))
    assert page_to_pfn(p) == FIRST + where[0] and name == where[1]
    assert p.read(name) == 0  # prep_compound_head zeroed it
    assert hpage_pincount_available(pfn_to_page(m, FIRST + 77))


def test_never_initialised_struct_page_reads_zero():
    # --map=dev style altmap: the reserve pfns' struct pages are mapped but nothing writes them
    from vmemlab.plan import plan

    p = plan("1G", align="2M", map="dev")
    m, pg = p._machine, p._pgmap
    base = pg.altmap.base_pfn
    assert (read_field(m, base + np.arange(pg.altmap.reserve), "words") == 0).all()
    # memmap-hosting pfns: memmap_init_range wrote them (PG_reserved, refcount 1)
    hosting = base + pg.altmap.reserve
    assert page_ref_count(pfn_to_page(m, hosting)) == 1
    # the first data pfn is a compound head
    first = base + pg.altmap.vmem_altmap_offset()
    assert PageHead(pfn_to_page(m, first))


def test_bad_input_is_refused_and_changes_nothing(dedup_2m):
    m, _ = dedup_2m
    before = m.state()
    with pytest.raises(VmemmapFault, match="not mapped"):
        read_field(m, 5, "flags")  # pfn 5: no section at all
    with pytest.raises(VmemmapFault):
        write_field(m, np.array([FIRST, 12345]), "private", 1)  # one bad pfn: nothing written
    with pytest.raises(ParameterError):
        read_field(m, FIRST, "no_such_field")
    with pytest.raises(ParameterError):
        pfn_to_page(m, -1)
    assert m.state() == before


def test_tib_namespace_costs_frames_touched():
    from vmemlab.plan import plan

    p = plan("1T", align="2M")
    m = p._machine
    first = p._pgmap.ranges[0][0] >> 12
    got = compound_head_pfns(m, first + 512 * 100 + np.arange(512))
    assert (got == first + 512 * 100).all()
    # 512 struct pages live in 2 physical vmemmap pages (head page + shared tail page)
    assert struct_pages(m).materialised == 2


def test_memunmap_forgets_struct_pages():
    m, pg = namespace("6.6", 9)
    st_ = struct_pages(m)
    read_field(m, FIRST + np.arange(4096), "flags")
    assert st_.slot
    memunmap_pages(m, pg)
    assert not st_.slot and not [r for r in st_.records if r.owner is not None]


ARCH_ORDERS = [(name, o) for name, a in ARCHES.items() for o in a.dax_align_orders()]


@pytest.mark.parametrize("arch,order", ARCH_ORDERS)
def test_every_arch_and_dax_order(arch, order):
    """compound_head through the vmemmap on every arch preset and device-dax order
    (dax_align_orders: drivers/dax/bus.c dax_align_valid), checked against the arithmetic
    head; 5.19 (rule nr > 1) and 6.6 (VMEMMAP_RESERVE_NR) differ on small memmaps."""
    a = ARCHES[arch]
    for kernel in ("5.19", "6.6"):
        m = Machine(arch, kernel)
        size = max(1 << a.section_size_bits, 1 << (order + a.page_shift))
        pg = DevPagemap(ranges=[(BASE, BASE + size)], vmemmap_shift=order)
        # ppc64 with 5.19's generic code: a 16 MiB section's memmap is a quarter of a 64K
        # vmemmap page, so the page before a later section is often unpopulated; the kernel
        # then finds every PTE of that section present already and never uses the page
        # compound_section_tail_page() returned (vmemmap_pte_populate acts on empty PTEs only)
        memremap_pages(m, pg)
        f, n = BASE >> a.page_shift, size >> a.page_shift
        rng = np.random.default_rng(order)
        pfns = f + np.unique(np.r_[np.arange(min(n, 4096)), rng.integers(0, n, 2000)])
        assert (compound_head_pfns(m, pfns) == f + (((pfns - f) >> order) << order)).all()
        if order:
            assert compound_order(pfn_to_page(m, f)) == order


def test_order_the_arch_cannot_map_is_refused():
    m = Machine("x86_64", "6.6")
    before = m.state()
    with pytest.raises(ParameterError):
        memremap_pages(m, DevPagemap(ranges=[(BASE, BASE + GiB)],
                                     vmemmap_shift=m.arch.max_order + 1))
    assert m.state() == before and m.struct_pages is None
