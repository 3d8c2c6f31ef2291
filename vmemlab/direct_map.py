"""The direct (linear) map of hot-added memory: what ``arch_add_memory()`` spends on page tables.

Hot-adding a device-dax namespace maps its range twice: the vmemmap (its struct pages, the rest
of vmemlab) and the direct map (``__va(phys)``), which ``arch_add_memory()`` creates before
``__add_pages()``.  The direct map's data is the namespace itself; its *cost* is page-table
pages, and how many depends on the largest page size the arch and configuration allow there.

x86_64 (``arch/x86/mm/init_64.c``: ``arch_add_memory`` -> ``init_memory_mapping`` ->
``kernel_physical_mapping_init`` -> ``phys_p4d_init`` / ``phys_pud_init`` / ``phys_pmd_init``;
``arch/x86/mm/init.c`` ``split_mem_range`` chooses the page-size mask per piece).  The
structure is the same from 4.x to 6.x: read in the ~5.0 copy of ``torvalds/linux`` kept by the
search index and in the 6.x form (``pgprot_t prot, bool init`` arguments) in stable patches:

* a PUD slot (1 GiB) wholly inside the range is a 1 GiB leaf when ``page_size_mask`` has
  ``PG_LEVEL_1G`` -- ``direct_gbpages`` (``CONFIG_X86_DIRECT_GBPAGES``, default y) and the CPU
  flag ``pdpe1gb`` (``X86_FEATURE_GBPAGES``);
* any other touched PUD slot whose entry is empty gets a PMD table (``alloc_low_page``), in which
  wholly covered 2 MiB slots are 2 MiB leaves (``PG_LEVEL_2M``, CPUs with PSE: all x86_64) and a
  partly covered one gets a PTE table;
* an empty PGD entry gets a PUD table (4-level paging: P4D folded).  With 5-level paging
  (``la57``; the harness guests run it, ``-cpu max``) a P4D entry covers the same 512 GiB and
  an empty one gets the PUD table; a new P4D table is needed once per 256 TiB, which the model
  does not count.

arm64 (``arch/arm64/mm/mmu.c``: ``arch_add_memory`` -> ``__create_pgd_mapping`` ->
``alloc_init_pud`` / ``alloc_init_cont_pmd`` / ``init_pmd`` / ``alloc_init_cont_pte``; read in
the index's 6.5-6.7 copy, the one with ``arm64_kfence_alloc_pool``):
``if (can_set_direct_map()) flags |= NO_BLOCK_MAPPINGS | NO_CONT_MAPPINGS``, and
``can_set_direct_map()`` (``arch/arm64/mm/pageattr.c``) is ``rodata_full ||
debug_pagealloc_enabled() || arm64_kfence_can_set_direct_map()`` (6.12 adds
``is_realm_world()``), with ``rodata_full = IS_ENABLED(CONFIG_RODATA_FULL_DEFAULT_ENABLED)``
(Kconfig default y; Debian keeps it).  So a packaged arm64 kernel maps hot-added memory with
**base pages**: a PTE table per 2 MiB, a PMD table per 1 GiB.  Booted with ``rodata=on`` (not
full), no DEBUG_PAGEALLOC and KFENCE off or early, it uses block mappings: 1 GiB PUD blocks with
4K pages (``pud_sect_supported()``), PMD blocks where aligned.

Measured (``validation/``, Debian 6.12.117 under qemu): with ``pdpe1gb`` a 1 GiB-aligned
namespace costs nothing here and every other touched 1 GiB slot one PMD table page; without
``pdpe1gb`` one page per GiB.  ``tests/test_direct_map.py`` checks this module against those
runs.  arm64, measured on Debian 6.12.117 arm64 under qemu-system-aarch64
(``validation/arm64_directmap.py``; its config has ``RODATA_FULL_DEFAULT_ENABLED=y`` and
``KFENCE_SAMPLE_INTERVAL=0``, so ``can_set_direct_map()`` is true twice over): hot-adding 4 GiB
took the memmap plus 2052 pages more (2048 PTE + 4 PMD tables, as modelled) with the packaged
defaults, and the memmap plus ~8 with ``rodata=on kfence.sample_interval=100`` (1 GiB blocks).

Hot-remove (``arch_remove_memory``) frees the emptied PTE and PMD tables on both arches; x86
4-level paging keeps PUD tables (``remove_p4d_table``).  The model's boot RAM is ``[0, ram)``,
mapped the same way at boot, so a namespace in a slot boot RAM already uses shares its tables.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .arch import Arch, get_arch
from .errors import ParameterError

#: direct-map variants per arch: name -> levels (by kernel name) that may hold a leaf, and what
#: the variant stands for.  The first name is the packaged kernel's behaviour (the default).
VARIANTS: dict[str, dict[str, tuple[tuple[str, ...], str]]] = {
    "x86_64": {
        "gbpages": (("pud", "pmd"), "1 GiB and 2 MiB pages: direct_gbpages and a CPU with "
                                    "pdpe1gb (X86_FEATURE_GBPAGES)"),
        "2m": (("pmd",), "2 MiB pages only: no pdpe1gb, or booted with nogbpages"),
    },
    "arm64-4k": {
        "pages": ((), "base pages: can_set_direct_map() (rodata=full, the Kconfig default; or "
                      "DEBUG_PAGEALLOC, late KFENCE)"),
        "blocks": (("pud", "pmd"), "1 GiB and 2 MiB blocks: rodata=on/off, no DEBUG_PAGEALLOC, "
                                   "KFENCE off or early"),
    },
    "arm64-16k": {
        "pages": ((), "base pages: can_set_direct_map() (the packaged default)"),
        "blocks": (("pmd",), "32 MiB PMD blocks (no PUD blocks without 4K pages)"),
    },
    "arm64-64k": {
        "pages": ((), "base pages: can_set_direct_map() (the packaged default)"),
        "blocks": (("pmd",), "512 MiB PMD blocks"),
    },
}


def default_variant(arch: str | Arch) -> str | None:
    """The packaged kernel's direct-map variant on ``arch`` (None: not modelled there)."""
    a = get_arch(arch)
    v = VARIANTS.get(a.name)
    return None if v is None else next(iter(v))


