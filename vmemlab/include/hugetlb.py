"""include/linux/hugetlb.h and mm/hugetlb_vmemmap.h: what both HugeTLB Vmemmap Optimization
implementations (the pre-2026 one and the 2026 shared-tail one, both in
:mod:`vmemlab.hugetlb_vmemmap`) and the struct page layer share: the HugeTLB folio the model
allocates, the per-machine HugeTLB state (``m.hugetlb``), the report of one optimize/restore,
the HugeTLB orders an arch maps and the vmemmap span of a folio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .mm_types import SIZEOF_STRUCT_PAGE

if TYPE_CHECKING:
    from ..machine import Machine

#: include/linux/hugetlb.h (<= 6.1; 6.1.192 read): ``enum { SUBPAGE_INDEX_SUBPOOL = 1,
#: SUBPAGE_INDEX_CGROUP, SUBPAGE_INDEX_CGROUP_RSVD, SUBPAGE_INDEX_HWPOISON, __NR_USED_SUBPAGE }``
#: with CONFIG_CGROUP_HUGETLB and CONFIG_MEMORY_FAILURE (Debian sets both)
SUBPAGE_INDEX_SUBPOOL, SUBPAGE_INDEX_CGROUP, SUBPAGE_INDEX_CGROUP_RSVD, SUBPAGE_INDEX_HWPOISON = (
    1, 2, 3, 4)


@dataclass
class HugetlbFolio:
    """One HugeTLB page carved from boot RAM: ``[head_pfn, head_pfn + (1 << order))``."""

    head_pfn: int
    order: int
    optimized: bool = False
    dissolved: bool = False
    #: the frame the remapped tail PTEs point at while optimized
    reuse_frame: int = -1
    reserve: int = 0

    @property
    def nr_pages(self) -> int:
        return 1 << self.order


@dataclass
class HugetlbState:
    """``m.hugetlb``: HugeTLB pages allocated from boot RAM and the HVO static key."""

    folios: list[HugetlbFolio] = field(default_factory=list)
    #: ``hugetlb_optimize_vmemmap_key`` count (5.18+: one per optimized page)
    fake_head_key: int = 0
    #: "BUG: Bad page state" reports of dissolves whose free path rejected struct pages:
    #: (pfn, reason); such a HugeTLB page is not returned to the buddy allocator
    bad_pages: list[tuple[int, str]] = field(default_factory=list)
    #: head pfns of HugeTLB pages lost that way
    leaked: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class HvoReport:
    """What one ``hugetlb_vmemmap_optimize`` / ``restore`` did (pages of PAGE_SIZE)."""

    order: int
    vmemmap_pages: int
    reserve: int
    reused_vmemmap_page: int  #: index of the vmemmap page the tails now map (0 head, 1 tail)
    data_pages_freed: int  #: vmemmap data pages returned to the allocator (net of a head copy)
    split_pte_tables: int  #: PTE tables allocated by vmemmap_split_pmd
    head_copy: bool
    net_pages_saved: int  #: data_pages_freed - split_pte_tables

    def rows(self) -> list[tuple[str, str]]:
        return [("HugeTLB page", f"order {self.order} ({self.vmemmap_pages} vmemmap pages)"),
                ("kept / reused", f"{self.reserve} kept, tails map vmemmap page "
                                  f"{self.reused_vmemmap_page}"),
                ("data pages freed", str(self.data_pages_freed)),
                ("PTE tables for PMD splits", str(self.split_pte_tables)),
                ("net pages saved", str(self.net_pages_saved))]


def _state(m: Machine) -> HugetlbState:
    if m.hugetlb is None:
        m.hugetlb = HugetlbState()
    return m.hugetlb


def hugetlb_orders(m: Machine) -> tuple[int, ...]:
    """HugeTLB page orders the arch maps: PMD and (if the arch has one) PUD size
    (x86_64: 2 MiB and, with pdpe1gb, 1 GiB)."""
    a = m.arch
    out = [a.PMD_SHIFT - a.page_shift]
    if a.PUD_SHIFT is not None:
        out.append(a.PUD_SHIFT - a.page_shift)
    return tuple(out)


def _vmemmap_span(m: Machine, folio: HugetlbFolio) -> tuple[int, int]:
    """vpns ``[start, end)`` of the folio's struct pages."""
    a = m.arch
    start = folio.head_pfn * SIZEOF_STRUCT_PAGE >> a.page_shift
    return start, start + (folio.nr_pages * SIZEOF_STRUCT_PAGE >> a.page_shift)
