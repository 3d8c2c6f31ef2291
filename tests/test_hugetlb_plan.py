"""The HugeTLB planner's closed forms against the engine (mm/hugetlb_vmemmap.c model).

Expected values come from running the engine: boot a small machine, allocate HugeTLB pages
with :func:`alloc_hugetlb_folio` (first fit: packed), optimise a chosen subset (one per
128 MiB region for the spread placement) with :func:`hugetlb_vmemmap_optimize`, and count the
RAM pages, PTE tables and vmstat counters that moved.  Independent arithmetic (x86_64, 4 KiB
pages, 64-byte struct page): a 2 MiB page has 512 struct pages = 8 vmemmap pages, a 1 GiB page
4096; one vmemmap PMD leaf (2 MiB of VA) maps the struct pages of 128 MiB of RAM, i.e. of 64
2 MiB pages; a 1 GiB page's 16 MiB of vmemmap spans 8 PMD leaves.
"""

import pytest

from vmemlab.errors import ParameterError
from vmemlab.hugetlb_plan import boot_memmap_pages, hugetlb_sizes, parse_pool, plan_hugetlb
from vmemlab.hugetlb_vmemmap import alloc_hugetlb_folio, hugetlb_vmemmap_optimize
from vmemlab.kernels import KERNELS
from vmemlab.machine import Machine
from vmemlab.units import GiB, MiB

HVO_KERNELS = [k for k, v in KERNELS.items() if v.hvo_reserve_pages]
REGION = 128 * MiB


def engine(kernel, size, ram, pick):
    """Allocate pages of ``size`` until ``pick`` (a function of the folio list) selects the ones
    to optimise; return what the machine spent on them."""
    m = Machine("x86_64", kernel, ram=ram)
    folios = []
    while True:
        try:
            folios.append(alloc_hugetlb_folio(m, size))
        except Exception:
            break
        chosen = pick(folios)
        if chosen is not None:
            break
    before_used, before_vm = m.ram.used, dict(m.vmstat)
    tables_before = m.usage()["pte_tables"]
    for f in chosen:
        hugetlb_vmemmap_optimize(m, f)
    return {"saved": before_used - m.ram.used,
            "pte_tables": m.usage()["pte_tables"] - tables_before,
            "vmstat": {k: m.vmstat[k] - before_vm[k] for k in m.vmstat}}


def packed(n):
    """n consecutive pages from the start of region 1 (region 0 loses its first MiB to the
    firmware reservation, see the next test)."""
    def pick(fs):
        fs = [f for f in fs if (f.head_pfn << 12) >= REGION]
        return fs[:n] if len(fs) >= n else None
    return pick