def check_variant(arch: str | Arch, variant: str | None) -> str:
    """``variant`` (or the arch default) if the model has it, else ParameterError."""
    a = get_arch(arch)
    if a.name not in VARIANTS:
        raise ParameterError("direct_map", variant, f"a direct-map model exists for "
                             f"{', '.join(VARIANTS)} only, not {a.name}")
    if variant is None:
        return default_variant(a)  # type: ignore[return-value]
    if variant not in VARIANTS[a.name]:
        raise ParameterError("direct_map", variant, f"one of {', '.join(VARIANTS[a.name])} on "
                             f"{a.name}")
    return variant


@dataclass
class DirectMapCost:
    """Page-table pages one ``arch_add_memory`` allocates for the direct map, by table level,
    and the bytes it maps with each leaf size (``/proc/meminfo`` DirectMap4k/2M/1G on x86)."""

    arch: str
    variant: str
    start: int
    end: int
    tables: dict[str, int] = field(default_factory=dict)
    mapped: dict[str, int] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        """Page-table pages allocated in all."""
        return sum(self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        """All fields and the page total as plain data."""
        return {**asdict(self), "pages": self.pages}


class DirectMap:
    """The kernel's direct-map page tables over physical memory, for one arch and variant.

    Tables are tracked by (level index, slot) of the entry pointing at them, so two hot-adds
    that share a 1 GiB slot share its PMD table, as they do in the kernel.  ``ram`` maps boot
    RAM ``[0, ram)`` first (its tables exist before any hot-add)."""

    def __init__(self, arch: str | Arch = "x86_64", variant: str | None = None,
                 ram: int | None = None) -> None:
        self.arch = get_arch(arch)
        self.variant = check_variant(self.arch, variant)
        self.leaf_levels = VARIANTS[self.arch.name][self.variant][0]
        #: level index -> slots of that level whose entry points at a table
        self._tables: dict[int, set[int]] = {li: set() for li in range(1, len(self.arch.levels))}
        if ram:
            self.add(0, ram)

    def add(self, start: int, end: int) -> DirectMapCost:
        """Map ``[start, end)`` (``arch_add_memory``) and return what it allocated."""
        a = self.arch
        if start < 0 or end <= start or (start | end) & (a.PAGE_SIZE - 1):
            raise ParameterError("range", (start, end), "a non-empty, page-aligned physical "
                                 "range")
        lv = a.levels
        tables = {f"{lv[i].name}_tables": 0 for i in range(len(lv) - 1)}
        mapped = {lv[0].name: 0, **{name: 0 for name in self.leaf_levels}}
        self._walk(start, end, len(lv) - 1, tables, mapped)
        return DirectMapCost(a.name, self.variant, start, end, tables,
                             {k: v for k, v in mapped.items()})

    def _walk(self, lo: int, hi: int, li: int, tables: dict[str, int],
              mapped: dict[str, int]) -> None:
        lv = self.arch.levels
        shift = lv[li].shift
        if li == 1:
            return self._walk_pmd(lo, hi, tables, mapped)
        for slot in range(lo >> shift, -(-hi >> shift)):
            a, b = max(lo, slot << shift), min(hi, (slot + 1) << shift)
            full = a == slot << shift and b == (slot + 1) << shift
            if full and lv[li].name in self.leaf_levels:
                mapped[lv[li].name] += b - a             # pud_set_huge / pmd_set_huge
                continue
            if slot not in self._tables[li]:              # alloc_low_page / pgtable_alloc
                self._tables[li].add(slot)
                tables[f"{lv[li - 1].name}_tables"] += 1
            self._walk(a, b, li - 1, tables, mapped)

    def _walk_pmd(self, lo: int, hi: int, tables: dict[str, int], mapped: dict[str, int]) -> None:
        """The PMD level of :meth:`_walk`, all slots at once: a wholly covered slot is a leaf
        where the variant allows one (``pmd_set_huge``); every other slot's entry gets a PTE
        table unless it has one (``alloc_low_page``), which maps base pages."""
        lv = self.arch.levels
        shift = lv[1].shift
        first, last = lo >> shift, -(-hi >> shift)       # slots touched
        full_lo, full_hi = -(-lo >> shift), hi >> shift   # slots wholly covered
        if lv[1].name in self.leaf_levels and full_lo < full_hi:
            mapped[lv[1].name] += (full_hi - full_lo) << shift
            mapped[lv[0].name] += (hi - lo) - ((full_hi - full_lo) << shift)
            with_table = {s for s in (first, last - 1) if not full_lo <= s < full_hi}
        else:
            mapped[lv[0].name] += hi - lo
            with_table = set(range(first, last))
        new = with_table - self._tables[1]
        self._tables[1] |= new
        tables[f"{lv[0].name}_tables"] += len(new)


def direct_map_cost(start: int, end: int, arch: str | Arch = "x86_64",
                    variant: str | None = None, ram: int | None = None) -> DirectMapCost:
    """Page tables ``arch_add_memory`` allocates to direct-map ``[start, end)`` on a machine
    whose boot RAM ``[0, ram)`` is already mapped (see :class:`DirectMap`)."""
    return DirectMap(arch, variant, ram).add(start, end)
