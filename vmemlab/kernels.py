"""Kernel variants the model can follow (kernel-facts.md §0 has the timeline, §0a the corrections).

Each variant names the trees actually read; a rule is stated for those versions only.

=========  ===================================================================================
``v3``     The posted series "mm, sparse-vmemmap: Introduce compound pagemaps" v3 (Jul 2021):
           compound devmaps, tail-page vmemmap reuse, PMD-level reuse for PUD-sized compound
           pages (patch 14, never merged) and head-page GUP refcounting (patch 13, never
           merged: "head-once" matches no released devmap GUP path).
``5.17``   Compound devmap pages merged (``vmemmap_shift``), no vmemmap deduplication yet.
           HVO (``HUGETLB_PAGE_FREE_VMEMMAP depends on X86_64``) keeps 2 vmemmap pages.
``5.19``   Deduplication merged (4917f55b4ef9): ``is_power_of_2(sizeof(struct page)) && pgmap &&
           pgmap_vmemmap_nr(pgmap) > 1 && !altmap``, no arch gate; ``compound_nr_pages``
           (6fd3620b3428).  HVO keeps 1 page; arm64 selects it too (until 060a2c92d1b6);
           ``reset_struct_pages`` copies struct page 3 into each of the first 3 in a loop.
``6.1``    Debian bookworm's kernel, read in Debian's linux-source-6.1 6.1.192 (Makefile
           ``VERSION = 6``, ``PATCHLEVEL = 1``, ``SUBLEVEL = 192``): the 5.18 struct page
           (``compound_dtor``/``compound_order``/``compound_pincount`` in page[1], the 5.17
           ``enum pageflags`` order), HugeTLB marked by ``HUGETLB_PAGE_DTOR`` with its hwpoison
           list on ``page[4].private`` (``SUBPAGE_INDEX_HWPOISON``; page[2] came in 6.2,
           dad6a5eb5556); HVO without the 6.2 head copy (11aad2631bf7), x86_64 only,
           ``NR_RESET_STRUCT_PAGE 3`` copied as a block.  6.1.192 carries the stable backports
           of 87a7ae75d738: ``vmemmap_can_optimize`` (include/linux/mm.h) is the
           ``VMEMMAP_RESERVE_NR`` rule gated on ``CONFIG_ARCH_WANT_HUGETLB_PAGE_OPTIMIZE_VMEMMAP``
           (x86_64 only), and arm64 4K maps a partial section with base pages.  No
           ``nr_memmap_pages``.  Earlier 6.1.y do not have the backport: Debian's 6.1.176
           source still has the 5.19 inline test in ``__populate_section_memmap``, so there
           ppc64 radix takes the generic compound path like ``5.19``.
``6.6``    6.6.87: ``vmemmap_can_optimize()`` with ``VMEMMAP_RESERVE_NR`` gated on
           ``CONFIG_ARCH_WANT_OPTIMIZE_DAX_VMEMMAP`` (new in 6.6; x86_64 and PPC_RADIX_MMU) and
           the ppc64 radix override: optimise when the compound memmap is more than 2 pages.
           The default.  HugeTLB marked by the page type ``PG_hugetlb`` (0x800) on the head.
           No ``nr_memmap_pages`` (that counter is 6.11+).
``6.12``   6.12 as read in 6.12.0 and 6.12.33 (and measured in Debian's 6.12.100): the 6.6 dedup
           rule with riscv added to the DAX gate, the 6.12 ``struct folio`` page[1]
           (``_large_mapcount`` @16 .. ``_folio_nr_pages`` @32) and ``enum pageflags``
           (PG_head 6, PG_reserved 13, PG_hwpoison 20), ``PGTY_hugetlb`` (0xf4) in the top byte
           of the head's ``page_type``; ``nr_memmap_pages`` (6.11+) counts the full memmap.
           arm64 4K partial sections follow 6.12.33 (base pages; 6.12.0 mapped a PMD block).
``6.12.117`` The ``6.12`` rules plus Muchun Song's 2026 fix "fix DAX vmemmap accounting with
           optimization" (``section_nr_vmemmap_pages``, Cc: stable): ``nr_memmap_pages``
           counts the deduplicated memmap.  Measured in Debian's 6.12.117 (6.12.107 and later
           showed the same; 6.12.100 did not -- see ``validation/``).  Its HVO restore is the
           one Debian 6.12.115-1 backported with "mm/hugetlb: refactor code around
           vmemmap_walk": ``vmemmap_restore_pte`` copies the head-copy page into every
           restored vmemmap page and no longer calls ``reset_struct_pages``
           (``nr_reset_struct_page = 0``; read in Debian's linux-source-6.12 6.12.117-1~deb12u1
           by the real-kernel check, and in the vmlinux: no memcpy after ``copy_page``), so
           dissolving an optimized page hits "BUG: Bad page state" and leaks it -- a kernel
           bug, measured: stable 6.12.114 took c0b495b91a47 and its fix c7bde43f6daf
           ("mm/hugetlb_vmemmap: fix incorrect vmemmap restore in rollback") without
           622026e87c40 ("mm/hugetlb: remove fake head pages"); see
           ``vmemlab.hugetlb_vmemmap``.
``mm-2026`` The 2026 mm tree's shared-tail rework (Muchun Song, "mm: Switch device DAX to
           section-based vmemmap optimization", in linux-next from September 2026, in no
           release read): device-dax keeps one head vmemmap page per compound page and maps
           the rest to one shared tail page per zone and order (``vmemmap_shared_tail_page``);
           HVO maps its tails to the same kind of page.  :mod:`vmemlab.vmemmap_optimization`.
=========  ===================================================================================
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ParameterError


@dataclass(frozen=True)
class Kernel:
    """What one kernel variant does, as flags the engine consults by name."""

    name: str
    #: device-dax pgmaps carry ``vmemmap_shift`` and are initialised as compound pages
    compound_devmap: bool
    #: ``__populate_section_memmap`` may take the deduplicating compound path
    vmemmap_dedup: bool
    #: ``vmemmap_can_optimize`` rule: "nr>1" (5.19-6.3 mainline) or "reserve_nr" (6.1.192's
    #: backport, 6.6.87, 6.12 -- the trees read)
    can_optimize_rule: str | None
    #: the v3 series' PMD-level reuse of PTE tables for PUD-sized compound pages (patch 14)
    pmd_reuse: bool
    #: ``GUP`` variant: "base" (pre-5.17), "per-subpage-head" (every released devmap gup_fast
    #: path read: 5.17 ``__gup_device_huge``, 6.1, 6.6, 6.12 ``gup_fast_devmap_leaf``),
    #: "head-once" (the unmerged v3 patch 13, "grab head page refcount once")
    gup: str
    #: HugeTLB vmemmap pages kept per HugeTLB page by HVO (5.14-5.17: 2; 5.18+: 1); 0 = no HVO
    hvo_reserve_pages: int
    #: where the pin count of a compound page lives: "page2" (5.7-5.17, order > 1) or "page1"
    pincount: str
    #: struct page family: "5.17" (compound_dtor/compound_order in page[1], up to 6.1) or
    #: "folio" (struct folio page[1] members: 6.6, 6.12; the exact table is ``struct_layout``)
    layout: str
    #: /proc/vmstat nr_memmap_pages exists (6.11+, 15995a352474 and its 6.11-rc renames)
    memmap_counter: bool
    year: str = ""
    summary: str = ""
    #: nr_memmap_pages counts what ``section_nr_vmemmap_pages`` returns (the 2026 fix) rather
    #: than the full ``DIV_ROUND_UP(nr_pages * sizeof(struct page), PAGE_SIZE)``
    memmap_counter_dedup: bool = False
    #: the struct page / folio / pageflags table of :mod:`vmemlab.page`: "5.17" (5.7-5.17),
    #: "5.18" (5.18-6.1), "6.6", "6.12"; a committed ``vmemlab/layouts/<name>.json`` generated
    #: from the kernel's debug info replaces the source-derived table when present
    struct_layout: str = "5.17"
    #: arches whose Kconfig selects the arch gate of ``vmemmap_can_optimize``; ``None``: no gate
    #: (5.19-6.3 mainline).  6.1.y: ARCH_WANT_HUGETLB_PAGE_OPTIMIZE_VMEMMAP (x86_64); 6.6:
    #: ARCH_WANT_OPTIMIZE_DAX_VMEMMAP (x86_64, PPC_RADIX_MMU); 6.12 adds riscv; arm64 never
    dax_gate_arches: tuple[str, ...] | None = None
    #: arches selecting the HugeTLB vmemmap optimisation Kconfig
    hvo_arches: tuple[str, ...] = ("x86_64",)
    #: ``NR_RESET_STRUCT_PAGE`` of ``reset_struct_pages`` (0: 5.14-5.17 have no reset), and
    #: whether it copies struct page N into each of the first N in a loop (5.19) rather than
    #: ``memcpy`` of the block N..2N-1 onto 0..N-1 (6.1, 6.6, 6.12)
    nr_reset_struct_page: int = 0
    reset_loop: bool = False
    #: HVO copies the head vmemmap page into a new page (6.2, 11aad2631bf7)
    hvo_head_copy: bool = False
    #: how a HugeTLB folio is marked: "dtor" (page[1].compound_dtor = HUGETLB_PAGE_DTOR, <=6.1),
    #: "pg_hugetlb" (6.6.y page type bit 0x800 cleared in the head's page_type), "pgty" (6.12:
    #: page_type = PGTY_hugetlb << 24)
    hugetlb_marker: str = "dtor"
    #: arm64 4K ``vmemmap_populate`` maps a partial section with base pages (stable backport
    #: seen in 6.1.192, 6.6.87, 6.12.33); without it a partial section gets a whole PMD block
    arm64_partial_basepages: bool = False
    #: the 2026 rework: ``vmemmap_shared_tail_page(order, zone)`` for device-dax and HVO
    #: (:mod:`vmemlab.vmemmap_optimization`)
    shared_tail: bool = False


KERNELS: dict[str, Kernel] = {
    "v3": Kernel("v3", True, True, "nr>1", True, "head-once", 2, "page2", "5.17", False,
                 "2021-07", "the posted v3 series: tail reuse + PMD reuse + unmerged head-once "
                 "GUP", struct_layout="5.17"),
    "5.17": Kernel("5.17", True, False, None, False, "per-subpage-head", 2, "page2", "5.17",
                   False, "2022-03", "compound devmaps, no vmemmap deduplication",
                   struct_layout="5.17"),
    "5.19": Kernel("5.19", True, True, "nr>1", False, "per-subpage-head", 1, "page1", "5.17",
                   False, "2022-07", "tail-page vmemmap deduplication merged",
                   struct_layout="5.18", hvo_arches=("x86_64", "arm64-4k", "arm64-16k",
                                                     "arm64-64k"),
                   nr_reset_struct_page=3, reset_loop=True),
    "6.1": Kernel("6.1", True, True, "reserve_nr", False, "per-subpage-head", 1, "page1", "5.17",
                  False, "2022-12", "Debian bookworm 6.1.192: 5.18 struct page, HVO without "
                  "head copy, backported vmemmap_can_optimize",
                  struct_layout="5.18", dax_gate_arches=("x86_64",), nr_reset_struct_page=3,
                  arm64_partial_basepages=True),
    "6.6": Kernel("6.6", True, True, "reserve_nr", False, "per-subpage-head", 1, "page1",
                  "folio", False, "2023-10",
                  "vmemmap_can_optimize with VMEMMAP_RESERVE_NR (6.6.87)",
                  struct_layout="6.6", dax_gate_arches=("x86_64", "ppc64-radix-64k"),
                  nr_reset_struct_page=3, hvo_head_copy=True, hugetlb_marker="pg_hugetlb",
                  arm64_partial_basepages=True),
    "6.12": Kernel("6.12", True, True, "reserve_nr", False, "per-subpage-head", 1, "page1",
                   "folio", True, "2024-11",
                   "6.12 folio layout, nr_memmap_pages counting the full memmap (6.12.0-6.12.10x)",
                   struct_layout="6.12", dax_gate_arches=("x86_64", "ppc64-radix-64k", "riscv"),
                   nr_reset_struct_page=3, hvo_head_copy=True, hugetlb_marker="pgty",
                   arm64_partial_basepages=True),
    "6.12.117": Kernel("6.12.117", True, True, "reserve_nr", False, "per-subpage-head", 1,
                       "page1", "folio", True, "2026",
                       "6.12 folio layout + nr_memmap_pages counting the deduplicated memmap "
                       "(2026 fix)",
                       memmap_counter_dedup=True, struct_layout="6.12",
                       dax_gate_arches=("x86_64", "ppc64-radix-64k", "riscv"),
                       nr_reset_struct_page=0, hvo_head_copy=True, hugetlb_marker="pgty",
                       arm64_partial_basepages=True),
    "mm-2026": Kernel("mm-2026", True, True, "reserve_nr", False, "per-subpage-head", 1,
                      "page1", "folio", True, "2026-09",
                      "shared tail page per zone and order: one vmemmap page per compound page",
                      memmap_counter_dedup=True, shared_tail=True, struct_layout="6.12",
                      dax_gate_arches=("x86_64", "ppc64-radix-64k", "riscv"),
                      nr_reset_struct_page=3, hvo_head_copy=True, hugetlb_marker="pgty",
                      arm64_partial_basepages=True),
}

DEFAULT_KERNEL = "6.6"

#: GUP variant "base": device pages before compound devmaps (pre-5.17).  Not a vmemmap variant,
#: so it is offered to the GUP model only.
PRE_COMPOUND = Kernel("5.16", False, False, None, False, "base", 2, "page2", "5.17", False,
                      "2022-01", "base-page devmaps (before compound pagemaps)",
                      struct_layout="5.17")


def kernel_names() -> list[str]:
    """Every name :func:`get_kernel` accepts: ``5.16`` (base-page devmaps, before compound
    pagemaps: the "before" of the cover letter's GUP table) and the :data:`KERNELS` variants.
    The engine, the planner and the CLI accept all of them; 5.16 is kept out of
    :data:`KERNELS` because it has no vmemmap optimisation to compare."""
    return [PRE_COMPOUND.name, *KERNELS]


def get_kernel(kernel: str | Kernel = DEFAULT_KERNEL) -> Kernel:
    """Look up a :class:`Kernel` variant by name (one of :func:`kernel_names`)."""
    if isinstance(kernel, Kernel):
        return kernel
    if kernel == PRE_COMPOUND.name:
        return PRE_COMPOUND
    try:
        return KERNELS[str(kernel)]
    except (KeyError, TypeError):
        raise ParameterError("kernel", kernel, "one of " + ", ".join(kernel_names())) from None
