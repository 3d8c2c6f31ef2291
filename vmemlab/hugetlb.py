"""mm/hugetlb.c (the parts HVO needs): allocating a HugeTLB folio from boot RAM and prepping it
as a compound page, the HugeTLB mark on the folio per kernel variant, and where the folio keeps
its poisoned-subpage list.  Re-exported by :mod:`vmemlab.hugetlb_vmemmap`, which optimizes and
restores these folios' vmemmap (``dissolve_free_huge_page``, which restores the vmemmap before
freeing, lives there too because it calls down into HVO).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import KernelError, ParameterError
from .include.hugetlb import SUBPAGE_INDEX_HWPOISON, HugetlbFolio, _state, hugetlb_orders
from .include.memory_model import head_va
from .include.mm_types import (
    COMPOUND_PAGE_DTOR,
    HUGETLB_PAGE_DTOR,
    SIZEOF_STRUCT_PAGE,
    struct_layout_name,
)
from .include.page_flags import PG, PG_HUGETLB_PAGE_TYPE, PGTY_HUGETLB
from .mm_init import prep_compound_head, prep_compound_tail
from .page_store import read_field, write_field
from .units import parse_size

if TYPE_CHECKING:
    from .machine import Machine


def alloc_hugetlb_folio(m: Machine, size: int | str = "2M") -> HugetlbFolio:
    """Take a HugeTLB page from boot RAM (``alloc_fresh_hugetlb_folio``) and prep it as a
    compound page: the first free ``size``-aligned pfn range of boot RAM above the first MiB
    (which x86 reserves), then
    ``prep_compound_page`` (``__SetPageHead``, ``prep_compound_tail`` for every tail,
    ``prep_compound_head``) and the HugeTLB mark, written through the vmemmap.  The head gets
    refcount 1 (allocated), tails 0.  RAM accounting: the data pages belong to boot RAM, which
    the model does not count against the vmemmap allocator."""
    a = m.arch
    nbytes = parse_size(size, "size")
    if nbytes < a.PAGE_SIZE or nbytes & (nbytes - 1):
        raise ParameterError("size", size, "a power-of-two HugeTLB page size")
    order = nbytes.bit_length() - 1 - a.page_shift
    allowed = hugetlb_orders(m)
    if order not in allowed:
        raise ParameterError("size", size, f"a HugeTLB size {a.name} maps: " + ", ".join(
            f"{(1 << (o + a.page_shift)) >> 20} MiB" for o in allowed))
    if SIZEOF_STRUCT_PAGE != a.struct_page_size:
        raise ParameterError("struct_page_size", a.struct_page_size, "64 for HugeTLB vmemmap")
    end_pfn = m.boot_ram_end >> a.page_shift
    nr = 1 << order
    st = _state(m)
    busy = sorted((f.head_pfn, f.head_pfn + f.nr_pages) for f in st.folios)
    # x86 keeps the first MiB for the firmware and the kernel: start above it
    pfn = -(-((1 << 20) >> a.page_shift) // nr) * nr
    for lo, hi in busy:
        if pfn + nr <= lo:
            break
        pfn = max(pfn, -(-hi // nr) * nr)
    if pfn + nr > end_pfn:
        raise KernelError("ENOMEM", "alloc_fresh_hugetlb_folio",
                          f"no free {nbytes >> 20} MiB-aligned range left in boot RAM "
                          f"({m.boot_ram_end >> 20} MiB booted)")
    folio = HugetlbFolio(pfn, order)
    prep_compound_hugetlb(m, pfn, order)
    st.folios.append(folio)
    return folio


def prep_compound_hugetlb(m: Machine, head: int, order: int) -> None:
    """``prep_compound_page(page, order)`` (mm/page_alloc.c: ``__SetPageHead``,
    ``prep_compound_tail`` for every tail, ``prep_compound_head``) plus the allocation refcount
    (head 1, tails 0) and the HugeTLB mark, every struct page written through the vmemmap."""
    nr = 1 << order
    flags = int(read_field(m, head, "flags")[0])
    write_field(m, head, "flags", flags | (1 << PG(m, "PG_head")))         # __SetPageHead
    write_field(m, head, "_refcount", 1)                                    # allocated
    prep_compound_tail(m, head, np.arange(1, nr, dtype=np.int64), order)
    write_field(m, head + np.arange(1, nr, dtype=np.int64), "_refcount", 0)
    prep_compound_head(m, head, order)
    folio_set_hugetlb(m, head, True)
    # __prep_new_huge_page (6.1.192 mm/hugetlb.c) / init_new_hugetlb_folio (6.x):
    # INIT_LIST_HEAD(&folio->lru), then subpool, cgroup and cgroup_rsvd set to NULL
    va = int(head_va(m, head))
    write_field(m, head, "lru_next", va + 8)
    write_field(m, head, "lru_prev", va + 8)
    off, _ = hugetlb_hwpoison_location(m)
    if m.kernel.layout == "folio":   # page[2] (6.2-6.11) or page[3] (6.12) of struct folio
        for f in ("_hugetlb_subpool", "_hugetlb_cgroup", "_hugetlb_cgroup_rsvd"):
            write_field(m, head + off, f, 0)
    else:                            # page_private(head + SUBPAGE_INDEX_SUBPOOL .. _RSVD)
        write_field(m, head + np.arange(1, 4, dtype=np.int64), "private", 0)


def folio_set_hugetlb(m: Machine, head: int, on: bool = True) -> None:
    """Mark (``on``) or unmark the folio at ``head`` as HugeTLB, per ``m.kernel.hugetlb_marker``:
    ``set_compound_page_dtor(page, HUGETLB_PAGE_DTOR)`` (<= 6.1; unmarking restores
    ``COMPOUND_PAGE_DTOR``), 6.6.y ``__folio_set_hugetlb`` (``page_type &= ~PG_hugetlb``;
    ``__folio_clear_hugetlb``: ``|= PG_hugetlb``), 6.12 ``page_type = PGTY_hugetlb << 24``
    (clear: ``UINT_MAX``)."""
    mark = m.kernel.hugetlb_marker
    if mark == "dtor":
        write_field(m, head + 1, "compound_dtor", HUGETLB_PAGE_DTOR if on else COMPOUND_PAGE_DTOR)
        return
    pt = int(read_field(m, head, "page_type")[0])
    if mark == "pg_hugetlb":
        pt = pt & ~PG_HUGETLB_PAGE_TYPE if on else pt | PG_HUGETLB_PAGE_TYPE
    else:
        pt = PGTY_HUGETLB << 24 if on else 0xFFFFFFFF
    write_field(m, head, "page_type", pt)


def hugetlb_hwpoison_location(m: Machine) -> tuple[int, str]:
    """Where a HugeTLB folio keeps its list of poisoned subpages (``raw_hwp_list_head``), as
    (struct page offset from the head, field): up to 6.1 ``page_private(head +
    SUBPAGE_INDEX_HWPOISON)`` = ``page[4].private`` (6.1.192 mm/memory-failure.c, with
    CONFIG_CGROUP_HUGETLB); from 6.2 (dad6a5eb5556) ``folio->_hugetlb_hwpoison`` in page[2]; in
    6.12 struct folio has four struct pages and the field sits in page[3] (DWARF of Debian's
    6.12.117, ``vmemlab/layouts/6.12.117.json``)."""
    if struct_layout_name(m.kernel) == "6.12":
        return 3, "_hugetlb_hwpoison"
    if m.kernel.layout == "folio":
        return 2, "_hugetlb_hwpoison"
    return SUBPAGE_INDEX_HWPOISON, "private"


def folio_test_hugetlb(m: Machine, head: int) -> bool:
    """``folio_test_hugetlb(folio)`` / ``PageHeadHuge(page)`` of the head at ``head``:
    <= 6.1 ``page[1].compound_dtor == HUGETLB_PAGE_DTOR`` (PG_head set); 6.6.y
    ``(page_type & (PAGE_TYPE_BASE | PG_hugetlb)) == PAGE_TYPE_BASE``; 6.12
    ``page_type >> 24 == PGTY_hugetlb``."""
    mark = m.kernel.hugetlb_marker
    if mark == "dtor":
        flags = int(read_field(m, head, "flags")[0])
        return bool(flags >> PG(m, "PG_head") & 1) and \
            int(read_field(m, head + 1, "compound_dtor")[0]) == HUGETLB_PAGE_DTOR
    pt = int(read_field(m, head, "page_type")[0])
    if mark == "pg_hugetlb":
        return pt & (0xF0000000 | PG_HUGETLB_PAGE_TYPE) == 0xF0000000
    return pt >> 24 == PGTY_HUGETLB


def _find(m: Machine, folio: HugetlbFolio) -> HugetlbFolio:
    st = _state(m)
    if not isinstance(folio, HugetlbFolio):
        raise ParameterError("folio", folio, "a HugetlbFolio from alloc_hugetlb_folio()")
    if folio.dissolved or all(f is not folio for f in st.folios):
        raise KernelError("EINVAL", "dissolve_free_huge_page",
                          f"pfn {folio.head_pfn:#x} is not a HugeTLB page any more (already "
                          f"dissolved)")
    return folio
