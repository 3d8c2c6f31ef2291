"""The cover letter's figures, reproduced by populating the model.

Independent arithmetic used below (x86_64, 4 KiB pages, 64-byte struct page):
* 1 TiB = 2**28 pfns; struct pages = 2**28 * 64 B = 16 GiB = 2**22 vmemmap pages.
* 2M compound page: 512 struct pages = 32 KiB = 8 vmemmap pages; deduplicated it keeps 2
  (head page + one tail page), so 2**19 compound pages * 2 pages * 4 KiB = 4 GiB.
* 1G compound page: 4096 vmemmap pages, 2 kept; its 16 MiB of memmap spans 8 sections of
  2 MiB memmap, each with its own PTE table page as merged (5.19+): 2 + 8 = 10 pages = 40 KiB
  per GiB = 40 MiB per TiB.  The v3 series' PMD reuse keeps 2 PTE tables: 16 KiB/GiB = 16 MiB/TiB.
"""

import pytest

import vmemlab
from vmemlab.units import GiB, MiB, TiB

PAGE = 4096


@pytest.fixture(scope="module")
def tib_2m():
    return vmemlab.plan("1T", align="2M")


def test_4k_align_costs_16g_per_tib():
    p = vmemlab.plan("1T", align="4K")
    assert p.ram_data_pages * PAGE == 16 * GiB  # cover letter: "instead of 16G"
    assert not p.optimised
    assert p.struct_pages == 2**28


def test_2m_align_costs_4g_per_tib(tib_2m):
    assert tib_2m.optimised
    assert tib_2m.ram_data_pages * PAGE == 4 * GiB  # cover letter: "with 2M pages we lose 4G"
    # page tables reported apart: one PTE table per 128 MiB section, plus PMD/PUD tables
    assert tib_2m.pagetables["pte"] == TiB // (128 * MiB)
    assert tib_2m.ram_pagetable_pages == sum(tib_2m.pagetables.values())


def test_2m_saves_6_vmemmap_pages_per_compound(tib_2m):
    assert tib_2m.vmemmap_pages_per_compound == 8
    assert tib_2m.saved_vmemmap_pages_per_compound == 6  # cover letter: "save 6 vmemmap pages"


def test_1g_merged_costs_about_40m_per_tib():
    p = vmemlab.plan("1T", align="1G", kernel="6.6")
    assert p.saved_vmemmap_pages_per_compound == 4094  # cover letter: "save 4094 vmemmap pages"
    assert p.ram_data_pages == 2 * 1024
    assert p.pagetables["pte"] == 8 * 1024
    # 40 MiB of data + PTE tables; the PMD and PUD tables add a handful of pages on top
    assert (p.ram_data_pages + p.pagetables["pte"]) * PAGE == 40 * MiB
    assert 40 * MiB <= p.ram_bytes < 41 * MiB


def test_1g_v3_pmd_reuse_costs_about_16m_per_tib():
    p = vmemlab.plan("1T", align="1G", kernel="v3")
    assert p.ram_data_pages == 2 * 1024
    assert p.pagetables["pte"] == 2 * 1024  # cover letter: "(40M -> 16M per Tb)"
    assert (p.ram_data_pages + p.pagetables["pte"]) * PAGE == 16 * MiB


@pytest.mark.parametrize("align", ["4K", "2M", "1G"])
def test_5_17_spends_full_memmap_at_any_align(align):
    p = vmemlab.plan("1T", align=align, kernel="5.17")
    assert not p.optimised
    assert p.ram_data_pages * PAGE == 16 * GiB


@pytest.mark.parametrize("align", ["4K", "2M", "1G"])
def test_map_dev_is_never_deduplicated(align):
    p = vmemlab.plan("64G", align=align, map="dev")
    assert not p.optimised
    assert p.ram_data_pages == 0
    # every section's 2 MiB of memmap is a PMD block on the device: 64 GiB / 128 MiB * 512
    assert p.device_data_pages == 512 * 512


def test_worked_16g_map_dev_example():
    """kernel-facts.md §5: npfns 4194302, offset 258 MiB, reserve 2, free 66046 =
    65536 memmap pages + 510 pages of alignment for the first 2 MiB block."""
    p = vmemlab.plan("16G", align="2M", map="dev")
    ns = p.namespace
    assert ns["dataoff"] == 270532608 == 258 * MiB
    assert ns["altmap_reserve"] == 2
    assert ns["altmap_free"] == 66046
    assert p.device_data_pages == 65536
    assert p.device_align_pages == 510
    assert p.device_data_pages + p.device_align_pages == ns["altmap_free"]


