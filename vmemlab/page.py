"""``struct page`` made real: 64-byte records stored inside the physical frames the vmemmap maps.

The struct page of ``pfn`` lives at vmemmap address ``pfn * sizeof(struct page)``; the model
walks ``init_mm``'s page tables (:meth:`~vmemlab.pagetables.KernelPageTables.resolve_pfn`) to the
physical page holding that address, and keeps that physical page's contents -- ``PAGE_SIZE / 64``
struct pages -- in one row of a numpy structured array.  Because storage is keyed by the
*physical* page ``(home, pfn)``, a write through one virtual address is seen through every
virtual address that maps the same frame: the device-dax tail page shared by 4095 PTEs, or an
HVO-remapped HugeTLB vmemmap page.  The key survives a PMD split (the block's pages keep their
pfns).

Layout (``m.kernel.layout``; include/linux/mm_types.h, x86_64, 64-byte struct page)
---------------------------------------------------------------------------------
Eight 64-bit words with overlapping named fields (a numpy structured dtype with offsets):

====  ==========================================================================================
word  fields (byte offset)
====  ==========================================================================================
0     ``flags`` (0)
1     ``compound_head`` / ``lru_next`` / ``pgmap`` (8) -- bit 0 of compound_head marks a tail
2     ``lru_prev`` / ``zone_device_data`` (16)
3     ``mapping`` (24)
4     ``index`` (32)
5     ``private`` (40)
6     ``_mapcount`` / ``page_type`` (48, 32 bit), ``_refcount`` (52, 32 bit)
7     ``memcg_data`` (56)
====  ==========================================================================================

First and second tail pages reuse words 2-5 [V, mm_types.h as of each version]:

* ``"5.17"`` layout, pincount ``"page2"`` (5.7-5.17): page[1] ``compound_dtor`` (u8 @16),
  ``compound_order`` (u8 @17), ``compound_mapcount`` (@20), ``compound_nr`` (u32 @24); page[2]
  ``hpage_pinned_refcount`` (@16), ``deferred_list`` (@24/@32).
* ``"5.17"`` layout, pincount ``"page1"`` (5.18-6.1; 5232c63f46fd): page[1] adds
  ``compound_pincount`` (@24) and moves ``compound_nr`` to @28; page[2] keeps only
  ``deferred_list``.
  6.1 (Debian 6.1.192 include/linux/mm_types.h read) is this layout; HugeTLB keeps its
  subpool, cgroup, cgroup_rsvd and hwpoison list in ``page[1..4].private``
  (``SUBPAGE_INDEX_*``, include/linux/hugetlb.h 6.1.192), not in page[2].
* ``"6.6"`` (6.6.87 ``struct folio``): page[1] ``_flags_1`` (@0, order in bits 0-7 --
  ``folio_set_order``), ``_head_1`` (@8), ``_folio_avail`` (@16), ``_entire_mapcount`` (@24),
  ``_nr_pages_mapped`` (@28), ``_pincount`` (@32), ``_folio_nr_pages`` (@36); page[2]
  ``_flags_2``, ``_head_2``, ``_hugetlb_subpool`` (@16), ``_hugetlb_cgroup`` (@24),
  ``_hugetlb_cgroup_rsvd`` (@32), ``_hugetlb_hwpoison`` (@40), or ``_deferred_list`` (@16/@24)
  (the page[2] union is dad6a5eb5556, 6.2).
* ``"6.12"`` (6.12.0 / 6.12.33 ``struct folio``, kernel-facts §0a 3): page[1] ``_flags_1``,
  ``_head_1``, ``_large_mapcount`` (@16, -1 from ``prep_compound_head``), ``_entire_mapcount``
  (@20), ``_nr_pages_mapped`` (@24), ``_pincount`` (@28), ``_folio_nr_pages`` (@32); page[2]
  only ``_flags_2``, ``_head_2``, ``_deferred_list`` (@16/@24); the HugeTLB fields moved to a
  fourth struct page, page[3] (``_hugetlb_subpool`` @16 .. ``_hugetlb_hwpoison`` @40;
  ``sizeof(struct folio)`` 256), as the DWARF of Debian's 6.12.117 shows
  (``vmemlab/layouts/6.12.117.json``).

``"6.6"`` and ``"6.12"`` are both of the ``"folio"`` family (:func:`layout_key`); the exact table
is :func:`struct_layout_name`.  A kernel with a generated layout (``vmemlab/layouts/<variant>.json``,
read from the packaged kernel's debug info by ``validation/``; schema in :func:`load_layout`) takes
its offsets, ``enum pageflags`` and ``page->flags`` field positions from that file instead.

A field of a tail page is named as it is in the kernel union, so ``read_field(m, head + 1,
"_pincount")`` is ``folio->_pincount``.  Overlaps are real: in the 5.17 layout page[1]'s
``compound_nr`` overwrites half of the ``TAIL_MAPPING`` that ``prep_compound_tail`` put in
``mapping``, exactly as in the kernel.

Page flag bit numbers (``enum pageflags``, include/linux/page-flags.h) are those of x86_64
with ``CONFIG_MMU``, ``CONFIG_ARCH_USES_PG_UNCACHED`` and ``CONFIG_MEMORY_FAILURE``: the 5.17
order up to 6.1 (6.1.192 enum read: ``PG_head`` 16, ``PG_reserved`` 12, ``PG_hwpoison`` 23);
6.6 has Matthew Wilcox's "mm: Rearrange page flags" (``PG_writeback`` at 1, ``PG_head`` "must
be in bit 6"; posted 2023-08-16 as 09/13 of the series that also freed ``_folio_avail``, which
6.6.87 has); 6.12 drops ``PG_error``, ``PG_slab``, ``PG_mappedtodisk`` and ``PG_uncached`` and
adds ``PG_owner_2`` (``PG_head`` 6, ``PG_reserved`` 13, ``PG_hwpoison`` 20; kernel-facts §0a 4).
Zone and node numbers sit in the top bits: ``NODES_PGSHIFT`` 54 (``NODES_SHIFT`` 10) and
``ZONES_PGSHIFT`` 51 (3 zone bits for DMA, DMA32, NORMAL, MOVABLE, DEVICE), as
include/linux/page-flags-layout.h gives for Debian's amd64 config (``CONFIG_NODES_SHIFT=10``,
SPARSEMEM_VMEMMAP: no section field); ``last_cpupid`` (NUMA balancing, 21 bits at 30) sits
below them and ``__init_single_page`` resets it to all ones (``page_cpupid_reset_last``).
Debian 6.1+ also has the LRU_GEN fields (bits 25-29), zero at init.

Lazy initialisation
-------------------
Nothing is stored until a struct page is read or written.  Initialisers that would write
millions of struct pages (``memmap_init_zone_device`` for a TiB namespace, the boot memmap of
System RAM) *record* what they write (:meth:`StructPageStore.add_init_record`); when a physical
vmemmap page is first touched the records are replayed for the struct pages it holds, as seen
through the virtual page used to reach it.  The result is the same as eager initialisation
because every struct page the kernel leaves unwritten (tails past ``compound_nr_pages``) aliases
a written tail whose contents do not depend on the tail's index (tests compare with an eager
run).  A struct page no initialiser covers reads as zeros.  Cost is proportional to the frames
touched: one 4 KiB row per physical vmemmap page.

Errors: reading or writing the struct page of a pfn whose vmemmap address is not mapped raises
:class:`VmemmapFault` (the kernel would oops); writing through a read-only PTE (HVO tails) raises
:class:`VmemmapFault` too.  Both leave the model unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .include.hugetlb import (
    SUBPAGE_INDEX_CGROUP,
    SUBPAGE_INDEX_CGROUP_RSVD,
    SUBPAGE_INDEX_HWPOISON,
    SUBPAGE_INDEX_SUBPOOL,
)
from .include.memory_model import head_va, va_to_pfn
from .include.mm_types import (
    COMPOUND_PAGE_DTOR,
    HUGETLB_PAGE_DTOR,
    LAYOUT_REQUIRED,
    MAPPING_POINTER_BASE,
    NULL_COMPOUND_DTOR,
    PGMAP_POINTER_BASE,
    POISON_POINTER_DELTA,
    SIZEOF_STRUCT_PAGE,
    TAIL_MAPPING,
    TRANSHUGE_PAGE_DTOR,
    layout_key,
    layouts_dir,
    load_layout,
    struct_layout_name,
    struct_page_dtype,
)
from .include.page_flags import (
    LAST_CPUPID_MASK,
    LAST_CPUPID_PGSHIFT,
    LAST_CPUPID_WIDTH,
    NODES_PGSHIFT,
    NODES_WIDTH,
    PAGEFLAGS,
    PG,
    PG_HUGETLB_PAGE_TYPE,
    PGTY_HUGETLB,
    ZONE_DEVICE,
    ZONE_DMA,
    ZONE_DMA32,
    ZONE_MOVABLE,
    ZONE_NORMAL,
    ZONES_PGSHIFT,
    ZONES_WIDTH,
    compound_head_from_info,
    compound_info_has_mask,
    page_zonenum_from_flags,
    pageflags_table,
    zone_node_flags,
)
from .page_store import (
    InitRecord,
    StructPageStore,
    VmemmapFault,
    add_field,
    pte_is_ro,
    read_field,
    set_flag_bits,
    struct_pages,
    test_flag_bits,
    write_field,
)
from .units import as_int

if TYPE_CHECKING:
    from .machine import Machine

__all__ = [
    "SUBPAGE_INDEX_CGROUP", "SUBPAGE_INDEX_CGROUP_RSVD", "SUBPAGE_INDEX_HWPOISON",
    "SUBPAGE_INDEX_SUBPOOL", "head_va", "va_to_pfn", "COMPOUND_PAGE_DTOR", "HUGETLB_PAGE_DTOR",
    "LAYOUT_REQUIRED", "MAPPING_POINTER_BASE", "NULL_COMPOUND_DTOR", "PGMAP_POINTER_BASE",
    "POISON_POINTER_DELTA", "SIZEOF_STRUCT_PAGE", "TAIL_MAPPING", "TRANSHUGE_PAGE_DTOR",
    "layout_key", "layouts_dir", "load_layout", "struct_layout_name", "struct_page_dtype",
    "LAST_CPUPID_MASK", "LAST_CPUPID_PGSHIFT", "LAST_CPUPID_WIDTH", "NODES_PGSHIFT",
    "NODES_WIDTH", "PAGEFLAGS", "PG", "PG_HUGETLB_PAGE_TYPE", "PGTY_HUGETLB", "ZONE_DEVICE",
    "ZONE_DMA", "ZONE_DMA32", "ZONE_MOVABLE", "ZONE_NORMAL", "ZONES_PGSHIFT", "ZONES_WIDTH",
    "page_zonenum_from_flags", "pageflags_table", "zone_node_flags", "InitRecord",
    "StructPageStore", "VmemmapFault", "add_field", "pte_is_ro", "read_field", "set_flag_bits",
    "struct_pages", "test_flag_bits", "write_field",
]


def hvo_fake_head_enabled(m: Machine) -> bool:
    """``hugetlb_optimize_vmemmap_enabled()`` (the static key, 5.18+): on while any HugeTLB
    page has its vmemmap optimized with one reserved page (fake heads can exist)."""
    h = getattr(m, "hugetlb", None)
    return bool(h is not None and getattr(h, "fake_head_key", 0) > 0)


def compound_head_pfns(m: Machine, pfns: np.ndarray | int) -> np.ndarray:
    """``compound_head(pfn_to_page(pfn))`` for each pfn, honouring HVO fake heads."""
    pfns = np.atleast_1d(np.asarray(pfns, np.int64))
    ch = read_field(m, pfns, "compound_head")
    if m.kernel.shared_tail:  # mm-2026: compound_info holds a mask (vmemlab.vmemmap_optimization)
        if compound_info_has_mask(m):
            return compound_head_from_info(m, pfns, ch)
    tail = (ch & np.uint64(1)) == 1
    out = pfns.copy()
    out[tail] = va_to_pfn(m, ch[tail] - np.uint64(1))
    if hvo_fake_head_enabled(m) and (~tail).any():
        cand = np.flatnonzero(~tail)
        fixed = _fixed_fake_heads(m, pfns[cand])
        out[cand] = fixed
    return out


def _fixed_fake_heads(m: Machine, pfns: np.ndarray) -> np.ndarray:
    """``page_fixed_fake_head()`` over pfns (include/linux/page-flags.h, 5.18; read in 6.1.192):
    with the static key on, for a struct page at a PAGE_SIZE-aligned address that shows PG_head,
    read ``head = page[1].compound_head``; if bit 0 is set return ``head - 1``, else the page.
    A real head returns itself (its ``page[1].compound_head`` is ``page + 1``); a fake head
    returns the real head, so ``page_is_fake_head`` is "``page[1].compound_head != page + 1``"."""
    out = pfns.copy()
    per = m.arch.STRUCT_PAGES_PER_PAGE
    aligned = pfns % per == 0
    if not aligned.any():
        return out
    cand = pfns[aligned]
    is_head = test_flag_bits(m, cand, "PG_head")
    if not is_head.any():
        return out
    c2 = cand[is_head]
    nxt = read_field(m, c2 + 1, "compound_head")
    fake = (nxt & np.uint64(1)) == 1
    res = cand.copy()
    sub = res[is_head]
    sub[fake] = va_to_pfn(m, nxt[fake] - np.uint64(1))
    res[is_head] = sub
    out[aligned] = res
    return out


# -- Page handles ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Page:
    """``struct page *``: a light handle (machine + pfn).  ``page + i`` is pointer arithmetic;
    field access goes through the vmemmap (:func:`read_field`)."""

    m: Machine
    pfn: int

    @property
    def vaddr(self) -> int:
        """Offset of this struct page from ``VMEMMAP_START`` (``pfn * sizeof(struct page)``)."""
        return self.pfn * SIZEOF_STRUCT_PAGE

    @property
    def va(self) -> int:
        """Kernel virtual address of this struct page."""
        return self.m.arch.vmemmap_start + self.vaddr

    def __add__(self, i: int) -> Page:
        return Page(self.m, self.pfn + int(i))

    def __sub__(self, i: int) -> Page:
        return Page(self.m, self.pfn - int(i))

    def read(self, name: str) -> int:
        return int(read_field(self.m, self.pfn, name)[0])

    def write(self, name: str, value: int) -> None:
        write_field(self.m, self.pfn, name, value)

    def add(self, name: str, delta: int) -> int:
        return int(add_field(self.m, self.pfn, name, delta)[0])

    def __repr__(self) -> str:
        return f"Page(pfn={self.pfn:#x})"


def pfn_to_page(m: Machine, pfn: int) -> Page:
    """``pfn_to_page(pfn)`` (SPARSEMEM_VMEMMAP: ``vmemmap + pfn``); nothing is read."""
    pfn = as_int("pfn", pfn, 0, (1 << (64 - m.arch.page_shift)) - 1,
                 "a page frame number (a non-negative int)")
    return Page(m, pfn)


def page_to_pfn(page: Page) -> int:
    """``page_to_pfn(page)``: ``page - vmemmap``."""
    return page.pfn


def dump_page(page: Page) -> dict[str, int]:
    """All named fields of one struct page (``dump_page`` without the policy)."""
    st = struct_pages(page.m)
    rows, idx = st.locate(page.pfn)
    rec = st.pool[rows[0], idx[0]]
    return {n: (rec[n].tolist()) for n in st.dtype.names if n != "words"}


# -- flags -------------------------------------------------------------------------------------
def test_page_flag(page: Page, flag: str) -> bool:
    return bool(test_flag_bits(page.m, page.pfn, flag)[0])


test_page_flag.__test__ = False  # type: ignore[attr-defined]


def page_is_fake_head(page: Page) -> bool:
    """``page_is_fake_head(page)``: ``page_fixed_fake_head(page) != page``."""
    return page_fixed_fake_head(page) != page


def page_fixed_fake_head(page: Page) -> Page:
    """``page_fixed_fake_head(page)`` (include/linux/page-flags.h, 5.18; 6.1.192 read, same in
    the 6.12 trees): with the HVO static key on, a PAGE_SIZE-aligned struct page that has
    PG_head gets ``page[1].compound_head - 1`` if that word has bit 0 set -- the page itself for
    a real head (``page[1].compound_head == page + 1``), the real head for a fake one (an alias
    of the head through an HVO-remapped vmemmap page).  Otherwise ``page``."""
    m = page.m
    if not hvo_fake_head_enabled(page.m):
        return page
    return Page(m, int(_fixed_fake_heads(m, np.array([page.pfn], np.int64))[0]))


def compound_head(page: Page) -> Page:
    """``compound_head(page)`` / ``_compound_head()``: bit 0 of ``page->compound_head`` set ->
    that value - 1; else ``page_fixed_fake_head(page)``."""
    return Page(page.m, int(compound_head_pfns(page.m, page.pfn)[0]))


def PageHead(page: Page) -> bool:  # noqa: N802
    """``PageHead``: PG_head set and (5.18+) not a fake head."""
    return test_page_flag(page, "PG_head") and not page_is_fake_head(page)


def PageTail(page: Page) -> bool:  # noqa: N802
    """``PageTail``: bit 0 of ``compound_head`` or (5.18+) a fake head."""
    return bool(page.read("compound_head") & 1) or page_is_fake_head(page)


def PageCompound(page: Page) -> bool:  # noqa: N802
    """``PageCompound``: PG_head or bit 0 of ``compound_head``."""
    return test_page_flag(page, "PG_head") or bool(page.read("compound_head") & 1)


def PageReserved(page: Page) -> bool:  # noqa: N802
    return test_page_flag(page, "PG_reserved")


def PageHWPoison(page: Page) -> bool:  # noqa: N802
    """``PageHWPoison`` (PF_ANY: the page's own flag)."""
    return test_page_flag(page, "PG_hwpoison")


def SetPageHWPoison(page: Page) -> None:  # noqa: N802
    set_flag_bits(page.m, page.pfn, "PG_hwpoison")


def TestSetPageHWPoison(page: Page) -> bool:  # noqa: N802
    old = PageHWPoison(page)
    SetPageHWPoison(page)
    return old


def __SetPageHead(page: Page) -> None:  # noqa: N802
    set_flag_bits(page.m, page.pfn, "PG_head")


# -- compound metadata --------------------------------------------------------------------------
def compound_order(page: Page) -> int:
    """``compound_order(page)``: 0 unless ``PageHead``; then ``page[1].compound_order``
    (5.17-6.1) or ``folio->_flags_1 & 0xff`` (6.x ``folio_large_order``)."""
    if not PageHead(page):
        return 0
    if struct_pages(page.m).layout == "folio":
        return (page + 1).read("_flags_1") & 0xFF
    return (page + 1).read("compound_order")


def compound_nr(page: Page) -> int:
    """``compound_nr(page)``: 1 unless ``PageHead``; then ``page[1].compound_nr`` (5.17) or
    ``folio->_folio_nr_pages`` (6.x, 64-bit)."""
    if not PageHead(page):
        return 1
    if struct_pages(page.m).layout == "folio":
        return (page + 1).read("_folio_nr_pages")
    return (page + 1).read("compound_nr")


def page_pgmap(page: Page) -> Any:
    """The ``struct dev_pagemap`` ``page->pgmap`` points to (read from the head: a tail's word 1
    is its ``compound_head``), or ``None``."""
    head = compound_head(page)
    return struct_pages(page.m).pgmaps.get(head.read("pgmap"))


def is_zone_device_page(page: Page) -> bool:
    return page_zonenum_from_flags(page.read("flags")) == ZONE_DEVICE


# -- reference counts (include/linux/page_ref.h) -------------------------------------------------
def page_ref_count(page: Page) -> int:
    """``page_ref_count(page)``: this struct page's own ``_refcount``."""
    return page.read("_refcount")


def set_page_count(page: Page, v: int) -> None:
    page.write("_refcount", v)


def page_ref_add(page: Page, n: int) -> int:
    return page.add("_refcount", n)


def page_ref_sub(page: Page, n: int) -> int:
    return page.add("_refcount", -n)


def page_folio(page: Page) -> Page:
    """``page_folio(page)``: the folio is its head page's struct page."""
    return compound_head(page)


def page_count(page: Page) -> int:
    """``page_count(page)``: ``folio_ref_count(page_folio(page))``."""
    return page_ref_count(page_folio(page))


def folio_ref_count(folio: Page) -> int:
    return page_ref_count(folio)


def folio_ref_add(folio: Page, n: int) -> int:
    return page_ref_add(folio, n)


def folio_test_large(folio: Page) -> bool:
    """``folio_test_large``: ``folio_test_head``."""
    return test_page_flag(folio, "PG_head")


def folio_order(folio: Page) -> int:
    return compound_order(folio)


def folio_nr_pages(folio: Page) -> int:
    return compound_nr(folio)


# -- pin counts ----------------------------------------------------------------------------------
def pincount_location(m: Machine) -> tuple[int, str]:
    """(page offset from the head, field) where a compound page's pin count lives:
    5.7-5.17 ``compound_pincount_ptr = &page[2].hpage_pinned_refcount``; 5.18-6.1
    ``&page[1].compound_pincount``; 6.x ``folio->_pincount`` (page[1])."""
    return {"5.17": (2, "hpage_pinned_refcount"), "5.18": (1, "compound_pincount"),
            "folio": (1, "_pincount")}[layout_key(m.kernel)]


def hpage_pincount_available(page: Page) -> bool:
    """Whether the head-page pin count is used: 5.7-5.17 ``hpage_pincount_available`` (compound
    and order > 1); 5.18+ ``PageCompound`` / ``folio_test_large``."""
    if not PageCompound(page):
        return False
    if layout_key(page.m.kernel) == "5.17":
        return compound_order(compound_head(page)) > 1
    return True


def compound_pincount_ptr(page: Page) -> tuple[Page, str]:
    """``compound_pincount_ptr(head)`` as (struct page, field name)."""
    off, name = pincount_location(page.m)
    return compound_head(page) + off, name


def compound_pincount(page: Page) -> int:
    p, name = compound_pincount_ptr(page)
    return p.read(name)


def compound_pincount_add(page: Page, n: int) -> int:
    p, name = compound_pincount_ptr(page)
    return p.add(name, n)


def folio_pincount(folio: Page) -> int:
    return compound_pincount(folio)


def pincount_add_v(m: Machine, head_pfns: np.ndarray, refs: np.ndarray | int) -> np.ndarray:
    """Vectorised ``atomic_add(refs, compound_pincount_ptr(head))`` over head pfns."""
    off, name = pincount_location(m)
    return add_field(m, np.asarray(head_pfns, np.int64) + off, name, refs)
