"""One modelled machine: the kernel state the vmemmap engine changes.

A :class:`Machine` ties together what the kernel keeps globally: the architecture and kernel
variant, the page allocator (:class:`~vmemlab.frames.RamAllocator`), every allocated frame, the
``init_mm`` page tables over the vmemmap, the ``mem_section`` array, the mapped ``dev_pagemap``\\s
and the ``/proc/vmstat`` memmap counters.  Optionally it boots with RAM at physical address 0,
whose memmap is populated from memblock the way ``sparse_init`` does.
"""

from __future__ import annotations

from typing import Any

from .arch import Arch, get_arch
from .errors import ParameterError
from .frames import DEVICE, PAGETABLE, RAM, VMEMMAP, FrameTable, RamAllocator
from .kernels import Kernel, get_kernel
from .pagetables import KernelPageTables
from .sparse import MemSection, Sparse, populate_section_memmap
from .units import parse_size


class Machine:
    """The modelled kernel state.  ``ram`` (bytes) boots that much System RAM at address 0 and
    caps what the vmemmap may take from RAM; ``None`` means unlimited RAM and no boot memory."""

    def __init__(self, arch: str | Arch = "x86_64", kernel: str | Kernel = "6.6",
                 ram: int | str | None = None) -> None:
        self.arch = get_arch(arch)
        self.kernel = get_kernel(kernel)
        ram = None if ram is None else parse_size(ram, "ram")
        if ram is not None and ram > 1 << self.arch.max_physmem_bits:
            raise ParameterError("ram", ram, f"at most 2^{self.arch.max_physmem_bits} bytes "
                                 f"(MAX_PHYSMEM_BITS on {self.arch.name})")
        cap = None if ram is None else ram >> self.arch.page_shift
        self.ram = RamAllocator(cap)
        self.frames = FrameTable(self.ram, self.arch.page_shift)
        self.pgtables = KernelPageTables(self.arch, self.frames)
        self.sparse = Sparse(self)
        self.pgmaps: list = []
        #: ppc64 ``vmemmap_list`` before 6.6 (arch/powerpc/mm/init_64.c): the PMD blocks
        #: ``vmemmap_populate`` recorded, by PMD entry (newest last), all ``vmemmap_free`` frees
        self.vmemmap_list: dict[int, list[int]] = {}
        self.vmstat = {"nr_memmap_pages": 0, "nr_memmap_boot_pages": 0}
        self.booting = False
        self.boot_ram_end = 0
        self.struct_pages: Any = None  # set by vmemlab.page when struct pages are read/written
        self.hugetlb: Any = None  # set by vmemlab.hugetlb_vmemmap (HugeTLB pages, HVO state)
        if ram is not None:
            self.boot(ram)

    # -- boot -------------------------------------------------------------------------------
    def boot(self, ram: int) -> None:
        """``sparse_init()`` for System RAM ``[0, ram)``: early sections whose memmap comes from
        memblock (``__populate_section_memmap(pfn, PAGES_PER_SECTION, nid, NULL, NULL)``)."""
        a = self.arch
        section = 1 << a.section_size_bits
        if ram < section:
            raise ParameterError("ram", ram, f"at least one section ({section >> 20} MiB)")
        nsec = ram // section
        self.booting = self.pgtables.boot = True
        try:
            for nr in range(nsec):
                pfn = nr * a.PAGES_PER_SECTION
                ms = MemSection(nr, subsection_map=(1 << a.SUBSECTIONS_PER_SECTION) - 1,
                                early=True)
                self.sparse.sections[nr] = ms
                self.sparse.activating = nr  # valid_section() only once it is populated
                populate_section_memmap(self, pfn, a.PAGES_PER_SECTION, None, None)
                self.memmap_pages_add(self.sparse._memmap_pages(a.PAGES_PER_SECTION))
        finally:
            self.booting = self.pgtables.boot = False
            self.sparse.activating = None
        self.boot_ram_end = nsec * section

    # -- helpers used by the mm modules -----------------------------------------------------
    def memmap_pages_add(self, n: int) -> None:
        """``memmap_pages_add()`` / ``memmap_boot_pages_add()`` (6.11+ vmstat counters; a
        kernel variant without them keeps both at 0)."""
        if not self.kernel.memmap_counter:
            return
        self.vmstat["nr_memmap_boot_pages" if self.booting else "nr_memmap_pages"] += n

    def get_dev_pagemap(self, pfn: int):
        """``get_dev_pagemap(pfn, NULL)``: the mapped pgmap whose ranges hold ``pfn``."""
        ps = self.arch.page_shift
        for pgmap in self.pgmaps:
            for s, e in pgmap.ranges:
                if s >> ps <= pfn < e >> ps:
                    return pgmap
        return None

    def forget_struct_pages(self, pgmap) -> None:
        """Drop materialised struct pages of a removed pgmap (see :mod:`vmemlab.page`)."""
        if self.struct_pages is not None:
            self.struct_pages.forget(pgmap)

    # -- accounting -------------------------------------------------------------------------
    def usage(self) -> dict[str, int]:
        """Pages held, by what and where (boot memmap included)."""
        f = self.frames
        tables = self.pgtables.table_counts()
        return {
            "ram_used": self.ram.used,
            "ram_data_pages": f.pages(VMEMMAP, RAM),
            "ram_pagetable_pages": f.pages(PAGETABLE, RAM),
            "device_data_pages": f.pages(VMEMMAP, DEVICE),
            **{f"{k}_tables": v for k, v in tables.items()},
        }

    def state(self) -> dict[str, Any]:
        """A fingerprint of everything an operation may change; tests compare it around a failed
        operation to show nothing was lost."""
        f = self.frames
        live = f.live()
        return {
            "usage": self.usage(),
            "ram_used": self.ram.used,
            "live_frames": int(live.size),
            "refcount_sum": int(f.refcount[live].sum()),
            "sections": {n: (s.subsection_map, s.early) for n, s in self.sparse.sections.items()},
            "pmd_leaf": dict(self.pgtables.pmd_leaf),
            "leaked_pte_tables": sorted(self.pgtables.leaked_pte),
            "vmemmap_list": {k: list(v) for k, v in self.vmemmap_list.items()},
            "ptes": self.pgtables.mapped_ptes(),
            "vmstat": dict(self.vmstat),
            "pgmaps": [p.name for p in self.pgmaps],
            "altmaps": [(p.altmap.alloc, p.altmap.align) if p.altmap else None
                        for p in self.pgmaps],
        }

    def __repr__(self) -> str:
        return (f"Machine(arch={self.arch.name!r}, kernel={self.kernel.name!r}, "
                f"ram={'unlimited' if self.ram.capacity is None else self.ram.capacity} pages, "
                f"sections={len(self.sparse.sections)}, pgmaps={len(self.pgmaps)})")
