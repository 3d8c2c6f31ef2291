"""vmemlab/kernels.py: per-version kernel facts, each pinned to the source it was read in.

Sources: Debian's linux-source-6.1 6.1.192 (Makefile VERSION 6, PATCHLEVEL 1, SUBLEVEL 192;
``apt-get download linux-source-6.1``), and kernel-facts.md §0a (the lead's reading of 5.17-rc5,
5.19, 6.6.87, 6.12.0, 6.12.33 and a drgn read of a 6.12.117 guest).  Every expected value below
is typed from those texts, not from the model.
"""

from __future__ import annotations

import numpy as np
import pytest

import vmemlab
from vmemlab import page as P
from vmemlab.include import mm_types as MT  # where the layout loader lives (page re-exports it)
from vmemlab.machine import Machine
from vmemlab.memremap import DevPagemap
from vmemlab.sparse_vmemmap import vmemmap_can_optimize

GiB, MiB = 1 << 30, 1 << 20


def test_every_variant_is_listed_with_its_own_layout():
    assert list(vmemlab.KERNELS) == ["v3", "5.17", "5.19", "6.1", "6.6", "6.12", "6.12.117",
                                     "mm-2026"]
    assert {k: P.struct_layout_name(v) for k, v in vmemlab.KERNELS.items()} == {
        "v3": "5.17", "5.17": "5.17", "5.19": "5.18", "6.1": "5.18", "6.6": "6.6",
        "6.12": "6.12", "6.12.117": "6.12", "mm-2026": "6.12"}


@pytest.mark.parametrize("kernel, head, reserved, hwpoison", [
    # 6.1.192 include/linux/page-flags.h: the 5.17 order (PG_writeback 15, PG_head 16)
    ("6.1", 16, 12, 23),
    # 6.6: "mm: Rearrange page flags" (PG_writeback 1, PG_head 6), PG_error/PG_slab still there
    ("6.6", 6, 14, 23),
    # 6.12 (kernel-facts §0a 4): PG_error, PG_slab, PG_mappedtodisk, PG_uncached gone
    ("6.12", 6, 13, 20),
    ("6.12.117", 6, 13, 20),
])
def test_pageflags_per_version(kernel, head, reserved, hwpoison):
    m = Machine("x86_64", kernel)
    assert (P.PG(m, "PG_head"), P.PG(m, "PG_reserved"), P.PG(m, "PG_hwpoison")) == (
        head, reserved, hwpoison)


def test_6_1_first_tail_is_the_5_18_struct_page():
    """6.1.192 include/linux/mm_types.h, "Tail pages of compound page": compound_head @8,
    compound_dtor @16, compound_order @17, compound_mapcount @20, compound_pincount @24,
    compound_nr @28 (64-bit)."""
    dt = P.struct_page_dtype(vmemlab.get_kernel("6.1"))
    got = {n: dt.fields[n][1] for n in ("compound_head", "compound_dtor", "compound_order",
                                         "compound_mapcount", "compound_pincount",
                                         "compound_nr")}
    assert got == {"compound_head": 8, "compound_dtor": 16, "compound_order": 17,
                   "compound_mapcount": 20, "compound_pincount": 24, "compound_nr": 28}
    # 6.1's struct folio names the same slot _folio_nr_pages (generated layout only)
    if "_folio_nr_pages" in dt.names:
        assert dt.fields["_folio_nr_pages"][1] == 28


def test_6_12_folio_page1_is_not_the_6_6_one():
    """kernel-facts §0a 3: 6.12 page[1] _large_mapcount @16, _entire_mapcount @20,
    _nr_pages_mapped @24, _pincount @28, _folio_nr_pages @32; 6.6 (only) has _folio_avail @16
    and _pincount @32."""
    names = ("_entire_mapcount", "_nr_pages_mapped", "_pincount", "_folio_nr_pages")
    d612 = P.struct_page_dtype(vmemlab.get_kernel("6.12"))
    d66 = P.struct_page_dtype(vmemlab.get_kernel("6.6"))
    assert d612.fields["_large_mapcount"][1] == 16
    assert [d612.fields[n][1] for n in names] == [20, 24, 28, 32]
    assert [d66.fields[n][1] for n in names] == [24, 28, 32, 36]
    assert d66.fields["_folio_avail"][1] == 16 and "_folio_avail" not in d612.names


def test_6_12_prep_compound_head_sets_large_mapcount():
    """6.12 mm/internal.h prep_compound_head: atomic_set(&folio->_large_mapcount, -1), as the
    drgn read of the 6.12.117 guest shows on device-dax heads."""
    p = vmemlab.plan("1G", align="2M", kernel="6.12")
    m = p._machine
    head = p._pgmap.ranges[0][0] >> 12
    head += (-head) % 512
    assert int(P.read_field(m, head + 1, "_large_mapcount")[0]) == -1
    assert int(P.read_field(m, head + 1, "_entire_mapcount")[0]) == -1
    assert int(P.read_field(m, head + 1, "_folio_nr_pages")[0]) == 512