def spread(n):
    """One page per 128 MiB region, the first page allocated in each."""
    def pick(fs):
        seen = {}
        for f in fs:
            seen.setdefault((f.head_pfn << 12) // REGION, f)
        return list(seen.values())[:n] if len(seen) > n else None
    return pick


@pytest.mark.parametrize("kernel", HVO_KERNELS)
@pytest.mark.parametrize("n", [1, 5, 64, 70])
def test_packed_2m_matches_engine(kernel, n):
    e = engine(kernel, "2M", "512M", packed(n))
    p = plan_hugetlb(f"2M:{n}", kernel=kernel, ram="512M")
    assert p.split_pte_tables["packed"] == e["pte_tables"]
    assert p.saved_pages["packed"] == e["saved"]
    if KERNELS[kernel].memmap_counter:
        for k, v in p.vmstat_delta.items():
            assert e["vmstat"][k] == v, k


def test_first_region_holds_63_pages_in_the_engine():
    """The engine keeps the first MiB for firmware, so the first 2 MiB page starts at 2 MiB and
    region 0 holds 63 pages: 64 packed pages then touch 2 regions, the closed form says 1.
    The test above therefore packs from region 1; this one pins the difference down."""
    e = engine("6.6", "2M", "512M", lambda fs: fs[:64] if len(fs) >= 64 else None)
    assert e["pte_tables"] == 2
    assert plan_hugetlb("2M:64").split_pte_tables["packed"] == 1


@pytest.mark.parametrize("kernel", HVO_KERNELS)
@pytest.mark.parametrize("n", [1, 3])
def test_spread_2m_matches_engine(kernel, n):
    e = engine(kernel, "2M", "512M", spread(n))
    p = plan_hugetlb(f"2M:{n}", kernel=kernel, ram="512M")
    assert p.split_pte_tables["spread"] == e["pte_tables"] == n
    assert p.saved_pages["spread"] == e["saved"]


def test_spread_is_bounded_by_the_regions_of_ram():
    # 512 MiB of RAM has 4 regions: 10 pages cannot touch more than 4 PMD leaves
    assert plan_hugetlb("2M:10", ram="512M").split_pte_tables["spread"] == 4
    assert plan_hugetlb("2M:10").split_pte_tables["spread"] == 10


@pytest.mark.parametrize("kernel", HVO_KERNELS)
def test_1g_matches_engine(kernel):
    e = engine(kernel, "1G", "3G", packed(1))
    p = plan_hugetlb("1G:1", kernel=kernel, ram="3G")
    assert e["pte_tables"] == p.split_pte_tables["packed"] == p.split_pte_tables["spread"] == 8
    assert p.saved_pages["packed"] == e["saved"]


def test_figures_from_arithmetic():
    # 1024 x 2M = 2 GiB: 8192 vmemmap pages (32 MiB = 2 GiB / 64); 6.6 keeps 1 per page
    p = plan_hugetlb("2M:1024")
    assert p.without_hvo_pages == 8192
    assert p.kept_pages == 1024 and p.freed_pages == 7 * 1024
    assert p.split_pte_tables == {"packed": 16, "spread": 1024}
    assert p.ram_pages == {"packed": 1040, "spread": 2048}
    # 5.17 (RESERVE_VMEMMAP_NR 2) keeps two per page: 6 freed per 2 MiB, 4094 per 1 GiB
    assert plan_hugetlb("2M:1", kernel="5.17").freed_pages == 6
    assert plan_hugetlb("1G:1", kernel="5.17").freed_pages == 4094
    assert plan_hugetlb("1G:4").freed_pages == 4 * 4095
    # boot-memmap pages given back: all 8 with the 6.2+ head copy (the copy is a new page),
    # 7 without it (5.19 keeps page 0 itself)
    assert plan_hugetlb("2M:64", kernel="6.6").boot_pages_freed == 512
    assert plan_hugetlb("2M:64", kernel="5.19").boot_pages_freed == 448
    assert plan_hugetlb("2M:64", hvo=False).boot_pages_freed == 0


def test_hvo_off_keeps_everything():
    p = plan_hugetlb("2M:1024", hvo=False)
    assert p.kept_pages == p.without_hvo_pages == p.ram_pages["spread"] == 8192
    assert p.split_pte_tables == {"packed": 0, "spread": 0} and p.vmstat_delta == {}


def test_arm64_has_no_hvo_in_the_model():
    p = plan_hugetlb("2M:16", arch="arm64-4k")
    assert not p.optimised and "ARCH_WANT_OPTIMIZE_HUGETLB_VMEMMAP" in p.why_not
    assert p.ram_pages["packed"] == p.without_hvo_pages == 16 * 8


def test_boot_and_runtime_same_arithmetic():
    # 6.12.117 has the memmap counters (6.11+), so the plans carry a vmstat row
    b = plan_hugetlb("1G:2", kernel="6.12.117", when="boot")
    r = plan_hugetlb("1G:2", kernel="6.12.117", when="runtime")
    assert b.ram_pages == r.ram_pages and b.vmstat_delta == r.vmstat_delta
    assert "already in boot values" in b.table() and "on allocation" in r.table()
    # 6.6 (the default) has no nr_memmap_pages / nr_memmap_boot_pages (kernel-facts §0a 7)
    b6, r6 = plan_hugetlb("1G:2", when="boot"), plan_hugetlb("1G:2", when="runtime")
    assert b6.ram_pages == r6.ram_pages == b.ram_pages
    assert b6.vmstat_delta == r6.vmstat_delta == {}
    assert "vmstat" not in b6.table() and "vmstat" not in r6.table()


def test_mm_2026_shared_tail_page_once_per_zone_and_order():
    """The 2026 rework (vmemlab/vmemmap_optimization.py, mm/hugetlb_vmemmap.c at 0454b15e9bbd):
    HVO frees all 8 vmemmap pages of a 2 MiB page, allocates a head copy, and maps the other 7
    PTEs onto the zone's shared tail page for order 9, allocated by the first page only.  By
    arithmetic: the first page in a region saves 8 - 1 (copy) - 1 (shared tail) - 1 (PTE table
    of the split PMD leaf) = 5, a page in another region later 8 - 1 - 1 = 6."""
    m = Machine("x86_64", "mm-2026", ram="512M")
    fs = [alloc_hugetlb_folio(m, "2M") for _ in range(200)]
    far = next(f for f in fs if (f.head_pfn << 12) // REGION != (fs[0].head_pfn << 12) // REGION)
    saved = []
    for f in (fs[0], far):
        before = m.ram.used
        hugetlb_vmemmap_optimize(m, f)
        saved.append(before - m.ram.used)
    first = plan_hugetlb("2M:1", kernel="mm-2026")
    later = plan_hugetlb("2M:1", kernel="mm-2026", shared_tail_allocated=True)
    assert saved == [first.saved_pages["packed"], later.saved_pages["packed"]] == [5, 6]
    assert (first.shared_tail_pages, later.shared_tail_pages) == (1, 0)
    # one shared page for the whole pool: 64 packed pages in one region keep 64 + 1 + 1
    assert plan_hugetlb("2M:64", kernel="mm-2026").ram_pages["packed"] == 66
    # the per-page arithmetic is 6.12.117's: the same vmstat moves, one page less saved
    assert (plan_hugetlb("2M:64", kernel="mm-2026").vmstat_delta
            == plan_hugetlb("2M:64", kernel="6.12.117").vmstat_delta)
    with pytest.raises(ParameterError, match="always copies the head"):
        plan_hugetlb("2M:1", kernel="mm-2026", head_copy=False)


def test_sizes_per_arch():
    # arch/x86/mm/hugetlbpage.c: PMD_SIZE, PUD_SIZE with X86_FEATURE_GBPAGES
    assert hugetlb_sizes("x86_64") == (2 * MiB, GiB)
    assert hugetlb_sizes("x86_64", gbpages=False) == (2 * MiB,)
    # arch/arm64/mm/hugetlbpage.c: CONT_PTE, PMD, CONT_PMD, PUD (4K only)
    assert hugetlb_sizes("arm64-4k") == (64 * 1024, 2 * MiB, 32 * MiB, GiB)
    assert hugetlb_sizes("arm64-64k") == (2 * MiB, 512 * MiB, 16 * GiB)


@pytest.mark.parametrize("spec,msg", [("3M:4", "offers"), ("2M", "SIZE:COUNT"),
                                      ("2M:-1", "0 or more"), ("2M:x", "whole number")])
def test_bad_pool(spec, msg):
    with pytest.raises(ParameterError, match=msg):
        plan_hugetlb(spec)


def test_more_pages_than_ram():
    with pytest.raises(ParameterError, match="at most 512 pages"):
        plan_hugetlb("2M:513", ram="1G")


def test_parse_pool():
    assert parse_pool("1G:4") == (GiB, 4)
    assert parse_pool(("2M", 3)) == (2 * MiB, 3)


@pytest.mark.parametrize("arch,ram", [("x86_64", "1G"), ("x86_64", "3G"), ("arm64-64k", "2G"),
                                      ("arm64-16k", "1G"), ("ppc64-radix-64k", "3G"),
                                      ("ppc64-radix-64k", "4G")])
def test_boot_memmap_matches_engine(arch, ram):
    # 6.12: nr_memmap_boot_pages (6.11+) counts the boot memmap's data pages, not its tables
    m = Machine(arch, "6.12", ram=ram)
    u = m.usage()
    b = boot_memmap_pages(ram, arch)
    assert b["data"] == u["ram_data_pages"]
    assert b["nr_memmap_boot_pages"] == m.vmstat["nr_memmap_boot_pages"]
    if not arch.startswith("ppc64"):
        assert b["data"] == b["nr_memmap_boot_pages"]
    assert b["pagetables"] == u["ram_pagetable_pages"]
    # 6.6 boots the same memmap and has no counter (kernel-facts §0a 7)
    m6 = Machine(arch, "6.6", ram=ram)
    assert m6.usage()["ram_data_pages"] == b["data"]
    assert m6.vmstat.get("nr_memmap_boot_pages", 0) == 0


@pytest.mark.parametrize("kernel", ["6.6", "5.17"])
def test_measured_placement_matches_engine(kernel):
    """Pages at given head pfns: the engine optimises exactly those; the planner counts the
    regions they touch.  Heads 2 and 3 share a region, the third sits in region 3."""
    m = Machine("x86_64", kernel, ram="512M")
    folios = [alloc_hugetlb_folio(m, "2M") for _ in range(200)]
    pick = [folios[0], folios[1], folios[-1]]
    before, tables = m.ram.used, m.usage()["pte_tables"]
    for f in pick:
        hugetlb_vmemmap_optimize(m, f)
    p = plan_hugetlb("2M:3", kernel=kernel, heads=[f.head_pfn for f in pick])
    assert p.split_pte_tables["measured"] == m.usage()["pte_tables"] - tables == 2
    assert p.saved_pages["measured"] == before - m.ram.used
    with pytest.raises(ParameterError, match="one head pfn per page"):
        plan_hugetlb("2M:3", heads=[0])


def test_restore_delta_matches_engine():
    """Dissolving optimised pages: vmemmap_remap_alloc allocates V - kept pages per page again,
    counted in nr_memmap_pages (the engine's restore path)."""
    from vmemlab.hugetlb_vmemmap import dissolve_free_huge_page

    m = Machine("x86_64", "6.12.117", ram="512M")
    fs = [alloc_hugetlb_folio(m, "2M") for _ in range(3)]
    for f in fs:
        hugetlb_vmemmap_optimize(m, f)
    vm = dict(m.vmstat)
    for f in fs:
        dissolve_free_huge_page(m, f)
    p = plan_hugetlb("2M:3", kernel="6.12.117")
    assert p.restore_vmstat_delta == {"nr_memmap_pages": m.vmstat["nr_memmap_pages"]
                                      - vm["nr_memmap_pages"]} == {"nr_memmap_pages": 21}


@pytest.mark.parametrize("arch,size,freed,tables", [
    # arithmetic: V vmemmap pages per HugeTLB page = pages * 64 / PAGE_SIZE, 5.19 keeps 1:
    # 4K 2M: 512 * 64 / 4096 = 8 -> 7 freed each; 4K 1G: 4096 -> 4095 each, 8 PMD leaves each
    # to split; 64K 512M: 8192 * 64 / 65536 = 8; 16K 32M: 2048 * 64 / 16384 = 8 (base-page
    # vmemmap on 16K/64K: nothing to split); two pages, packed
    ("arm64-4k", "2M", 2 * 7, 1), ("arm64-4k", "1G", 2 * 4095, 16),
    ("arm64-64k", "512M", 2 * 7, 0), ("arm64-16k", "32M", 2 * 7, 0)])
def test_arm64_5_19_hvo_follows_the_kernel_variant(arch, size, freed, tables):
    """kernel-facts §0a 9: 5.19 arm64 selects ARCH_WANT_HUGETLB_PAGE_OPTIMIZE_VMEMMAP (turned off
    again by 060a2c92d1b6, so 6.1+ do not): the planner offers HVO where ``Kernel.hvo_arches``
    says so, as the engine does, and spends what the engine spends."""
    m = Machine(arch, "5.19", ram="4G")
    fs = [alloc_hugetlb_folio(m, size) for _ in range(2)]
    before, t0 = m.ram.used, m.usage()["pte_tables"]
    for f in fs:
        hugetlb_vmemmap_optimize(m, f)
    p = plan_hugetlb(f"{size}:2", arch=arch, kernel="5.19")
    assert p.optimised and p.freed_pages == freed
    assert p.split_pte_tables["packed"] == m.usage()["pte_tables"] - t0 == tables
    assert p.saved_pages["packed"] == before - m.ram.used == freed - tables
    for k in ("6.1", "6.6", "6.12"):
        q = plan_hugetlb(f"{size}:2", arch=arch, kernel=k)
        assert not q.optimised and "ARCH_WANT_OPTIMIZE_HUGETLB_VMEMMAP" in q.why_not


def test_ppc64_boot_memmap_is_whole_pmd_blocks():
    # independent arithmetic: 3 GiB / 64 KiB = 49152 struct pages x 64 B = 3 MiB of memmap;
    # ppc64 radix maps it in 2 MiB PMD blocks (radix__vmemmap_populate, 6.6+), so two blocks of
    # 2 MiB / 64 KiB = 32 pages each, under one PMD table and one PUD table
    b = boot_memmap_pages("3G", "ppc64-radix-64k")
    assert b["data"] == 64 and b["pagetables"] == 2
    # 6.11+ counts DIV_ROUND_UP(16 KiB, 64 KiB) = 1 page for each of the 3 GiB / 16 MiB = 192
    # sections (__populate_section_memmap, 15995a352474): 192, three times the 64 pages used
    assert b["nr_memmap_boot_pages"] == 192
