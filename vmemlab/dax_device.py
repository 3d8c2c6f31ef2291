"""drivers/dax/device.c: a process mapping a device-dax instance, and its user page tables.

:func:`dax_mmap` is ``mmap()`` of ``/dev/daxX.Y`` (``dax_mmap`` + ``check_vma``): the VMA must be
aligned to the device alignment.  Faults follow ``dev_dax_huge_fault`` (kernel-facts.md §8,
5.17-~6.14, where the leaves are devmap entries inserted with ``vmf_insert_mixed`` /
``vmf_insert_pfn_pmd`` / ``vmf_insert_pfn_pud``, which take no page reference):

* the core fault path tries a PUD fault first, then a PMD fault, then a PTE fault
  (``handle_mm_fault`` -> ``create_huge_pud`` / ``create_huge_pmd`` / ``handle_pte_fault``);
* ``__dev_dax_pte_fault``: ``align != PAGE_SIZE`` -> ``VM_FAULT_SIGBUS``;
* ``__dev_dax_pmd_fault`` / ``__dev_dax_pud_fault``: ``align > fault_size`` -> SIGBUS,
  ``align < fault_size`` -> ``VM_FAULT_FALLBACK``; a leaf reaching outside the VMA -> SIGBUS;
  ``dax_pgoff_to_phys`` turns the page offset into a physical address.

So a device aligned to 4K is mapped by PTEs, 2M by PMD leaves and 1G by PUD leaves.  The user
page tables are kept lazily as one boolean per leaf slot (a 128 GiB VMA at 2M align is 65536
booleans), never a Python object per page.  Physical pages are those of the dax range: the
namespace's data area (``nd_pfn`` ``dataoff`` onwards), linear in the page offset (one range).

Every kernel variant modelled (up to the 6.12 trees read) inserts devmap leaves; Alistair
Popple's later DAX refcount rework (kernel-facts.md §8, after 6.12) makes them normal refcounted
folio mappings, which this module does not model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .errors import KernelError, ParameterError
from .units import as_int

if TYPE_CHECKING:
    from .machine import Machine
    from .memremap import DevPagemap
    from .plan import Plan

#: default user virtual address of a dax mapping: 1 TiB-aligned, in the x86_64 user half
DEFAULT_VM_START = 0x7F00_0000_0000

VM_FAULT_NOPAGE, VM_FAULT_FALLBACK, VM_FAULT_SIGBUS = "NOPAGE", "FALLBACK", "SIGBUS"


@dataclass(eq=False)
class DaxVma:
    """A ``vm_area_struct`` over ``/dev/daxX.Y`` plus the user page tables that map it.

    ``leaf_level`` is ``"pte"``, ``"pmd"`` or ``"pud"`` (the level ``dev_dax_huge_fault``
    installs for this alignment); ``present[i]`` tells whether leaf slot ``i`` (covering
    ``vm_start + i * leaf_size``) is populated.
    """

    m: Machine
    pgmap: DevPagemap
    vm_start: int
    vm_end: int
    align: int
    phys_start: int
    dev_size: int
    leaf_level: str
    leaf_shift: int
    present: np.ndarray = field(repr=False)

    # -- geometry ---------------------------------------------------------------------------
    @property
    def leaf_size(self) -> int:
        return 1 << self.leaf_shift

    @property
    def nr_leaves(self) -> int:
        return (self.vm_end - self.vm_start) >> self.leaf_shift

    @property
    def size(self) -> int:
        return self.vm_end - self.vm_start

    def va_to_pfn(self, va: np.ndarray | int) -> np.ndarray | int:
        """``dax_pgoff_to_phys(dev_dax, pgoff, size) >> PAGE_SHIFT`` for a user address."""
        ps = self.m.arch.page_shift
        return (self.phys_start >> ps) + ((va - self.vm_start) >> ps)

    # -- faults -----------------------------------------------------------------------------
    def dev_dax_huge_fault(self, address: int, fault_shift: int) -> str:
        """``dev_dax_huge_fault(vmf, order)`` -> ``__dev_dax_{pte,pmd,pud}_fault``: returns
        ``"NOPAGE"`` (leaf installed), ``"FALLBACK"`` or ``"SIGBUS"`` (kernel-facts.md §8)."""
        a = self.m.arch
        fault_size = 1 << fault_shift
        if not self.vm_start <= address < self.vm_end:
            return VM_FAULT_SIGBUS
        if fault_shift == a.page_shift:
            if self.align != a.PAGE_SIZE:
                return VM_FAULT_SIGBUS  # "alignment (%#x) > fault size (%#x)"
        else:
            if self.align > fault_size:
                return VM_FAULT_SIGBUS
            if self.align < fault_size:
                return VM_FAULT_FALLBACK
            leaf_addr = address & ~(fault_size - 1)
            if leaf_addr < self.vm_start or leaf_addr + fault_size > self.vm_end:
                return VM_FAULT_SIGBUS
        if fault_shift != self.leaf_shift:  # cannot happen: the checks above pin it
            raise AssertionError("leaf size disagrees with the device alignment")
        self.present[(address - self.vm_start) >> self.leaf_shift] = True
        return VM_FAULT_NOPAGE

    def handle_mm_fault(self, address: int) -> str:
        """The core fault path for a dax VMA: PUD fault, then PMD, then PTE on FALLBACK."""
        a = self.m.arch
        shifts = [s for s in (a.PUD_SHIFT, a.PMD_SHIFT) if s is not None] + [a.page_shift]
        for s in shifts:
            r = self.dev_dax_huge_fault(address, s)
            if r != VM_FAULT_FALLBACK:
                if r == VM_FAULT_SIGBUS:
                    raise KernelError("EINVAL", "dev_dax_huge_fault",
                                      f"VM_FAULT_SIGBUS at {address:#x} (align {self.align:#x})")
                return r
        raise AssertionError("PTE fault cannot fall back")

    def populate(self, start: int | None = None, end: int | None = None) -> int:
        """Fault in every leaf of ``[start, end)`` (``MAP_POPULATE`` / the gup_test loop that
        writes one byte per page before timing).  Vectorised: all leaves have the size
        ``handle_mm_fault`` settles on for this alignment (checked on the first one).
        Returns the number of leaves newly installed."""
        start = self.vm_start if start is None else start
        end = self.vm_end if end is None else end
        if not self.vm_start <= start < end <= self.vm_end:
            raise ParameterError("range", (start, end), "inside the VMA")
        i0 = (start - self.vm_start) >> self.leaf_shift
        i1 = -(-(end - self.vm_start) >> self.leaf_shift)
        if not self.present[i0]:
            self.handle_mm_fault(start)
        new = int((~self.present[i0:i1]).sum())
        self.present[i0:i1] = True
        return new

    def zap(self) -> None:
        """``munmap``/``zap_page_range``: drop every leaf (devmap leaves hold no reference)."""
        self.present[:] = False

    # -- user page-table counts -------------------------------------------------------------
    def table_counts(self) -> dict[str, int]:
        """User page-table pages holding the populated leaves, per level (PGD excluded)."""
        a = self.m.arch
        idx = np.flatnonzero(self.present).astype(np.int64)
        va = self.vm_start + (idx << self.leaf_shift)
        out: dict[str, int] = {}
        for lv in a.levels[:-1]:
            # a table at level lv exists if some leaf lies at or below it
            if lv.shift < self.leaf_shift:
                out[lv.name] = 0
                continue
            span_shift = lv.shift + lv.bits
            out[lv.name] = int(np.unique(va >> span_shift).size)
        return out


def dax_mmap(m: Machine, pgmap: DevPagemap, phys_start: int, dev_size: int, align: int,
             size: int | None = None, vm_start: int = DEFAULT_VM_START,
             pgoff: int = 0) -> DaxVma:
    """``mmap(/dev/daxX.Y, size, offset=pgoff << PAGE_SHIFT)``: ``dax_mmap`` + ``check_vma``
    (-EINVAL when the VMA or offset is not aligned to the device alignment, or the mapping runs
    past the device)."""
    a = m.arch
    size = dev_size if size is None else as_int("size", size, 1, None, "a positive byte count")
    vm_start = as_int("vm_start", vm_start, 0, (1 << 64) - 1, "a user virtual address (an int)")
    pgoff = as_int("pgoff", pgoff, 0, None, "a page offset >= 0 (an int)")
    dev_align = 1 << (a.page_shift + pgmap.vmemmap_shift)
    if pgmap.vmemmap_shift and align != dev_align:
        # dev_dax_probe derives vmemmap_shift from the device's align: they always agree
        raise ParameterError("align", align, f"the device's align, {dev_align:#x} (its pgmap "
                             f"has vmemmap_shift {pgmap.vmemmap_shift})")
    for name, val in (("vm_start", vm_start), ("size", size), ("offset", pgoff << a.page_shift)):
        if val % align:
            raise KernelError("EINVAL", "check_vma",
                              f"{name} {val:#x} is not aligned to the device alignment {align:#x}")
    if (pgoff << a.page_shift) + size > dev_size:
        raise KernelError("EINVAL", "dax_mmap",
                          f"mapping {size:#x} bytes at offset {pgoff << a.page_shift:#x} runs "
                          f"past the device ({dev_size:#x} bytes)")
    if align == a.PAGE_SIZE:
        level, shift = "pte", a.page_shift
    elif align == a.PMD_SIZE:
        level, shift = "pmd", a.PMD_SHIFT
    elif a.PUD_SIZE is not None and align == a.PUD_SIZE:
        level, shift = "pud", a.PUD_SHIFT  # type: ignore[assignment]
    else:
        raise KernelError("EINVAL", "dev_dax_huge_fault",
                          f"align {align:#x} is neither PAGE_SIZE, PMD_SIZE nor PUD_SIZE")
    phys = phys_start + (pgoff << a.page_shift)
    n = size >> shift
    return DaxVma(m, pgmap, vm_start, vm_start + size, align, phys, dev_size - (pgoff << a.page_shift),
                  level, shift, np.zeros(n, np.bool_))


def dax_mmap_plan(p: Plan, size: int | None = None, vm_start: int = DEFAULT_VM_START,
                  populate: bool = True) -> DaxVma:
    """Map the device-dax instance a :func:`vmemlab.plan` created: its dax range is the
    namespace's data area ``[start + dataoff, start + dataoff + npfns * PAGE_SIZE)``; ``size``
    defaults to all of it rounded down to the alignment.  ``populate`` faults every leaf in."""
    m = p._machine  # type: ignore[attr-defined]
    pgmap = p._pgmap  # type: ignore[attr-defined]
    phys_start = p.start + p.namespace["dataoff"]
    dev_size = (p.namespace["npfns"] * p.page_size) // p.align * p.align
    vma = dax_mmap(m, pgmap, phys_start, dev_size, p.align, size, vm_start)
    if populate:
        vma.populate()
    return vma