def test_only_the_v3_series_grabs_the_head_once():
    """kernel-facts §0a 11: every released devmap gup_fast path (5.17 __gup_device_huge, 6.1.192
    __gup_device_huge -> try_grab_page(page, flags) per subpage, 6.6 try_grab_folio(..., 1, ..),
    6.12 gup_fast_devmap_leaf -> try_grab_folio_fast(page, 1, ..)) takes one reference per
    subpage; "head-once" is the unmerged v3 patch 13."""
    assert {k: v.gup for k, v in vmemlab.KERNELS.items() if v.gup == "head-once"} == {
        "v3": "head-once"}


def _can_opt(arch: str, kernel: str) -> bool:
    m = Machine(arch, kernel)
    a = m.arch
    order = (1 << 30).bit_length() - 1 - a.page_shift  # a 1 GiB compound page
    pg = DevPagemap(ranges=[(64 << 30, 65 << 30)], vmemmap_shift=order)
    return vmemmap_can_optimize(m, None, pg)


@pytest.mark.parametrize("arch, expect", [
    # 5.19: no arch gate (inline check in __populate_section_memmap)
    ("arm64-4k", {"5.19": True, "6.1": False, "6.6": False, "6.12": False}),
    # 6.1.192 include/linux/mm.h: gated on ARCH_WANT_HUGETLB_PAGE_OPTIMIZE_VMEMMAP, which only
    # arch/x86/Kconfig selects there; 6.6/6.12 ARCH_WANT_OPTIMIZE_DAX_VMEMMAP includes
    # PPC_RADIX_MMU (kernel-facts §0a 10)
    ("ppc64-radix-64k", {"5.19": True, "6.1": False, "6.6": True, "6.12": True}),
    ("x86_64", {"5.19": True, "6.1": True, "6.6": True, "6.12": True}),
])
def test_dax_kconfig_gate_per_version(arch, expect):
    assert {k: _can_opt(arch, k) for k in expect} == expect


def test_dax_gate_names_riscv_from_6_12():
    """kernel-facts §0a 10: riscv selects ARCH_WANT_OPTIMIZE_DAX_VMEMMAP in 6.12, not 6.6.87;
    arm64 and loongarch never."""
    assert "riscv" in vmemlab.get_kernel("6.12").dax_gate_arches
    assert "riscv" not in vmemlab.get_kernel("6.6").dax_gate_arches
    for k in ("6.1", "6.6", "6.12", "6.12.117"):
        assert not any(a.startswith("arm64") for a in vmemlab.get_kernel(k).dax_gate_arches)


@pytest.mark.parametrize("kernel, pmd_leaves", [
    ("5.17", 1), ("5.19", 1),             # ARM64_KERNEL_USES_PMD_MAPS: a PMD block anyway
    ("6.1", 0), ("6.6", 0), ("6.12", 0),  # 6.1.192/6.6.87/6.12.33: base pages for a partial one
])
def test_arm64_4k_partial_section_per_version(kernel, pmd_leaves):
    """kernel-facts §0a 5, and 6.1.192 arch/arm64/mm/mmu.c vmemmap_populate: `if
    (!ARM64_KERNEL_USES_PMD_MAPS || (end - start < PAGES_PER_SECTION * sizeof(struct page)))
    return vmemmap_populate_basepages(...)`.  A 16 MiB namespace is an eighth of a section."""
    p = vmemlab.plan("16M", align="4K", arch="arm64-4k", kernel=kernel)
    assert len(p._machine.pgtables.pmd_leaf) == pmd_leaves


def test_memmap_counter_only_from_6_11():
    """kernel-facts §0a 7: nr_memmap_pages/nr_memmap_boot_pages exist from 6.11; 6.6.87 has
    none, and neither has 6.1.192 (no NR_MEMMAP in include/linux/mmzone.h or mm/vmstat.c).
    mm-2026 is the 2026 mm tree (linux-next, 7.3-rc era), whose mm/sparse-vmemmap.c at
    028871b824fd moves nr_memmap_pages by section_nr_vmemmap_pages (vmemlab/vmemmap_optimization.py):
    it has the counter."""
    assert {k: v.memmap_counter for k, v in vmemlab.KERNELS.items()} == {
        "v3": False, "5.17": False, "5.19": False, "6.1": False, "6.6": False, "6.12": True,
        "6.12.117": True, "mm-2026": True}


def test_tail_mapping_value():
    """6.1.192 include/linux/poison.h: TAIL_MAPPING = 0x400 + POISON_POINTER_DELTA, and
    arch/x86/Kconfig ILLEGAL_POINTER_VALUE = 0xdead000000000000 on X86_64."""
    assert P.TAIL_MAPPING == 0xDEAD000000000400