def test_struct_pages_initialised_128g():
    """compound_nr_pages: 2 * (4096 / 64) = 128 struct pages per deduplicated compound page."""
    size = 128 * GiB
    assert vmemlab.plan(size, align="4K").struct_pages_initialised == size // PAGE
    assert vmemlab.plan(size, align="2M").struct_pages_initialised == (size // (2 * MiB)) * 128
    assert vmemlab.plan(size, align="1G").struct_pages_initialised == 128 * 128
    assert vmemlab.plan(size, align="2M", kernel="5.17").struct_pages_initialised == size // PAGE


def test_ppc64_2m_not_optimised_1g_optimised():
    """kernel-facts.md §2: 6.6 rule on ppc64 radix 64K: 2M memmap is 2 KiB (0 pages) -> no;
    1G memmap is 1 MiB = 16 pages > 2 -> yes."""
    assert not vmemlab.plan("4G", align="2M", arch="ppc64-radix-64k").optimised
    p = vmemlab.plan("4G", align="1G", arch="ppc64-radix-64k")
    assert p.optimised
    assert p.vmemmap_pages_per_compound == 16
    assert p.saved_vmemmap_pages_per_compound == 14


def test_5_19_rule_differs_from_6_6_for_small_orders():
    """5.19 optimises any vmemmap_nr > 1; 6.6 needs more than VMEMMAP_RESERVE_NR (2) pages:
    order 7 = 128 struct pages = 8 KiB = 2 pages -> 5.19 yes, 6.6 no."""
    a = vmemlab.plan("1G", align=1 << (12 + 7), strict=False, kernel="5.19")
    b = vmemlab.plan("1G", align=1 << (12 + 7), strict=False, kernel="6.6")
    assert a.optimised and not b.optimised


def test_ram_share_and_enomem():
    p = vmemlab.plan("1T", align="2M", ram="64G")
    assert p.ram_share == pytest.approx(p.ram_bytes / (64 * GiB))
    with pytest.raises(vmemlab.KernelError) as e:
        vmemlab.plan("1T", align="4K", ram="16G")
    assert e.value.errno == "ENOMEM" and "needs" in str(e.value)


def test_plan_has_the_json_keys():
    d = vmemlab.plan("16G").to_dict()
    for key in ("struct_pages", "optimised", "ram_data_pages", "ram_pagetable_pages",
                "device_data_pages", "ram_bytes", "struct_pages_initialised",
                "saved_vmemmap_pages_per_compound"):
        assert key in d


def test_ppc64_page_tables_are_fragments():
    """ppc64 radix 64K: a PTE table has 32 entries (256 bytes), so one 64 KiB page holds 256 of
    them (pte_fragment_alloc).  1 TiB of 16 MiB sections has 2**16 sections x 16 KiB of memmap
    = 1 GiB of vmemmap; a PTE table maps 32 x 64 KiB = 2 MiB of it: 512 tables = 2 pages.
    PMD tables (4 KiB, 512 entries of 2 MiB = 1 GiB of vmemmap each): 1 GiB needs 1, but the
    namespace at 64 GiB starts 64 MiB into the vmemmap, so it straddles 2; PUD: 1.  Each level
    carves its own pages (as pte_fragment_alloc and pmd_fragment_alloc keep separate pools):
    2 PTE pages + 1 PMD page + 1 PUD page."""
    p = vmemlab.plan("1T", align="1G", arch="ppc64-radix-64k")
    assert p.pagetables == {"pte": 512, "pmd": 2, "pud": 1}
    assert p.ram_pagetable_pages == 2 + 1 + 1


@pytest.mark.parametrize("align, expect", [
    ("4K", 16 * GiB // 4096 * 64 // 4096),  # not optimised: the full memmap
    ("2M", 16 * GiB // (2 * MiB) * 2),      # VMEMMAP_RESERVE_NR per 2M compound page
    ("1G", 16 * 2),                         # VMEMMAP_RESERVE_NR per 1G compound page
])
def test_nr_memmap_pages_counter_by_variant(align, expect):
    """kernel-facts.md §12: up to the 2026 fix nr_memmap_pages counts the full memmap
    (16 GiB / 4 KiB * 64 B = 65536 pages) whatever the align; with section_nr_vmemmap_pages
    (variant 6.12.117) it counts the deduplicated memmap.  validation/ measured both."""
    assert vmemlab.plan("16G", align=align, kernel="6.12").nr_memmap_pages == 65536
    assert vmemlab.plan("16G", align=align, kernel="6.12.117").nr_memmap_pages == expect
    assert vmemlab.plan("16G", align=align, map="dev", kernel="6.12.117").nr_memmap_pages == 65536


def test_arm64_opts_out_of_dax_vmemmap_optimization_from_6_4():
    """arm64 does not select ARCH_WANT_OPTIMIZE_DAX_VMEMMAP (x86_64, powerpc radix and riscv
    do), and vmemmap_can_optimize() requires it since 6.4; 5.19-6.3 had no arch gate."""
    assert not vmemlab.plan("64G", align="2M", arch="arm64-4k", kernel="6.6").optimised
    assert vmemlab.plan("64G", align="2M", arch="arm64-4k", kernel="5.19").optimised


def test_map_dev_counts_compound_pages_from_pfn_first():
    """With an altmap, memremap_pages' pfn_first() skips vmem_altmap_offset pages: for 16 GiB
    with 2 MiB pages the 258 MiB data offset (kernel-facts.md §5) holds 129 compound pages, so
    (16 GiB - 258 MiB) / 2 MiB = 8063 are initialised and referenced."""
    p = vmemlab.plan("16G", align="2M", map="dev")
    assert p.compound_pages == (16 * GiB - 258 * MiB) // (2 * MiB) == 8063
    assert p._pgmap.ref == 8063


def test_kernels_without_the_counter_report_none():
    """nr_memmap_pages exists from 6.11 (15995a352474; kernel-facts.md §0a 7: 6.6.87 has none;
    Debian's 6.1.192 include/linux/vmstat.h and mmzone.h have no NR_MEMMAP item either)."""
    for k in ("5.17", "5.19", "6.1", "6.6"):
        assert vmemlab.plan("16G", kernel=k).nr_memmap_pages is None, k
    assert vmemlab.plan("16G", kernel="6.12").nr_memmap_pages == 65536
