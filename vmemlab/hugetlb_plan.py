"""Capacity planning for HugeTLB pools: their struct pages with and without HVO.

The struct pages of a HugeTLB pool are part of System RAM's memmap, populated at boot whether
or not the pool exists.  What HugeTLB Vmemmap Optimization (``mm/hugetlb_vmemmap.c``, modelled
in :mod:`vmemlab.hugetlb_vmemmap`) changes is how much of that memmap stays:

* without HVO every HugeTLB page keeps ``V = nr_pages * sizeof(struct page) / PAGE_SIZE``
  vmemmap pages (8 for 2 MiB, 4096 for 1 GiB on x86_64);
* with HVO it keeps ``kernel.hvo_reserve_pages`` of them (1 from 5.18, 2 in 5.14-5.17; the 6.2+
  head copy replaces page 0 by a new page, so still 1) and frees the rest;
* in the 2026 shared-tail rework (variant ``mm-2026``, :mod:`vmemlab.vmemmap_optimization`) it
  frees all ``V`` pages, keeps a new copy of the head vmemmap page, and maps the other ``V - 1``
  PTEs onto the zone's shared tail page for the page's order (``vmemmap_shared_tail_page``),
  which the pool's first optimised page allocates and every later one reuses: one page more
  for the whole pool (``shared_tail_pages``), not per page;
* but it first splits every PMD leaf of the vmemmap the page's remapped range touches
  (``vmemmap_split_pmd``): one PTE table per 2 MiB of vmemmap VA, i.e. per **region** of
  ``PMD_SIZE / sizeof(struct page) * PAGE_SIZE`` bytes of RAM (128 MiB on x86_64: a section).
  Restore does not merge it back.

The split count is where the kernel's placement matters, and the planner gives a range:
``packed`` (best: pages fill the fewest regions, ``ceil(n / pages_per_region)`` for pages
smaller than a region) and ``spread`` (worst: each page in its own region, at most as many as
RAM has).  A 1 GiB page spans 8 regions wholly, so both are ``8 * n``.  ``packed`` is the
default figure.

These are closed forms of the engine's arithmetic; ``tests/test_hugetlb_plan.py`` runs the
engine (allocate, optimise, count frames and tables) on small machines and checks that every
figure here equals what the engine spends, for each kernel variant, both placements, 2 MiB and
1 GiB pages.

Sizes per arch (``arch_hugetlb_valid_size``): x86_64 (``arch/x86/mm/hugetlbpage.c``)
``PMD_SIZE`` and, with ``X86_FEATURE_GBPAGES`` (``pdpe1gb``), ``PUD_SIZE``; arm64
(``arch/arm64/mm/hugetlbpage.c``) ``PUD_SIZE`` (4K pages only, ``pud_sect_supported()``),
``CONT_PMD_SIZE``, ``PMD_SIZE`` and ``CONT_PTE_SIZE``.  HVO is offered where the kernel
variant's arch selects the HugeTLB vmemmap Kconfig (``Kernel.hvo_arches``, as the engine:
5.17 ``HUGETLB_PAGE_FREE_VMEMMAP depends on X86_64``; 5.19 x86_64 and arm64; 6.1-6.12
x86_64 of the arches modelled, arm64's turned off by 060a2c92d1b6; kernel-facts §0a 9);
elsewhere the "with HVO" figures equal the "without" ones and the plan says why.

Boot-time vs runtime pools: the arithmetic is the same (boot-time pages are optimised by
``hugetlb_vmemmap_optimize_folios`` after ``gather_bootmem_prealloc``; runtime ones when
``nr_hugepages`` grows).  What differs is the switch (``hugetlb_free_vmemmap=`` on the command
line for boot-time pages, ``vm.hugetlb_optimize_vmemmap`` for pages allocated after it is set)
and what ``/proc/vmstat`` shows: a runtime pool moves ``nr_memmap_boot_pages`` /
``nr_memmap_pages`` by the deltas reported here; a boot-time pool's HVO is already inside the
first values userspace reads.  "Pre-HVO" of boot-time gigantic pages (6.15,
``CONFIG_SPARSEMEM_VMEMMAP_PREINIT``) is not modelled: no modelled variant has it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .arch import Arch, get_arch
from .errors import ParameterError
from .kernels import Kernel, get_kernel
from .units import format_size, parse_size

PLACEMENTS = ("packed", "spread")
WHEN = ("boot", "runtime")


def hugetlb_sizes(arch: str | Arch, gbpages: bool = True) -> tuple[int, ...]:
    """HugeTLB page sizes ``arch_hugetlb_valid_size`` accepts on ``arch`` (bytes, ascending).
    x86_64 offers 1 GiB only with ``gbpages`` (the CPU's pdpe1gb)."""
    a = get_arch(arch)
    if a.name == "x86_64":
        return (a.PMD_SIZE, a.PUD_SIZE) if gbpages else (a.PMD_SIZE,)
    if a.name.startswith("arm64"):
        # CONT_PTE_SHIFT / CONT_PMD_SHIFT (arch/arm64/include/asm/pgtable-hwdef.h):
        # 16 entries with 4K pages, 128 PTEs / 32 PMDs with 16K, 32 / 32 with 64K
        cont_pte, cont_pmd = {12: (16, 16), 14: (128, 32), 16: (32, 32)}[a.page_shift]
        sizes = {a.PAGE_SIZE * cont_pte, a.PMD_SIZE, a.PMD_SIZE * cont_pmd}
        if a.page_shift == 12 and a.PUD_SIZE is not None:         # pud_sect_supported()
            sizes.add(a.PUD_SIZE)
        return tuple(sorted(sizes))
    return (a.PMD_SIZE,) + (() if a.PUD_SIZE is None else (a.PUD_SIZE,))


def parse_pool(spec: str | tuple[int | str, int]) -> tuple[int, int]:
    """``"2M:1024"`` (or ``("2M", 1024)``) -> (page size in bytes, number of pages)."""
    if isinstance(spec, tuple):
        size, count = spec
    else:
        parts = str(spec).split(":")
        if len(parts) != 2:
            raise ParameterError("hugetlb", spec, "SIZE:COUNT, e.g. 2M:1024 or 1G:4")
        size, count = parts
    try:
        n = int(count)
    except (TypeError, ValueError):
        raise ParameterError("hugetlb", spec, "SIZE:COUNT with COUNT a whole number of pages, "
                             "e.g. 2M:1024") from None
    if n < 0:
        raise ParameterError("hugetlb", spec, "a COUNT of 0 or more pages")
    return parse_size(size, "hugetlb size"), n


@dataclass
class HugetlbPlan:
    """What one HugeTLB pool's struct pages cost (page counts in ``PAGE_SIZE`` pages)."""

    arch: str
    kernel: str
    page_size: int
    hugepage_size: int
    count: int
    when: str
    hvo: bool                   #: HVO asked for
    optimised: bool             #: HVO applies (asked, and the arch and kernel have it)
    why_not: str | None         #: why HVO does not apply, if asked and it does not
    head_copy: bool             #: 6.2+ head vmemmap page copied to a new page
    struct_page_bytes: int      #: count * nr_pages * sizeof(struct page)
    vmemmap_pages_per_page: int
    kept_per_page: int
    pages_per_region: int       #: HugeTLB pages whose vmemmap one PMD leaf maps (0: > 1 region)
    regions_per_page: int       #: PMD leaves one page's vmemmap spans (1 for pages <= region)
    pool_bytes: int
    ram: int | None
    without_hvo_pages: int      #: vmemmap pages the pool's struct pages occupy without HVO
    kept_pages: int             #: vmemmap data pages left with HVO (or without, if it is off)
    freed_pages: int            #: vmemmap data pages HVO returned to the allocator
    split_pte_tables: dict[str, int]   #: by placement
    ram_pages: dict[str, int]          #: kept + split tables, by placement
    saved_pages: dict[str, int]        #: without_hvo_pages - ram_pages, by placement
    vmstat_delta: dict[str, int]       #: runtime: nr_memmap_boot_pages / nr_memmap_pages moves
    placement: str = "packed"
    #: what dissolving the pool moves: ``vmemmap_remap_alloc`` allocates the freed vmemmap
    #: pages again (``memmap_pages_add``); the split PTE tables and the head copy stay
    restore_vmstat_delta: dict[str, int] = field(default_factory=dict)
    #: boot-memmap pages HVO gives back (``free_vmemmap_page`` -> ``free_bootmem_page`` for
    #: PageReserved pages): /proc/meminfo MemTotal grows by them, on every kernel with HVO
    boot_pages_freed: int = 0
    #: 2026 rework (``mm-2026``): the zone's shared tail page for this order
    #: (``vmemmap_shared_tail_page``), allocated by the first optimised page of the pool and kept
    #: for the life of the zone: 1 for a pool of a size the zone has not optimised yet, else 0
    shared_tail_pages: int = 0

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain data."""
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) rows for a readable table."""
        ps, pl = self.page_size, self.placement
        other = "spread" if pl == "packed" else "packed"

        def pages(n: int) -> str:
            return f"{n} ({format_size(n * ps)})"

        rows = [
            ("HugeTLB pool", f"{self.count} x {format_size(self.hugepage_size)} "
                             f"({format_size(self.pool_bytes)}), {self.when}"),
            ("arch / kernel", f"{self.arch} / {self.kernel}"),
            ("HVO", ("on" if self.optimised else "off") +
             (f" (asked, but {self.why_not})" if self.why_not else "") +
             (", head page copied (6.2+)" if self.head_copy else "")),
            ("struct pages", f"{self.count * (self.hugepage_size // ps)} "
                             f"({format_size(self.struct_page_bytes)})"),
            ("vmemmap without HVO", pages(self.without_hvo_pages)),
            ("vmemmap kept", f"{self.kept_pages} ({self.kept_per_page} per page)"
             + (f" + {self.shared_tail_pages} shared tail page" if self.shared_tail_pages
                else "")),
            (f"PTE tables for PMD splits ({pl})", str(self.split_pte_tables[pl])),
            (f"  range: {other}", str(self.split_pte_tables[other])),
            (f"RAM for the pool's struct pages ({pl})", pages(self.ram_pages[pl])),
            (f"  range: {other}", pages(self.ram_pages[other])),
            (f"saved by HVO ({pl})", pages(self.saved_pages[pl])),
        ]
        if "measured" in self.split_pte_tables:
            rows.insert(8, ("  measured placement", str(self.split_pte_tables["measured"])))
        if self.vmstat_delta:
            rows.append(("vmstat on allocation" if self.when == "runtime"
                         else "vmstat (already in boot values)",
                         ", ".join(f"{k} {v:+d}" for k, v in self.vmstat_delta.items())))
        if self.ram:
            rows.append(("pool share of RAM", f"{100 * self.pool_bytes / self.ram:.2f}%"))
        return rows

    def table(self) -> str:
        """The rows as aligned text."""
        w = max(len(k) for k, _ in self.rows())
        return "\n".join(f"{k:<{w}}  {v}" for k, v in self.rows())


def _why_no_hvo(a: Arch, k: Kernel, vmemmap_pages: int) -> str | None:
    if k.hvo_reserve_pages <= 0:
        return f"kernel {k.name} has no HVO"
    if a.name not in k.hvo_arches:
        return (f"{a.name} does not select ARCH_WANT_OPTIMIZE_HUGETLB_VMEMMAP (before 6.6 "
                f"ARCH_WANT_HUGETLB_PAGE_OPTIMIZE_VMEMMAP) in kernel {k.name}: "
                f"{', '.join(k.hvo_arches)} only")
    if a.struct_page_size & (a.struct_page_size - 1):
        return "sizeof(struct page) is not a power of two"
    if vmemmap_pages <= k.hvo_reserve_pages:
        return (f"the page's memmap is {vmemmap_pages} vmemmap page(s), nothing beyond the "
                f"{k.hvo_reserve_pages} kept")
    return None


def plan_hugetlb(pool: str | tuple[int | str, int], arch: str | Arch = "x86_64",
                 kernel: str | Kernel = "6.6", hvo: bool = True, when: str = "runtime",
                 ram: int | str | None = None, placement: str = "packed",
                 gbpages: bool = True, head_copy: bool | None = None,
                 heads: list[int] | None = None,
                 shared_tail_allocated: bool = False) -> HugetlbPlan:
    """Struct-page cost of a HugeTLB pool (``"2M:1024"``), with HVO on or off.

    :param pool: ``SIZE:COUNT`` or ``(size, count)``
    :param hvo: HVO asked for (``vm.hugetlb_optimize_vmemmap=1`` / ``hugetlb_free_vmemmap=on``)
    :param when: ``"boot"`` (``hugepages=`` on the command line) or ``"runtime"``
    :param ram: the machine's RAM: refuses pools larger than it; bounds the spread placement
    :param placement: which end of the range is the headline figure (``packed`` or ``spread``)
    :param gbpages: x86_64 CPU has pdpe1gb (1 GiB HugeTLB pages exist only then)
    :param head_copy: 6.2+ head copy (default: the variant's ``hvo_head_copy``, as the engine;
        the 2026 rework always copies the head)
    :param heads: the pages' head pfns where known (``/proc/kpageflags`` of a real machine):
        adds a ``"measured"`` placement, the PMD leaves those pages' vmemmap really spans
    :param shared_tail_allocated: ``mm-2026`` only: the zone already has the shared tail page
        of this order (an earlier pool of the same size was optimised), so none is allocated
    """
    a, k = get_arch(arch), get_kernel(kernel)
    size, n = parse_pool(pool)
    if when not in WHEN:
        raise ParameterError("when", when, "'boot' (hugepages= at boot) or 'runtime'")
    if placement not in PLACEMENTS:
        raise ParameterError("placement", placement, "'packed' (best) or 'spread' (worst)")
    sizes = hugetlb_sizes(a, gbpages)
    if size not in sizes:
        extra = "" if gbpages or a.name != "x86_64" else " (1 GiB needs a CPU with pdpe1gb)"
        raise ParameterError("hugetlb", pool, f"a HugeTLB page size {a.name} offers: " +
                             ", ".join(format_size(s) for s in sizes) + extra)
    ram_b = None if ram is None else parse_size(ram, "ram")
    if ram_b is not None and n * size > ram_b:
        raise ParameterError("hugetlb", pool, f"at most {ram_b // size} pages of "
                             f"{format_size(size)} in {format_size(ram_b)} of RAM")
    ps, sps = a.PAGE_SIZE, a.struct_page_size
    nr_pages = size // ps
    sp_bytes = n * nr_pages * sps
    vmemmap = nr_pages * sps // ps                         # whole vmemmap pages per page
    without = -(-sp_bytes // ps) if vmemmap == 0 else n * vmemmap
    why = _why_no_hvo(a, k, vmemmap) if hvo else None
    optimised = hvo and why is None
    region = (a.PMD_SIZE // sps) * ps if a.vmemmap_hugepages else 0
    if optimised:
        reserve = k.hvo_reserve_pages
        hc = (reserve == 1 and k.hvo_head_copy) if head_copy is None else head_copy
        if k.shared_tail and not hc:
            # mm/hugetlb_vmemmap.c of the rework: the first PTE always maps a new head copy
            raise ParameterError("head_copy", head_copy, "True or None: the 2026 shared-tail "
                                 "HVO always copies the head vmemmap page")
        if hc and reserve != 1:
            raise ParameterError("head_copy", head_copy, "False: the 6.2 head copy needs 5.18+ "
                                 "HVO (one kept vmemmap page)")
        kept, freed = n * reserve, n * (vmemmap - reserve)
        # vmemmap_shared_tail_page(h->order, folio_zone(folio)): allocated once per zone+order
        shared = 1 if k.shared_tail and n and not shared_tail_allocated else 0
        if region == 0:                     # vmemmap mapped with base pages: nothing to split
            per_region, per_page, splits = 0, 0, {"packed": 0, "spread": 0}
        elif size >= region:
            per_region, per_page = 0, size // region
            splits = {"packed": n * per_page, "spread": n * per_page}
        else:
            per_region, per_page = region // size, 1
            worst = n if ram_b is None else min(n, max(1, ram_b // region))
            splits = {"packed": -(-n // per_region), "spread": worst}
        if k.memmap_counter:
            # free_vmemmap_page: PageReserved (boot memmap) pages -> nr_memmap_boot_pages;
            # the head copy is a new page -> nr_memmap_pages (kernel-facts §12)
            delta = {"nr_memmap_boot_pages": -(freed + (n if hc else 0)),
                     "nr_memmap_pages": n if hc else 0}
        else:
            delta = {}
    else:
        hc, kept, freed, shared = False, without, 0, 0
        per_region = region // size if region and size < region else 0
        per_page = (size // region if size >= region else 1) if region else 0
        splits = {"packed": 0, "spread": 0}
        delta = {}
    if heads is not None:
        if len(heads) != n:
            raise ParameterError("heads", len(heads), f"one head pfn per page ({n})")
        if optimised and region:
            first = [(h << a.page_shift) // region for h in heads]
            per = max(1, size // region)
            splits["measured"] = len({r + i for r in first for i in range(per)})
        else:
            splits["measured"] = 0
    ram_pages = {p: kept + shared + v for p, v in splits.items()}
    return HugetlbPlan(
        arch=a.name, kernel=k.name, page_size=ps, hugepage_size=size, count=n, when=when,
        hvo=hvo, optimised=optimised, why_not=why, head_copy=hc, struct_page_bytes=sp_bytes,
        vmemmap_pages_per_page=vmemmap, kept_per_page=(k.hvo_reserve_pages if optimised
                                                        else vmemmap),
        pages_per_region=per_region, regions_per_page=per_page, pool_bytes=n * size, ram=ram_b,
        without_hvo_pages=without, kept_pages=kept, freed_pages=freed, split_pte_tables=splits,
        ram_pages=ram_pages, saved_pages={p: without - v for p, v in ram_pages.items()},
        vmstat_delta=delta, placement=placement,
        restore_vmstat_delta={"nr_memmap_pages": freed} if delta else {},
        boot_pages_freed=freed + (n if hc else 0), shared_tail_pages=shared)


def boot_memmap_pages(ram: int | str, arch: str | Arch = "x86_64") -> dict[str, int]:
    """The boot memmap of System RAM ``[0, ram)`` as the engine's ``Machine(ram=...)`` boots it
    (``sparse_init``: whole sections, vmemmap from memblock): data pages and the vmemmap page
    tables below the (always present) top level, and ``nr_memmap_boot_pages`` as 6.11+ counts
    it: ``DIV_ROUND_UP(end - start, PAGE_SIZE)`` per section (``__populate_section_memmap``,
    15995a352474 "mm: report per-page metadata information").  That equals the data pages
    where a section's memmap is whole pages (x86_64, arm64); on ppc64 radix 64K a section's
    memmap is 16 KiB, counted as one page, while 128 sections share one 2 MiB block: the counter
    reads 4x the pages the memmap really takes."""
    a = get_arch(arch)
    ram_b = parse_size(ram, "ram")
    nsec = ram_b >> a.section_size_bits
    span = nsec * a.PAGES_PER_SECTION * a.struct_page_size  # vmemmap VA, from VMEMMAP_START
    # ppc64 radix maps the vmemmap in PMD_SIZE blocks whatever the kernel (ppc64_vmemmap_populate_2m
    # before 6.6, radix__vmemmap_populate from 6.6, both in vmemlab.powerpc_vmemmap): the memmap of
    # one 16 MiB section is a quarter of a 64 KiB page, so the boot memmap is whole 2 MiB blocks
    pmd_blocks = a.vmemmap_hugepages or a.name == "ppc64-radix-64k"
    if pmd_blocks:
        span = -(-span // a.PMD_SIZE) * a.PMD_SIZE
    data = -(-span // a.PAGE_SIZE)
    lv = a.levels
    first = 1 if pmd_blocks else 0                   # PMD leaves, or PTEs
    tables = {f"{lv[i].name}_tables": -(-span // (1 << lv[i + 1].shift)) if span else 0
              for i in range(first, len(lv) - 1)}
    counted = nsec * -(-(a.PAGES_PER_SECTION * a.struct_page_size) // a.PAGE_SIZE)
    return {"data": data, **tables, "pagetables": sum(tables.values()),
            "nr_memmap_boot_pages": counted}