def test_generated_layout_loader_checks_its_input(tmp_path, monkeypatch):
    """page.load_layout (schema 1, /work/wt/_brief/layout-schema.md): a complete file gives the
    dtype its offsets; a file missing a member the engine uses is refused, not ignored."""
    import json

    page = {n: [o, s, sg] for n, o, s, sg in [
        ("flags", 0, 8, False), ("compound_head", 8, 8, False), ("lru_next", 8, 8, False),
        ("lru_prev", 16, 8, False), ("pgmap", 8, 8, False), ("zone_device_data", 16, 8, False),
        ("mapping", 24, 8, False), ("index", 32, 8, False), ("private", 40, 8, False),
        ("_mapcount", 48, 4, True), ("page_type", 48, 4, False), ("_refcount", 52, 4, True),
        ("memcg_data", 56, 8, False)]}
    good = {"schema": 1, "variant": "x", "release": "r", "sizeof": {"struct page": 64},
            "page": page, "page1": {"_pincount": [28, 4, True]}, "page2": {},
            "pageflags": {"PG_head": 6}, "zones": {}, "flags_layout": {}}
    (tmp_path / "x.json").write_text(json.dumps(good))
    bad = dict(good, page={k: v for k, v in page.items() if k != "_refcount"})
    (tmp_path / "y.json").write_text(json.dumps(bad))
    monkeypatch.setattr(MT, "layouts_dir", lambda: tmp_path)
    monkeypatch.setattr(MT, "_LAYOUT_CACHE", {})
    dt = MT._dtype_from_layout(P.load_layout("x"))
    assert dt.itemsize == 64 and dt.fields["_pincount"][1] == 28
    assert np.dtype(dt.fields["_refcount"][0]) == np.dtype("<i4")
    assert P.load_layout("nonexistent") is None
    with pytest.raises(ValueError, match="_refcount"):
        P.load_layout("y")


@pytest.mark.parametrize("variant", ["6.1", "6.12.117"])
def test_generated_layouts_agree_with_the_source_tables(variant, monkeypatch):
    """The committed layouts (vmemlab/layouts/<variant>.json, written by i12v's generator from
    the DWARF of Debian's linux-image-*-dbg) are what the model loads; every member the
    source-derived table names (6.1.192 mm_types.h for 6.1; kernel-facts §0a 3 plus the 6.12.117
    DWARF's page[3] for 6.12) sits at the same offset with the same width, the enum pageflags
    bits the engine uses agree, and page->flags' zone/node fields are where page.py puts them."""
    k = vmemlab.get_kernel(variant)
    gen = P.load_layout(variant)
    assert gen is not None and gen["variant"] == variant
    dt_gen = P.struct_page_dtype(k)
    monkeypatch.setattr(MT, "load_layout", lambda v: None)
    dt_src = P.struct_page_dtype(k)
    assert dt_src.names != dt_gen.names  # the patch took: the source-derived table
    for name in dt_src.names:
        assert name in dt_gen.names, name
        assert dt_gen.fields[name][1] == dt_src.fields[name][1], name
        assert dt_gen.fields[name][0].itemsize == dt_src.fields[name][0].itemsize, name
    src_flags = P.PAGEFLAGS[{"6.1": "5.17", "6.12.117": "6.12"}[variant]]
    for f in ("PG_head", "PG_reserved", "PG_hwpoison", "PG_referenced", "PG_active"):
        assert gen["pageflags"][f] == src_flags[f], f
    fl = gen["flags_layout"]
    assert (fl["NODES_PGSHIFT"], fl["ZONES_PGSHIFT"], fl["ZONES_WIDTH"]) == (
        P.NODES_PGSHIFT, P.ZONES_PGSHIFT, P.ZONES_WIDTH)
    assert gen["zones"]["ZONE_DEVICE"] == P.ZONE_DEVICE


def test_init_single_page_resets_last_cpupid_to_all_ones():
    """6.1.192 include/linux/mm.h page_cpupid_reset_last: page->flags |= LAST_CPUPID_MASK <<
    LAST_CPUPID_PGSHIFT; with Debian's config the field is 21 bits at 30 (i12v's generated
    flags_layout for both kernels: LAST__PID_SHIFT 8 + NR_CPUS_BITS 13)."""
    for variant in ("6.1", "6.12.117"):
        fl = P.load_layout(variant)["flags_layout"]
        assert (fl["LAST_CPUPID_PGSHIFT"], fl["LAST_CPUPID_WIDTH"]) == (
            P.LAST_CPUPID_PGSHIFT, P.LAST_CPUPID_WIDTH) == (30, 21)
    p = vmemlab.plan("128M", align="2M", kernel="6.12.117")
    head = p._pgmap.ranges[0][0] >> 12
    flags = int(P.read_field(p._machine, head, "flags")[0])
    assert (flags >> 30) & ((1 << 21) - 1) == (1 << 21) - 1
    assert flags >> 51 & 7 == P.ZONE_DEVICE
