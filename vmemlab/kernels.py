"""Kernel variants the model can follow (kernel-facts.md §0 has the timeline).

=========  ===================================================================================
``v3``     The posted series "mm, sparse-vmemmap: Introduce compound pagemaps" v3 (Jul 2021):
           compound devmaps, tail-page vmemmap reuse, PMD-level reuse for PUD-sized compound
           pages (patch 14, never merged) and head-page GUP refcounting (patch 13, never merged).
``5.17``   Compound devmap pages merged (``vmemmap_shift``), no vmemmap deduplication yet.
``5.19``   Deduplication merged (4917f55b4ef9): ``is_power_of_2(sizeof(struct page)) && pgmap &&
           pgmap_vmemmap_nr(pgmap) > 1 && !altmap``; ``compound_nr_pages`` (6fd3620b3428).
``6.6``    ``vmemmap_can_optimize()`` (6.4, 87a7ae75d738) with ``VMEMMAP_RESERVE_NR`` and arch
           overrides (6.6): optimise when the compound memmap is more than 2 pages.  The default;
           it also stands for later 6.x kernels (6.12 included) where this rule is unchanged.
           ``nr_memmap_pages`` (6.11+) counts the full memmap, deduplicated or not.
``6.12.117`` The 6.6 rules plus Muchun Song's 2026 fix "fix DAX vmemmap accounting with
           optimization" (``section_nr_vmemmap_pages``, Cc: stable): ``nr_memmap_pages`` counts
           the deduplicated memmap.  Measured in Debian's 6.12.117 (6.12.107 and later showed the
           same; 6.12.100 did not) -- see ``validation/``.
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
    #: ``vmemmap_can_optimize`` rule: "nr>1" (5.19-6.3) or "reserve_nr" (6.6+)
    can_optimize_rule: str | None
    #: the v3 series' PMD-level reuse of PTE tables for PUD-sized compound pages (patch 14)
    pmd_reuse: bool
    #: ``GUP`` variant: "base" (pre-5.17), "per-subpage-head" (5.17-~6.14), "head-once" (patch 13)
    gup: str
    #: HugeTLB vmemmap pages kept per HugeTLB page by HVO (5.14-5.17: 2; 5.18+: 1); 0 = no HVO
    hvo_reserve_pages: int
    #: where the pin count of a compound page lives: "page2" (5.7-5.17, order > 1) or "page1"
    pincount: str
    #: struct page layout: "5.17" (compound_dtor/compound_order in page[1]) or "folio" (6.x)
    layout: str
    #: /proc/vmstat nr_memmap_pages exists (6.11+); the 6.6 variant stands for 6.11-6.x too
    memmap_counter: bool
    year: str = ""
    summary: str = ""
    #: nr_memmap_pages counts what ``section_nr_vmemmap_pages`` returns (the 2026 fix) rather
    #: than the full ``DIV_ROUND_UP(nr_pages * sizeof(struct page), PAGE_SIZE)``
    memmap_counter_dedup: bool = False
    #: the 2026 rework: ``vmemmap_shared_tail_page(order, zone)`` for device-dax and HVO
    #: (:mod:`vmemlab.vmemmap_optimization`)
    shared_tail: bool = False


KERNELS: dict[str, Kernel] = {
    "v3": Kernel("v3", True, True, "nr>1", True, "head-once", 2, "page2", "5.17", False,
                 "2021-07", "the posted v3 series: tail reuse + PMD reuse + head-once GUP"),
    "5.17": Kernel("5.17", True, False, None, False, "per-subpage-head", 2, "page2", "5.17",
                   False, "2022-03", "compound devmaps, no vmemmap deduplication"),
    "5.19": Kernel("5.19", True, True, "nr>1", False, "per-subpage-head", 1, "page1", "5.17",
                   False, "2022-07", "tail-page vmemmap deduplication merged"),
    "6.6": Kernel("6.6", True, True, "reserve_nr", False, "per-subpage-head", 1, "page1",
                  "folio", True, "2023-10",
                  "vmemmap_can_optimize with VMEMMAP_RESERVE_NR (stands for 6.6-6.x)"),
    "6.12.117": Kernel("6.12.117", True, True, "reserve_nr", False, "per-subpage-head", 1,
                       "page1", "folio", True, "2026",
                       "6.6 rules + nr_memmap_pages counting the deduplicated memmap (2026 fix)",
                       memmap_counter_dedup=True),
    "mm-2026": Kernel("mm-2026", True, True, "reserve_nr", False, "per-subpage-head", 1,
                      "page1", "folio", True, "2026-09",
                      "shared tail page per zone and order: one vmemmap page per compound page",
                      memmap_counter_dedup=True, shared_tail=True),
}

DEFAULT_KERNEL = "6.6"

#: GUP variant "base": device pages before compound devmaps (pre-5.17).  Not a vmemmap variant,
#: so it is offered to the GUP model only.
PRE_COMPOUND = Kernel("5.16", False, False, None, False, "base", 2, "page2", "5.17", False,
                      "2022-01", "base-page devmaps (before compound pagemaps)")


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
