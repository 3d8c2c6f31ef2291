"""Architecture geometry: page size, page-table levels, sections, dax alignments.

Each preset mirrors the constants of one kernel configuration.  Sources (kernel-facts.md §1):

* ``include/linux/mmzone.h`` -- ``SUBSECTION_SHIFT`` is 21 on every arch; ``PAGES_PER_SECTION``,
  ``PAGES_PER_SUBSECTION``, ``SUBSECTIONS_PER_SECTION`` derive from it.
* ``arch/x86/include/asm/sparsemem.h`` -- ``SECTION_SIZE_BITS 27``, ``MAX_PHYSMEM_BITS 46``
  (4-level paging).
* ``arch/arm64/include/asm/sparsemem.h`` -- ``SECTION_SIZE_BITS`` 27 for 4K/16K pages, 29 for 64K.
* ``arch/powerpc/include/asm/sparsemem.h`` -- ``SECTION_SIZE_BITS 24``;
  ``arch/powerpc/include/asm/book3s/64/radix-64k.h`` -- index sizes PTE 5, PMD 9, PUD 9, PGD 13.
* ``drivers/dax/bus.c`` ``dax_align_valid()`` -- device-dax accepts ``PAGE_SIZE``, ``PMD_SIZE`` and,
  where ``CONFIG_HAVE_ARCH_TRANSPARENT_HUGEPAGE_PUD`` is set (x86_64, ppc64 radix), ``PUD_SIZE``.

Page-table levels are listed bottom-up as ``(name, entry_shift, entries_per_table)``; folded
levels (x86's P4D with 4-level paging, arm64 64K's PUD at 48-bit VA) are left out.  The model
assumes ``VMEMMAP_START`` is aligned to a top-level entry, which holds for the layouts modelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

from .errors import ParameterError

SUBSECTION_SHIFT = 21  # include/linux/mmzone.h, every arch, since 5.3


@dataclass(frozen=True)
class Level:
    """One page-table level: its kernel name, the VA shift one entry covers, entries per table."""

    name: str
    shift: int
    ptrs: int

    @property
    def bits(self) -> int:
        return self.ptrs.bit_length() - 1


@dataclass(frozen=True)
class Arch:
    """Geometry of one kernel configuration (see module docstring for sources).

    Which arches select ``ARCH_WANT_OPTIMIZE_DAX_VMEMMAP`` / the HugeTLB vmemmap Kconfig changed
    between versions, so it is a property of the kernel variant, not of the arch:
    ``Kernel.dax_gate_arches`` and ``Kernel.hvo_arches`` (kernel-facts §0a 9, 10).
    """

    name: str
    page_shift: int
    levels: tuple[Level, ...]  # bottom-up: pte, pmd, [pud], pgd
    section_size_bits: int
    max_physmem_bits: int
    dax_aligns: tuple[int, ...]
    vmemmap_start: int
    #: the arch ``vmemmap_populate()`` maps a full section with PMD blocks (x86 with PSE, arm64 4K)
    vmemmap_hugepages: bool
    #: the arch overrides ``vmemmap_populate_compound_pages`` (ppc64 radix, 6.6+)
    arch_compound_override: bool = False
    #: base-page vmemmap (partial sections, 16K/64K pages) takes pages from the altmap too;
    #: x86 passes a NULL altmap there, so partial-section memmap is always in RAM
    basepages_use_altmap: bool = True
    struct_page_size: int = 64
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    # -- derived constants, named as in the kernel ------------------------------------------
    @cached_property
    def PAGE_SHIFT(self) -> int:  # noqa: N802 - kernel name
        return self.page_shift

    @cached_property
    def PAGE_SIZE(self) -> int:  # noqa: N802
        return 1 << self.page_shift

    @cached_property
    def PTRS_PER_PTE(self) -> int:  # noqa: N802
        return self.levels[0].ptrs

    @cached_property
    def PMD_SHIFT(self) -> int:  # noqa: N802
        return self.levels[1].shift

    @cached_property
    def PMD_SIZE(self) -> int:  # noqa: N802
        return 1 << self.PMD_SHIFT

    @cached_property
    def PUD_SHIFT(self) -> int | None:  # noqa: N802
        names = [lv.name for lv in self.levels]
        return self.levels[names.index("pud")].shift if "pud" in names else None

    @cached_property
    def PUD_SIZE(self) -> int | None:  # noqa: N802
        return None if self.PUD_SHIFT is None else 1 << self.PUD_SHIFT

    @cached_property
    def SECTION_SIZE_BITS(self) -> int:  # noqa: N802
        return self.section_size_bits

    @cached_property
    def PFN_SECTION_SHIFT(self) -> int:  # noqa: N802
        return self.section_size_bits - self.page_shift

    @cached_property
    def PAGES_PER_SECTION(self) -> int:  # noqa: N802
        return 1 << self.PFN_SECTION_SHIFT

    @cached_property
    def SUBSECTION_SHIFT(self) -> int:  # noqa: N802
        return SUBSECTION_SHIFT

    @cached_property
    def PFN_SUBSECTION_SHIFT(self) -> int:  # noqa: N802
        return SUBSECTION_SHIFT - self.page_shift

    @cached_property
    def PAGES_PER_SUBSECTION(self) -> int:  # noqa: N802
        return 1 << self.PFN_SUBSECTION_SHIFT

    @cached_property
    def SUBSECTIONS_PER_SECTION(self) -> int:  # noqa: N802
        return 1 << (self.section_size_bits - SUBSECTION_SHIFT)

    @cached_property
    def STRUCT_PAGES_PER_PAGE(self) -> int:  # noqa: N802
        """``PAGE_SIZE / sizeof(struct page)``: struct pages in one vmemmap page (64 on x86)."""
        return self.PAGE_SIZE // self.struct_page_size

    @cached_property
    def max_order(self) -> int:
        """Largest compound order the model lets a pgmap use: one whose pages fit the phys space."""
        return self.max_physmem_bits - self.page_shift - 1

    def dax_align_orders(self) -> tuple[int, ...]:
        return tuple(a.bit_length() - 1 - self.page_shift for a in self.dax_aligns)

    def with_struct_page_size(self, size: int) -> Arch:
        """The same arch with another ``sizeof(struct page)`` (debug options make it 72, 80, ...)."""
        if size not in range(32, 257, 8):
            raise ParameterError("struct_page_size", size, "a multiple of 8 from 32 to 256 bytes")
        return replace(self, struct_page_size=size)


def _levels(page_shift: int, *sizes: tuple[str, int]) -> tuple[Level, ...]:
    out, shift = [], page_shift
    for name, ptrs in sizes:
        out.append(Level(name, shift, ptrs))
        shift += ptrs.bit_length() - 1
    return tuple(out)


K, M, G, T = 1 << 10, 1 << 20, 1 << 30, 1 << 40

ARCHES: dict[str, Arch] = {
    "x86_64": Arch(
        name="x86_64", page_shift=12,
        levels=_levels(12, ("pte", 512), ("pmd", 512), ("pud", 512), ("pgd", 512)),
        section_size_bits=27, max_physmem_bits=46, dax_aligns=(4 * K, 2 * M, 1 * G),
        vmemmap_start=0xFFFFEA0000000000, vmemmap_hugepages=True, basepages_use_altmap=False,
        source="arch/x86/include/asm/sparsemem.h, pgtable_64_types.h (4-level paging)",
    ),
    "arm64-4k": Arch(
        name="arm64-4k", page_shift=12,
        levels=_levels(12, ("pte", 512), ("pmd", 512), ("pud", 512), ("pgd", 512)),
        section_size_bits=27, max_physmem_bits=48, dax_aligns=(4 * K, 2 * M),
        vmemmap_start=0xFFFFFC0000000000, vmemmap_hugepages=True,
        source="arch/arm64/include/asm/sparsemem.h (48-bit VA, 4 levels)",
        notes=("arm64 SECTION_SIZE_BITS was 30 before ~5.12",
               "arm64 does not select ARCH_WANT_OPTIMIZE_DAX_VMEMMAP: from 6.4 device-dax "
               "vmemmap is not deduplicated there (5.19-6.3 had no arch gate)",
               "a partial section's memmap is mapped with base pages, as x86 and the 2024-25 "
               "arm64 patch do; older arm64 kernels map a whole PMD block",
               "no HAVE_ARCH_TRANSPARENT_HUGEPAGE_PUD: device-dax offers 4K and 2M only"),
    ),
    "arm64-16k": Arch(
        name="arm64-16k", page_shift=14,
        levels=_levels(14, ("pte", 2048), ("pmd", 2048), ("pud", 2048), ("pgd", 2)),
        section_size_bits=27, max_physmem_bits=48, dax_aligns=(16 * K, 32 * M),
        vmemmap_start=0xFFFFFC0000000000, vmemmap_hugepages=False,
        source="arch/arm64/include/asm/sparsemem.h (48-bit VA: PGD has 2 entries)",
        notes=("arm64 vmemmap_populate() uses base pages unless CONFIG_ARM64_4K_PAGES",),
    ),
    "arm64-64k": Arch(
        name="arm64-64k", page_shift=16,
        levels=_levels(16, ("pte", 8192), ("pmd", 8192), ("pgd", 64)),
        section_size_bits=29, max_physmem_bits=48, dax_aligns=(64 * K, 512 * M),
        vmemmap_start=0xFFFFFC0000000000, vmemmap_hugepages=False,
        source="arch/arm64/include/asm/sparsemem.h (48-bit VA, 3 levels, PUD folded)",
    ),
    "ppc64-radix-64k": Arch(
        name="ppc64-radix-64k", page_shift=16,
        levels=_levels(16, ("pte", 32), ("pmd", 512), ("pud", 512), ("pgd", 8192)),
        section_size_bits=24, max_physmem_bits=51, dax_aligns=(64 * K, 2 * M, 1 * G),
        vmemmap_start=0xC00C000000000000, vmemmap_hugepages=False, arch_compound_override=True,
        source="arch/powerpc/include/asm/sparsemem.h, book3s/64/radix-64k.h",
        notes=("vmemmap deduplication only with the radix MMU (vmemmap_can_optimize override)",
               "the hash MMU is not modelled: there vmemmap_populate() (__vmemmap_populate() "
               "from 6.6) bolts the memmap into the hash page table in mmu_vmemmap_psize "
               "blocks (hash__vmemmap_create_mapping -> htab_bolt_mapping), with no Linux page "
               "tables, and from 6.4 vmemmap_can_optimize() is false (arch/powerpc/mm/init_64.c)",
               "vmemmap mapped in PMD_SIZE (2 MiB) blocks, each the memmap of 128 sections: "
               "init_64.c vmemmap_create_mapping before 6.6, radix__vmemmap_populate from 6.6 "
               "(vmemlab.sparse_vmemmap; vmemmap_hugepages stays False: that flag is the "
               "generic x86/arm64 path)"),
    ),
}

DEFAULT_ARCH = "x86_64"


def get_arch(arch: str | Arch = DEFAULT_ARCH) -> Arch:
    """Look up an :class:`Arch` preset by name (or pass one through)."""
    if isinstance(arch, Arch):
        return arch
    try:
        return ARCHES[arch]
    except (KeyError, TypeError):
        raise ParameterError("arch", arch, "one of " + ", ".join(ARCHES)) from None
