"""mm/memory-failure.c: ``memory_failure()`` on device-dax (ZONE_DEVICE) compound pages.

Path (kernel-facts.md §11; 5.17, and 6.1.192 mm/memory-failure.c read):
``memory_failure(pfn, flags)`` -> ``pfn_to_online_page``
fails for ZONE_DEVICE -> ``pfn_valid`` and ``get_dev_pagemap`` -> ``memory_failure_dev_pagemap``:

1. ``!pgmap_pfn_valid(pgmap, pfn)`` -> ``-ENXIO`` ("device metadata space is not recoverable":
   the info block, whose struct pages memmap_init_zone_device never wrote, and the pfns that
   hold the memmap itself with ``--map=dev``, initialised as reserved by memmap_init_range);
2. **patch 1 of the series** ("memory-failure: fetch compound_head after pgmap_pfn_valid()"):
   ``page = compound_head(pfn_to_page(pfn))`` -- after the check, because a metadata pfn has no
   initialised struct page to dereference;
3. ``dax_lock_page(page)`` needs ``page->mapping`` (set on the head only by ``dax_set_mapping``
   at fault time in compound mode); no mapping -> ``-EBUSY``;
4. ``SetPageHWPoison(page)`` (the head); ``collect_procs``; for each process the mapping level
   gives ``size_shift`` (PAGE/PMD/PUD); ``size = max(1 << size_shift)``; ``start = (page->index
   << PAGE_SHIFT) & ~(size - 1)``; ``unmap_mapping_range(mapping, start, len)``; ``kill_procs``
   sends SIGBUS with ``si_addr_lsb = size_shift``.  [V per kernel-facts §11]

``unmap_mapping_range``'s length argument is ``size`` in every variant modelled: the ``start +
size`` bug (an end in the length slot, over-unmapping) lived in 4.19-5.12 and was fixed by
4d75136be8bf "mm/memory-failure: unnecessary amount of unmapping" (Fixes: 6100e34b2526; stable
5.12.4), before the v3 base and 5.16 (kernel-facts §0a 1).  The ``if (size)`` guard -- no
process maps it, nothing is unmapped -- is in 6.1.192 ``unmap_and_kill`` (read).

``patched=False`` shows the 5.17 code *without* patch 1 (hypothetical: patch 1 was merged with
compound devmaps): the struct page of the poisoned pfn itself is used.  For a tail, its
``mapping`` is ``TAIL_MAPPING`` (a poison pointer) and its ``index`` is not the head's, so
``dax_lock_page`` would dereference a non-canonical pointer (``dax_mapping(mapping)`` reads
``mapping->host``, 6.1.192 fs/dax.c and include/linux/dax.h: a general protection fault on
0xdead000000000400) and, had it got
further, the unmap range would be computed from the wrong index and ``PG_hwpoison`` set on a
tail struct page -- which, with vmemmap deduplication, is shared by every aliasing tail.

User mappings: pass ``mappings`` as :class:`UserMapping` (process, vaddr, size, pfn[, shift])
entries or ``(process, DaxVma)`` pairs from :mod:`vmemlab.dax_device` (present leaves only).
They are treated as faulted in: ``dax_set_mapping`` runs for each compound page they map whose
head has no ``mapping`` yet.  File page offsets count from the namespace's data start
(``dax_pgoff_to_phys``: the pgmap's ``data_offset``, set from the nd_pfn ``dataoff``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import KernelError, ParameterError
from .memremap import pgmap_altmap, pgmap_pfn_valid, pgmap_vmemmap_nr
from .page import (
    PG,
    TAIL_MAPPING,
    Page,
    PageHWPoison,
    SetPageHWPoison,
    compound_head,
    pfn_to_page,
    read_field,
    set_flag_bits,
    struct_pages,
)
from .units import as_int

if TYPE_CHECKING:
    from .machine import Machine
    from .memremap import DevPagemap

MF_COUNT_INCREASED = 1 << 0
MF_ACTION_REQUIRED = 1 << 1
MF_MUST_KILL = 1 << 2


@dataclass(frozen=True)
class UserMapping:
    """A process mapping ``size`` bytes of the device at user address ``vaddr``, starting with
    physical ``pfn``; ``shift`` is the page-table level mapping it (default: the device
    alignment, as ``dev_dax_huge_fault`` maps)."""

    process: str
    vaddr: int
    size: int
    pfn: int
    shift: int | None = None


@dataclass
class MemoryFailureResult:
    """What ``memory_failure`` did (or, ``patched=False`` on a tail, would have done)."""

    rc: int | None  #: 0, -errno, or None for an oops
    outcome: str  #: "recovered" / "failed" / "oops"
    pfn: int
    page_pfn: int  #: the struct page memory_failure_dev_pagemap used
    head_pfn: int
    patched: bool
    mapping: int
    mapping_ok: bool
    index: int
    size_shift: int = 0
    size: int = 0
    unmap_start: int = 0  #: file byte offset
    unmap_len: int = 0  #: the length argument passed to unmap_mapping_range
    #: (process, vaddr, size) pieces of user mappings unmap_mapping_range tears down
    unmapped: list[tuple[str, int, int]] = field(default_factory=list)
    #: (process, si_addr, si_addr_lsb) SIGBUS deliveries
    killed: list[tuple[str, int, int]] = field(default_factory=list)
    #: pfns whose struct page shows PG_hwpoison after the call (through aliasing)
    poisoned_pfns: int = 0
    notes: list[str] = field(default_factory=list)


def dax_base_pfn(m: Machine, pgmap: DevPagemap) -> int:
    """The pfn at device-dax file offset 0: the namespace's data start (``dataoff`` past the
    range start, as ``dax_pgoff_to_phys`` counts); for a bare pgmap without a data offset, the
    first pfn ``memmap_init_zone_device`` initialised."""
    ps = m.arch.page_shift
    if pgmap.data_offset:
        return (pgmap.ranges[0][0] + pgmap.data_offset) >> ps
    altmap = pgmap_altmap(pgmap)
    if altmap is not None:
        return altmap.base_pfn + altmap.vmem_altmap_offset()
    return pgmap.ranges[0][0] >> ps


def dax_mapping_token(m: Machine, pgmap: DevPagemap) -> int:
    """``filp->f_mapping`` of the device-dax file (a fake kernel pointer per pgmap)."""
    return struct_pages(m).mapping_token(("dax", pgmap.name))


def dax_set_mapping(m: Machine, pgmap: DevPagemap, pfn: int) -> int:
    """``dax_set_mapping(vmf, pfn, fault_size)`` (drivers/dax/device.c, 5.17+): in compound mode
    only the head gets ``mapping`` and ``index`` (if not set yet).  Returns the head pfn."""
    head = compound_head(pfn_to_page(m, pfn))
    if head.read("mapping") == 0:
        head.write("mapping", dax_mapping_token(m, pgmap))
        head.write("index", head.pfn - dax_base_pfn(m, pgmap))
    return head.pfn


def _normalise(m: Machine, pgmap: DevPagemap, mappings: Any) -> list[UserMapping]:
    a = m.arch
    out = []
    for e in mappings or ():
        if isinstance(e, UserMapping):
            out.append(e)
            continue
        if isinstance(e, tuple) and len(e) == 2 and hasattr(e[1], "present"):
            name, vma = e
            for i in np.flatnonzero(vma.present).tolist():
                va = vma.vm_start + (i << vma.leaf_shift)
                pfn = (vma.phys_start + (va - vma.vm_start)) >> a.page_shift
                out.append(UserMapping(name, va, 1 << vma.leaf_shift, pfn, vma.leaf_shift))
            continue
        if isinstance(e, tuple) and len(e) in (4, 5):
            out.append(UserMapping(*e))
            continue
        raise ParameterError("mappings", e, "UserMapping(process, vaddr, size, pfn[, shift]) "
                             "or (process, DaxVma)")
    default_shift = a.page_shift + pgmap.vmemmap_shift
    return [u if u.shift is not None else UserMapping(u.process, u.vaddr, u.size, u.pfn,
                                                      default_shift) for u in out]


def memory_failure(m: Machine, pfn: int, flags: int = 0, mappings: Any = (),
                   patched: bool = True) -> MemoryFailureResult:
    """``memory_failure(pfn, flags)`` for a ZONE_DEVICE pfn (see the module docstring).

    Raises :class:`KernelError` ``-ENXIO`` (nothing changed) for a pfn outside any pgmap
    ("memory outside kernel control") or a device metadata pfn; System RAM pfns are not
    modelled (:class:`ParameterError`)."""
    a = m.arch
    ps = a.page_shift
    pfn = as_int("pfn", pfn, 0, (1 << (64 - ps)) - 1,
                 f"a page frame number from 0 to 2^{64 - ps} - 1 (an int)")
    flags = as_int("flags", flags, 0, None, "MF_* flags (an int)")
    if pfn < (m.boot_ram_end >> ps):
        raise ParameterError("pfn", pfn, "a ZONE_DEVICE pfn: memory_failure on System RAM "
                             "(the online-page path) is not modelled")
    pgmap = m.get_dev_pagemap(pfn) if m.sparse.pfn_valid(pfn) else None
    if pgmap is None:
        raise KernelError("ENXIO", "memory_failure",
                          f"{pfn:#x}: memory outside kernel control (no section or no "
                          f"dev_pagemap holds this pfn)")
    if not pgmap_pfn_valid(pgmap, pfn, ps):
        raise KernelError("ENXIO", "memory_failure_dev_pagemap",
                          f"{pfn:#x}: device metadata space is not recoverable (pfn holds the "
                          f"info block or the memmap of {pgmap.name})")
    users = _normalise(m, pgmap, mappings)
    for u in users:  # the faults that created these mappings
        nr = pgmap_vmemmap_nr(pgmap)
        for p in range(u.pfn, u.pfn + (u.size >> ps), nr):
            dax_set_mapping(m, pgmap, p)
    page = compound_head(pfn_to_page(m, pfn)) if patched else pfn_to_page(m, pfn)
    head = compound_head(pfn_to_page(m, pfn))
    mapping = page.read("mapping")
    index = page.read("index")
    dax_map = dax_mapping_token(m, pgmap)
    res = MemoryFailureResult(None, "", pfn, page.pfn, head.pfn, patched, mapping,
                              mapping == dax_map, index)
    if mapping == 0:
        res.rc, res.outcome = -16, "failed"
        res.notes.append("dax_lock_page: page->mapping is NULL (never faulted in): -EBUSY, "
                         "action_result(MF_MSG_DAX, MF_FAILED)")
        return res
    # the mapping size each process uses (collect_procs + dev_pagemap_mapping_shift)
    head_off = head.pfn - dax_base_pfn(m, pgmap)
    killers = [u for u in users if u.pfn <= head.pfn < u.pfn + (u.size >> ps)]
    size = max((1 << u.shift for u in killers), default=0)
    res.size_shift = size.bit_length() - 1 if size else 0
    res.size = size
    start = (index << ps) & ~(size - 1) if size else 0
    length = size  # 4d75136be8bf (5.13, stable 5.12.4) fixed the start + size length
    res.unmap_start, res.unmap_len = start, length if size else 0
    if not res.mapping_ok:
        res.rc, res.outcome = None, "oops"
        res.notes.append(
            f"pre-patch: the tail's page->mapping is {mapping:#x}"
            f"{' (TAIL_MAPPING)' if mapping == TAIL_MAPPING else ''}, not the device's "
            f"address_space: dax_lock_page() dereferences it (non-canonical pointer -> general "
            f"protection fault: dax_mapping() reads mapping->host)")
        res.notes.append(
            f"had it gone on: index {index} instead of the head's {head_off}, unmap range "
            f"[{start:#x}, {start + size:#x}) instead of "
            f"[{(head_off << ps) & ~(size - 1) if size else 0:#x}, ...), and PG_hwpoison on the "
            f"tail struct page of pfn {pfn:#x}, which "
            + (f"aliases {n_alias} struct pages of this compound page"
               if (n_alias := _alias_count(m, pfn, head.pfn, pgmap)) > 1
               else "no other struct page aliases"))
        res.unmapped = _unmapped(users, start, start + size, m, pgmap) if size else []
        return res
    SetPageHWPoison(page)                                        # the head (patch 1)
    if size:
        end = start + length
        res.unmapped = _unmapped(users, start, end, m, pgmap)
    for u in killers:
        si_addr = u.vaddr + ((head.pfn - u.pfn) << ps)  # page_address_in_vma(head, vma)
        res.killed.append((u.process, si_addr, u.shift))
    res.rc, res.outcome = 0, "recovered"
    nr = pgmap_vmemmap_nr(pgmap)
    pf = head.pfn + np.arange(nr, dtype=np.int64)
    flags_hw = read_field(m, pf, "flags")
    res.poisoned_pfns = int(((flags_hw >> np.uint64(PG(m, "PG_hwpoison"))) & np.uint64(1)).sum())
    if flags & MF_COUNT_INCREASED:
        res.notes.append("MF_COUNT_INCREASED: put_ref_page (the caller's reference) dropped")
    return res


def _unmapped(users: list[UserMapping], start: int, end: int, m: Machine,
              pgmap: DevPagemap) -> list[tuple[str, int, int]]:
    """``unmap_mapping_range(mapping, start, end - start)``: the pieces of every user mapping of
    the device whose file range meets ``[start, end)``, as (process, vaddr, size)."""
    ps = m.arch.page_shift
    base = dax_base_pfn(m, pgmap)
    out = []
    for u in users:
        fs = (u.pfn - base) << ps
        fe = fs + u.size
        lo, hi = max(fs, start), min(fe, end)
        if lo < hi:
            out.append((u.process, u.vaddr + (lo - fs), hi - lo))
    return out


def _alias_count(m: Machine, pfn: int, head: int, pgmap: DevPagemap) -> int:
    """How many struct pages of the compound page share ``pfn``'s physical struct page."""
    nr = pgmap_vmemmap_nr(pgmap)
    st = struct_pages(m)
    pf = head + np.arange(nr, dtype=np.int64)
    rows, idx = st.locate(pf)
    r0, i0 = st.locate(np.array([pfn]))
    return int(((rows == r0[0]) & (idx == i0[0])).sum())


def page_hwpoisoned(m: Machine, pfn: int) -> bool:
    """``PageHWPoison(pfn_to_page(pfn))``: the struct page's own flag."""
    return PageHWPoison(Page(m, pfn))


def ClearPageHWPoison(m: Machine, pfn: int) -> None:  # noqa: N802
    """Clear PG_hwpoison on ``pfn``'s struct page (``ClearPageHWPoison``)."""
    set_flag_bits(m, pfn, "PG_hwpoison", on=False)
