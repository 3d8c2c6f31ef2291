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

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ParameterError, VmemlabError
from .units import as_int, as_int_array

if TYPE_CHECKING:
    from .kernels import Kernel
    from .machine import Machine
    from .memremap import DevPagemap

SIZEOF_STRUCT_PAGE = 64

#: include/linux/poison.h: ``TAIL_MAPPING ((void *) 0x400 + POISON_POINTER_DELTA)``, with
#: x86_64's ``CONFIG_ILLEGAL_POINTER_VALUE`` 0xdead000000000000 (arch/x86/Kconfig; both read
#: in 6.1.192)
POISON_POINTER_DELTA = 0xDEAD000000000000
TAIL_MAPPING = POISON_POINTER_DELTA + 0x400

#: enum compound_dtor_id (5.17 include/linux/mm.h): NULL, COMPOUND_PAGE, HUGETLB_PAGE, TRANSHUGE
NULL_COMPOUND_DTOR, COMPOUND_PAGE_DTOR, HUGETLB_PAGE_DTOR, TRANSHUGE_PAGE_DTOR = 0, 1, 2, 3

#: zone indices on x86_64 (enum zone_type with DMA, DMA32, MOVABLE, DEVICE configured)
ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, ZONE_MOVABLE, ZONE_DEVICE = 0, 1, 2, 3, 4
#: the model's page->flags field layout (config dependent in the kernel; see module doc)
NODES_WIDTH, ZONES_WIDTH = 10, 3
NODES_PGSHIFT = 64 - NODES_WIDTH
ZONES_PGSHIFT = NODES_PGSHIFT - ZONES_WIDTH
#: ``LAST_CPUPID_SHIFT`` = ``LAST__PID_SHIFT`` 8 + ``NR_CPUS_BITS`` 13 (Debian: CONFIG_NR_CPUS=8192,
#: CONFIG_NUMA_BALANCING=y), in page->flags just below the zone field (include/linux/
#: page-flags-layout.h; both generated layouts give 30 and 21)
LAST_CPUPID_WIDTH = 21
LAST_CPUPID_PGSHIFT = ZONES_PGSHIFT - LAST_CPUPID_WIDTH
LAST_CPUPID_MASK = (1 << LAST_CPUPID_WIDTH) - 1

#: a kernel-pointer-looking value standing for ``struct dev_pagemap *`` (id in the low bits)
PGMAP_POINTER_BASE = 0xFFFF888000000000
#: a kernel-pointer-looking value standing for a device-dax inode's ``struct address_space *``
MAPPING_POINTER_BASE = 0xFFFF888100000000

_PG_517 = ["locked", "referenced", "uptodate", "dirty", "lru", "active", "workingset",
           "waiters", "error", "slab", "owner_priv_1", "arch_1", "reserved", "private",
           "private_2", "writeback", "head", "mappedtodisk", "reclaim", "swapbacked",
           "unevictable", "mlocked", "uncached", "hwpoison", "young", "idle"]
_PG_6X = ["locked", "writeback", "referenced", "uptodate", "dirty", "lru", "head", "waiters",
          "active", "workingset", "error", "slab", "owner_priv_1", "arch_1", "reserved",
          "private", "private_2", "mappedtodisk", "reclaim", "swapbacked", "unevictable",
          "mlocked", "uncached", "hwpoison", "young", "idle"]
_PG_612 = ["locked", "writeback", "referenced", "uptodate", "dirty", "lru", "head", "waiters",
           "active", "workingset", "owner_priv_1", "owner_2", "arch_1", "reserved", "private",
           "private_2", "reclaim", "swapbacked", "unevictable", "mlocked", "hwpoison", "young",
           "idle"]
#: ``enum pageflags`` bit numbers per table (see the module docstring for the config):
#: "5.17" (5.17-6.1), "folio" (6.6), "6.12"
PAGEFLAGS: dict[str, dict[str, int]] = {
    "5.17": {f"PG_{n}": i for i, n in enumerate(_PG_517)},
    "folio": {f"PG_{n}": i for i, n in enumerate(_PG_6X)},
    "6.12": {f"PG_{n}": i for i, n in enumerate(_PG_612)},
}

#: HugeTLB folio markers: 6.6.y page type (``PAGE_TYPE_BASE`` 0xf0000000, ``PG_hugetlb``
#: 0x800, set by clearing the bit; kernel-facts §0a 8) and 6.12 ``PGTY_hugetlb`` (0xf4, stored
#: as ``page_type = PGTY_hugetlb << 24``)
PG_HUGETLB_PAGE_TYPE = 0x00000800
PGTY_HUGETLB = 0xF4
#: include/linux/hugetlb.h (<= 6.1; 6.1.192 read): ``enum { SUBPAGE_INDEX_SUBPOOL = 1,
#: SUBPAGE_INDEX_CGROUP, SUBPAGE_INDEX_CGROUP_RSVD, SUBPAGE_INDEX_HWPOISON, __NR_USED_SUBPAGE }``
#: with CONFIG_CGROUP_HUGETLB and CONFIG_MEMORY_FAILURE (Debian sets both)
SUBPAGE_INDEX_SUBPOOL, SUBPAGE_INDEX_CGROUP, SUBPAGE_INDEX_CGROUP_RSVD, SUBPAGE_INDEX_HWPOISON = (
    1, 2, 3, 4)


class VmemmapFault(VmemlabError):
    """An access the kernel could not make: the vmemmap address is not mapped ("BUG: unable to
    handle page fault"), or a write hits a read-only vmemmap PTE (HVO tails)."""


# -- layout ----------------------------------------------------------------------------------
_COMMON = [
    ("flags", "<u8", 0), ("compound_head", "<u8", 8), ("lru_next", "<u8", 8),
    ("pgmap", "<u8", 8), ("lru_prev", "<u8", 16), ("zone_device_data", "<u8", 16),
    ("mapping", "<u8", 24), ("index", "<u8", 32), ("private", "<u8", 40),
    ("_mapcount", "<i4", 48), ("page_type", "<u4", 48), ("_refcount", "<i4", 52),
    ("memcg_data", "<u8", 56), ("words", ("<u8", (8,)), 0),
]
_LAYOUT_517_PAGE2 = [
    ("compound_dtor", "u1", 16), ("compound_order", "u1", 17), ("compound_mapcount", "<i4", 20),
    ("compound_nr", "<u4", 24),
    ("_compound_pad_1", "<u8", 8), ("hpage_pinned_refcount", "<i4", 16),
    ("deferred_list_next", "<u8", 24), ("deferred_list_prev", "<u8", 32),
]
_LAYOUT_518_PAGE1 = [
    ("compound_dtor", "u1", 16), ("compound_order", "u1", 17), ("compound_mapcount", "<i4", 20),
    ("compound_pincount", "<i4", 24), ("compound_nr", "<u4", 28),
    ("_compound_pad_1", "<u8", 8), ("_compound_pad_2", "<u8", 16),
    ("deferred_list_next", "<u8", 24), ("deferred_list_prev", "<u8", 32),
]
_FOLIO_PAGE2 = [
    ("_flags_2", "<u8", 0), ("_head_2", "<u8", 8), ("_hugetlb_subpool", "<u8", 16),
    ("_hugetlb_cgroup", "<u8", 24), ("_hugetlb_cgroup_rsvd", "<u8", 32),
    ("_hugetlb_hwpoison", "<u8", 40), ("_deferred_list_next", "<u8", 16),
    ("_deferred_list_prev", "<u8", 24),
]
_LAYOUT_FOLIO = [
    ("_flags_1", "<u8", 0), ("_head_1", "<u8", 8), ("_folio_avail", "<u8", 16),
    ("_entire_mapcount", "<i4", 24), ("_nr_pages_mapped", "<i4", 28), ("_pincount", "<i4", 32),
    ("_folio_nr_pages", "<u4", 36),
] + _FOLIO_PAGE2
_LAYOUT_612 = [
    ("_flags_1", "<u8", 0), ("_head_1", "<u8", 8), ("_large_mapcount", "<i4", 16),
    ("_entire_mapcount", "<i4", 20), ("_nr_pages_mapped", "<i4", 24), ("_pincount", "<i4", 28),
    ("_folio_nr_pages", "<u4", 32),
    ("_flags_2", "<u8", 0), ("_head_2", "<u8", 8), ("_deferred_list_next", "<u8", 16),
    ("_deferred_list_prev", "<u8", 24),
    ("_flags_3", "<u8", 0), ("_head_3", "<u8", 8), ("_hugetlb_subpool", "<u8", 16),
    ("_hugetlb_cgroup", "<u8", 24), ("_hugetlb_cgroup_rsvd", "<u8", 32),
    ("_hugetlb_hwpoison", "<u8", 40),
]
#: source-derived tables by :func:`struct_layout_name`
_SOURCE_LAYOUTS = {"5.17": _LAYOUT_517_PAGE2, "5.18": _LAYOUT_518_PAGE1,
                   "6.6": _LAYOUT_FOLIO, "6.12": _LAYOUT_612}


def layout_key(kernel: Kernel) -> str:
    """``"5.17"`` (pincount in page[2]), ``"5.18"`` (5.17 layout, pincount in page[1]) or
    ``"folio"``."""
    if kernel.layout == "folio":
        return "folio"
    return "5.17" if kernel.pincount == "page2" else "5.18"


def struct_layout_name(kernel: Kernel) -> str:
    """The exact struct page / folio table of ``kernel``: ``"5.17"``, ``"5.18"`` (5.18-6.1),
    ``"6.6"`` or ``"6.12"``."""
    name = getattr(kernel, "struct_layout", "")
    if name in _SOURCE_LAYOUTS:
        if name in ("5.17", "5.18"):
            return layout_key(kernel)  # pincount decides page[1] vs page[2] (5232c63f46fd)
        return name
    return {"folio": "6.6"}.get(layout_key(kernel), layout_key(kernel))


def pageflags_table(kernel: Kernel) -> dict[str, int]:
    """``enum pageflags`` of ``kernel``: the generated layout's if there is one, else the
    source-derived table (5.17-6.1 order, 6.6, 6.12)."""
    gen = load_layout(kernel.name)
    if gen is not None:
        return gen["pageflags"]
    return PAGEFLAGS[{"6.6": "folio", "6.12": "6.12"}.get(struct_layout_name(kernel), "5.17")]


def struct_page_dtype(kernel: Kernel) -> np.dtype:
    """The 64-byte ``struct page`` of ``kernel`` as a numpy dtype with overlapping fields: the
    generated layout (:func:`load_layout`) when ``vmemlab/layouts/<kernel>.json`` exists, else
    the source-derived table of :func:`struct_layout_name`."""
    gen = load_layout(kernel.name)
    if gen is not None:
        return _dtype_from_layout(gen)
    fields = _COMMON + _SOURCE_LAYOUTS[struct_layout_name(kernel)]
    return np.dtype({"names": [f[0] for f in fields], "formats": [f[1] for f in fields],
                     "offsets": [f[2] for f in fields], "itemsize": SIZEOF_STRUCT_PAGE})


# -- generated layouts (issue 12 §3) ------------------------------------------------------------
#: keys every generated layout must have (schema 1, /work/wt/_brief/layout-schema.md)
LAYOUT_REQUIRED = ("schema", "variant", "release", "sizeof", "page", "page1", "page2",
                   "pageflags", "zones", "flags_layout")
#: struct page members the engine reads or writes; a generated layout must give them all
_PAGE_MEMBERS_USED = ("flags", "compound_head", "lru_next", "lru_prev", "pgmap",
                      "zone_device_data", "mapping", "index", "private", "_mapcount",
                      "page_type", "_refcount", "memcg_data")
_LAYOUT_CACHE: dict[str, dict[str, Any] | None] = {}


def layouts_dir() -> Any:
    """The package directory holding the generated layouts (``vmemlab/layouts``)."""
    from importlib.resources import files

    return files("vmemlab") / "layouts"


def load_layout(variant: str) -> dict[str, Any] | None:
    """The generated layout of kernel ``variant`` (``vmemlab/layouts/<variant>.json``, written by
    ``validation/`` from the packaged kernel's debug info), or ``None`` if there is none.

    Schema 1: ``page``/``page1``/``page2`` map member names to ``[offset, size, signed]``
    (page1/page2 offsets relative to that tail's struct page), ``pageflags`` maps ``PG_*`` to
    bit numbers, ``zones`` the ``enum zone_type``, ``flags_layout`` the ``page->flags`` field
    shifts and widths.  A file that lacks a required key or member raises ``ValueError`` (a
    broken generator must not silently fall back)."""
    import json

    if variant in _LAYOUT_CACHE:
        return _LAYOUT_CACHE[variant]
    res = layouts_dir() / f"{variant}.json"
    out: dict[str, Any] | None = None
    if res.is_file():
        out = json.loads(res.read_text())
        missing = [k for k in LAYOUT_REQUIRED if k not in out]
        if missing:
            raise ValueError(f"layout {variant}.json lacks {', '.join(missing)}")
        if out["schema"] != 1:
            raise ValueError(f"layout {variant}.json has schema {out['schema']}, expected 1")
        gone = [n for n in _PAGE_MEMBERS_USED if n not in out["page"]]
        if gone:
            raise ValueError(f"layout {variant}.json: struct page lacks {', '.join(gone)}")
        if out["sizeof"].get("struct page") != SIZEOF_STRUCT_PAGE:
            raise ValueError(f"layout {variant}.json: sizeof(struct page) "
                             f"{out['sizeof'].get('struct page')}, the model needs 64")
    _LAYOUT_CACHE[variant] = out
    return out


def _np_format(size: int, signed: bool) -> str:
    if size not in (1, 2, 4, 8):
        raise ValueError(f"member size {size} is not an integer width")
    return ("<i" if signed else "<u") + str(size) if size > 1 else ("i1" if signed else "u1")


def _dtype_from_layout(gen: dict[str, Any]) -> np.dtype:
    """A struct page dtype from a generated layout: page, then page1 and page2 members (all
    overlapping at their offsets within the 64 bytes), plus the model's ``words`` view."""
    names, formats, offsets = [], [], []
    for part in ("page", "page1", "page2", "page3"):
        for name, (off, size, signed) in gen.get(part, {}).items():
            if name in names or off + size > SIZEOF_STRUCT_PAGE:
                continue
            names.append(name)
            formats.append(_np_format(int(size), bool(signed)))
            offsets.append(int(off))
    names.append("words")
    formats.append(("<u8", (8,)))
    offsets.append(0)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                     "itemsize": SIZEOF_STRUCT_PAGE})


def PG(m: Machine, name: str) -> int:  # noqa: N802 - kernel name
    """Bit number of page flag ``name`` (``"PG_head"`` or ``"head"``) for ``m``'s kernel."""
    key = name if name.startswith("PG_") else f"PG_{name}"
    table = pageflags_table(m.kernel)
    try:
        return table[key]
    except KeyError:
        raise ParameterError("flag", name, "one of " + ", ".join(table)) from None


def zone_node_flags(zone: int, nid: int = 0) -> int:
    """``page->flags`` as ``__init_single_page`` leaves it before any flag is set:
    ``set_page_links()`` (zone and node fields) and ``page_cpupid_reset_last()`` (the
    last_cpupid field all ones: ``page->flags |= LAST_CPUPID_MASK << LAST_CPUPID_PGSHIFT``,
    6.1.192 include/linux/mm.h; the real-kernel check found it in Debian's 6.12.117 and 6.1)."""
    return ((nid << NODES_PGSHIFT) | (zone << ZONES_PGSHIFT)
            | (LAST_CPUPID_MASK << LAST_CPUPID_PGSHIFT))


def page_zonenum_from_flags(flags: int) -> int:
    return (int(flags) >> ZONES_PGSHIFT) & ((1 << ZONES_WIDTH) - 1)


# -- the store -------------------------------------------------------------------------------
@dataclass
class InitRecord:
    """A recorded initialiser: it wrote the struct pages of pfns ``[lo, hi)``; ``fill(rows,
    pfns)`` writes their contents into ``rows`` (a structured array, one row per pfn)."""

    lo: int
    hi: int
    fill: Callable[[np.ndarray, np.ndarray], None]
    owner: int | None = None  # pgmap token, for forget()
    what: str = ""


class StructPageStore:
    """Materialised vmemmap pages of one machine: ``(home, pfn)`` of a physical page -> a row of
    ``PAGE_SIZE / 64`` struct pages.  See the module docstring."""

    def __init__(self, m: Machine) -> None:
        a = m.arch
        if a.struct_page_size != SIZEOF_STRUCT_PAGE:
            raise ParameterError("struct_page_size", a.struct_page_size,
                                 "64: the struct page contents model follows the 64-byte x86_64 "
                                 "layout (other sizes are modelled for memory costs only)")
        self.m = m
        self.per_page = a.STRUCT_PAGES_PER_PAGE
        self.dtype = struct_page_dtype(m.kernel)
        self.layout = layout_key(m.kernel)
        self.pool = np.zeros((64, self.per_page), self.dtype)
        self._raw = self.pool.view(np.uint64).reshape(len(self.pool), -1)  # same memory, words
        self.slot: dict[tuple[int, int], int] = {}
        self.key_of_slot: dict[int, tuple[int, int]] = {}
        self.owner: dict[tuple[int, int], int | None] = {}
        self.free_slots: list[int] = []
        self.n_slots = 0
        self.records: list[InitRecord] = []
        self.pgmaps: dict[int, Any] = {}
        self.mappings: dict[int, Any] = {}
        self.materialised = 0  # physical pages ever materialised (a cost counter)
        m.frames.on_free.append(self.drop_frames)
        if m.boot_ram_end:
            self.add_init_record(0, m.boot_ram_end >> a.page_shift, self._boot_ram_fill,
                                 what="boot RAM memmap_init")

    # -- tokens standing for kernel pointers --------------------------------------------------
    def pgmap_token(self, pgmap: DevPagemap) -> int:
        """The value ``page->pgmap`` holds for ``pgmap`` (a fake kernel pointer)."""
        for tok, p in self.pgmaps.items():
            if p is pgmap:
                return tok
        tok = PGMAP_POINTER_BASE + 0x200 * (len(self.pgmaps) + 1)
        self.pgmaps[tok] = pgmap
        return tok

    def mapping_token(self, obj: Any) -> int:
        """The value ``page->mapping`` holds for an address_space stand-in ``obj``."""
        for tok, p in self.mappings.items():
            if p == obj:
                return tok
        tok = MAPPING_POINTER_BASE + 0x400 * (len(self.mappings) + 1)
        self.mappings[tok] = obj
        return tok

    # -- records --------------------------------------------------------------------------------
    def add_init_record(self, lo: int, hi: int, fill: Callable[[np.ndarray, np.ndarray], None],
                        owner: int | None = None, what: str = "") -> InitRecord:
        """Record an initialiser of pfns ``[lo, hi)``; it is replayed into each physical page
        materialised from now on.  Callers record right after populating a fresh memmap (new
        frames, never materialised), so no stored page needs refreshing."""
        rec = InitRecord(lo, hi, fill, owner, what)
        self.records.append(rec)
        self._apply_to_materialised(rec)
        return rec

    def _edge_vpns(self, lo: int, hi: int) -> np.ndarray:
        """Vmemmap pages holding struct pages of pfns ``[lo, hi)`` that may also hold struct
        pages of other pfns: the first and the last (a range's memmap need not fill whole
        pages: 64K pages hold 1024 struct pages, more than a 2 MiB subsection has)."""
        per = self.per_page
        first, last = lo // per, (hi - 1) // per
        if last - first < 65536:
            # a range smaller than a section can sit inside a PMD block other ranges share
            # (arm64 4K before 6.1 maps partial sections with whole blocks): every page counts
            return np.arange(first, last + 1, dtype=np.int64)
        return np.unique(np.array([first, last], np.int64))

    def _apply_to_materialised(self, rec: InitRecord) -> None:
        """A new record also writes pages that were materialised before it existed: a vmemmap
        page shared with a range mapped earlier (and read since).  The interior of a new
        range's memmap is freshly populated, so only its edge pages can be affected."""
        if not self.slot:
            return
        m, per = self.m, self.per_page
        vpns = self._edge_vpns(rec.lo, rec.hi)
        home, ppfn = m.pgtables.resolve_pfn(vpns)
        for vpn, h, p in zip(vpns.tolist(), home.tolist(), ppfn.tolist()):
            s = self.slot.get((h, p)) if p >= 0 else None
            if s is None:
                continue
            pfns = vpn * per + np.arange(per, dtype=np.int64)
            sel = (pfns >= rec.lo) & (pfns < rec.hi)
            row = self.pool[s]
            tmp = row[sel].copy()
            rec.fill(tmp, pfns[sel])
            row[sel] = tmp

    def forget(self, pgmap: DevPagemap) -> None:
        """``memunmap_pages`` dropped ``pgmap``: its records go.  A vmemmap page that other
        ranges still use keeps what the kernel left in it (the stale struct pages of the
        removed range, which ``remove_pfn_range_from_zone`` poisons only with DEBUG_VM): such
        pages are materialised first, while the records still say what was written.  Pages
        whose frames were freed were dropped when they were freed (:meth:`drop_frames`)."""
        tok = None
        for t, p in self.pgmaps.items():
            if p is pgmap:
                tok = t
        if tok is None:
            return
        mine = [r for r in self.records if r.owner == tok]
        if not mine:
            return
        edges = np.unique(np.concatenate([self._edge_vpns(r.lo, r.hi) for r in mine]))
        frames, _ = self.m.pgtables.resolve(edges)
        live = edges[frames >= 0]
        if live.size:
            self.locate(live * self.per_page)
        self.records = [r for r in self.records if r.owner != tok]

    # -- rows -----------------------------------------------------------------------------------
    def _alloc_slot(self, key: tuple[int, int]) -> int:
        if self.free_slots:
            s = self.free_slots.pop()
        else:
            if self.n_slots == len(self.pool):
                new = np.zeros((2 * len(self.pool), self.per_page), self.dtype)
                raw = new.view(np.uint64).reshape(len(new), -1)
                raw[: self.n_slots] = self._raw[: self.n_slots]  # word copy, not field by field
                self.pool, self._raw = new, raw
            s = self.n_slots
            self.n_slots += 1
        self._raw[s] = 0
        self.slot[key] = s
        self.key_of_slot[s] = key
        return s

    def _reserve_slots(self, n: int) -> None:
        """Grow the pool once so that ``n`` more pages fit without repeated doubling."""
        need = self.n_slots + max(0, n - len(self.free_slots))
        if need > len(self.pool):
            new = np.zeros((max(need, 2 * len(self.pool)), self.per_page), self.dtype)
            raw = new.view(np.uint64).reshape(len(new), -1)
            raw[: self.n_slots] = self._raw[: self.n_slots]
            self.pool, self._raw = new, raw

    def drop(self, key: tuple[int, int]) -> None:
        """Forget a physical page's contents (it was freed)."""
        s = self.slot.pop(key, None)
        if s is not None:
            del self.key_of_slot[s]
            self.owner.pop(key, None)
            self.free_slots.append(s)

    def drop_frames(self, fids: np.ndarray) -> None:
        """Forget the contents of every page of the given frames: they are being freed
        (:class:`~vmemlab.frames.FrameTable` calls this), and a frame allocated later -- the
        altmap hands the same device pfns out again -- starts from its own initialisation."""
        if not self.slot:
            return
        f = self.m.frames
        fids = np.atleast_1d(np.asarray(fids, np.int64))
        keys = np.array(list(self.slot), np.int64).reshape(-1, 2)
        for h in np.unique(f.home[fids]).tolist():
            sel = f.home[fids] == h
            starts = f.pfn[fids[sel]]
            ends = starts + (np.int64(1) << f.order[fids[sel]].astype(np.int64))
            srt = np.argsort(starts)
            starts, ends = starts[srt], ends[srt]
            mine = keys[keys[:, 0] == h]
            i = np.searchsorted(starts, mine[:, 1], side="right") - 1
            hit = (i >= 0) & (mine[:, 1] < ends[np.maximum(i, 0)])
            for key in map(tuple, mine[hit].tolist()):
                self.drop(key)

    def copy_page(self, dst: tuple[int, int], src: tuple[int, int]) -> None:
        """``copy_page(to, from)`` between two physical vmemmap pages (``src`` materialised)."""
        s = self.slot[src]
        d = self.slot.get(dst)
        if d is None:
            d = self._alloc_slot(dst)
        self._raw[d] = self._raw[s]
        self.owner[dst] = self.owner.get(src)

    def _materialise(self, key: tuple[int, int], vpn: int) -> int:
        """First touch of a physical page, reached through ``vpn``: replay the records."""
        s = self._alloc_slot(key)
        per = self.per_page
        pfns = vpn * per + np.arange(per, dtype=np.int64)
        owner = None
        rows = self.pool[s]
        for rec in self.records:
            if rec.hi <= pfns[0] or rec.lo > pfns[-1]:
                continue
            if rec.lo <= pfns[0] and pfns[-1] < rec.hi:
                rec.fill(rows, pfns)  # the whole page: fill the stored row in place
            else:
                sel = (pfns >= rec.lo) & (pfns < rec.hi)
                tmp = rows[sel].copy()
                rec.fill(tmp, pfns[sel])
                rows[sel] = tmp
            if rec.owner is not None:
                owner = rec.owner
        self.owner[key] = owner
        self.materialised += 1
        return s

    def locate(self, pfns: np.ndarray, write: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(row, index in row) of each pfn's struct page, materialising pages on first touch.
        Raises :class:`VmemmapFault` before changing anything if an address is unmapped or (for
        a write) read-only."""
        m = self.m
        pfns = np.atleast_1d(as_int_array("pfn", pfns, 0, (1 << (64 - m.arch.page_shift)) - 1))
        per = self.per_page
        vpns = pfns // per
        uvpn, inv = np.unique(vpns, return_inverse=True)
        frame, sub = m.pgtables.resolve(uvpn)
        if (frame < 0).any():
            bad = int(uvpn[np.flatnonzero(frame < 0)[0]])
            bad_pfn = int(pfns[np.flatnonzero(vpns == bad)[0]])
            raise VmemmapFault(
                f"BUG: unable to handle page fault for address "
                f"{m.arch.vmemmap_start + bad_pfn * SIZEOF_STRUCT_PAGE:#x}: the struct page of pfn "
                f"{bad_pfn:#x} is not mapped (no memory section / memmap populated there)")
        if write:
            ro = pte_is_ro(m, uvpn)
            if ro.any():
                bad = int(uvpn[np.flatnonzero(ro)[0]])
                raise VmemmapFault(
                    f"BUG: write to read-only vmemmap page {bad} (address "
                    f"{m.arch.vmemmap_start + (bad << m.arch.page_shift):#x}): the PTE is "
                    f"PAGE_KERNEL_RO (an HVO-remapped tail vmemmap page)")
        home = m.frames.home[frame]
        ppfn = m.frames.pfn[frame] + sub
        keys = list(zip(home.tolist(), ppfn.tolist()))
        get = self.slot.get
        rows_u = np.fromiter((get(k, -1) for k in keys), np.int64, len(keys))
        missing = np.flatnonzero(rows_u < 0)
        if missing.size:
            # several vmemmap pages may alias one physical page: materialise each page once
            first: dict[tuple[int, int], int] = {}
            for i in missing.tolist():
                first.setdefault(keys[i], i)
            new = list(first.items())
            slots = self._materialise_many([k for k, _ in new],
                                           uvpn[np.array([i for _, i in new], np.int64)])
            made = dict(zip((k for k, _ in new), slots.tolist()))
            rows_u[missing] = [made[keys[i]] for i in missing.tolist()]
        return rows_u[inv], pfns % per

    def _materialise_many(self, keys: list[tuple[int, int]], vpns: np.ndarray) -> np.ndarray:
        """:meth:`_materialise` for many pages at once: the records are replayed over all their
        struct pages in one vectorised pass per record (same result, page for page)."""
        if len(keys) <= 2:
            return np.array([self._materialise(k, int(v)) for k, v in zip(keys, vpns.tolist())],
                            np.int64)
        per = self.per_page
        n = len(keys)
        self._reserve_slots(n)
        reuse = [self.free_slots.pop() for _ in range(min(n, len(self.free_slots)))]
        fresh = list(range(self.n_slots, self.n_slots + n - len(reuse)))
        self.n_slots += len(fresh)
        slots = np.array(reuse + fresh, np.int64)
        self.slot.update(zip(keys, slots.tolist()))
        self.key_of_slot.update(zip(slots.tolist(), keys))
        pfns = (np.asarray(vpns, np.int64)[:, None] * per
                + np.arange(per, dtype=np.int64)[None, :]).ravel()
        contiguous = not reuse
        if contiguous:  # fresh slots are zeroed and adjacent: replay straight into the pool
            rows = self.pool[fresh[0]:fresh[0] + n].reshape(-1)
        else:
            rows = np.zeros(n * per, self.dtype)
        owners: list[int | None] = [None] * n
        lo_pfn, hi_pfn = int(pfns.min()), int(pfns.max())
        for rec in self.records:
            if rec.hi <= lo_pfn or rec.lo > hi_pfn:
                continue
            sel = (pfns >= rec.lo) & (pfns < rec.hi)
            if not sel.any():
                continue
            if sel.all():
                rec.fill(rows, pfns)
            else:
                tmp = rows[sel].copy()
                rec.fill(tmp, pfns[sel])
                rows[sel] = tmp
            if rec.owner is not None:
                for i in np.flatnonzero(sel.reshape(n, per).any(axis=1)).tolist():
                    owners[i] = rec.owner
        if not contiguous:
            self.pool[slots] = rows.reshape(n, per)
        for k, o in zip(keys, owners):
            self.owner[k] = o
        self.materialised += n
        return slots

    # -- the boot memmap of System RAM --------------------------------------------------------
    def _boot_ram_fill(self, rows: np.ndarray, pfns: np.ndarray) -> None:
        """``memmap_init()`` -> ``__init_single_page()`` for boot RAM, then
        ``memblock_free_pages()`` hands every page to the buddy allocator (refcount 0).  Pages
        memblock kept (kernel image, memmap itself), ``PageBuddy`` and the buddy order are not
        modelled."""
        va = head_va(self.m, pfns)
        rows["flags"] = zone_node_flags(ZONE_NORMAL)
        rows["lru_next"] = va + np.uint64(8)
        rows["lru_prev"] = va + np.uint64(8)
        rows["_mapcount"] = -1
        rows["_refcount"] = 0


def pte_is_ro(m: Machine, vpns: np.ndarray) -> np.ndarray:
    """Whether each vmemmap page's PTE is read-only (HVO); PMD leaves are always RW."""
    fn = getattr(m.pgtables, "pte_is_ro", None)
    if fn is None:
        return np.zeros(np.size(vpns), bool)
    return fn(np.atleast_1d(np.asarray(vpns, np.int64)))


def struct_pages(m: Machine) -> StructPageStore:
    """The machine's struct page store, attached to ``m.struct_pages`` on first use."""
    if m.struct_pages is None:
        m.struct_pages = StructPageStore(m)
    return m.struct_pages


# -- vectorised field access -------------------------------------------------------------------
def _check_field(store: StructPageStore, name: str) -> None:
    if not isinstance(name, str) or name not in store.dtype.names:
        raise ParameterError("field", name, f"a struct page field of the {store.layout!r} "
                             f"layout: {', '.join(store.dtype.names)}")


def read_field(m: Machine, pfns: np.ndarray | int, name: str) -> np.ndarray:
    """``pfn_to_page(pfn)->name`` for each pfn, read through the vmemmap."""
    st = struct_pages(m)
    _check_field(st, name)
    rows, idx = st.locate(pfns)
    return st.pool[name][rows, idx]


def write_field(m: Machine, pfns: np.ndarray | int, name: str, values: Any) -> None:
    """``pfn_to_page(pfn)->name = value`` through the vmemmap (last write wins for repeats)."""
    st = struct_pages(m)
    _check_field(st, name)
    rows, idx = st.locate(pfns, write=True)
    view = st.pool[name]
    view[rows, idx] = np.asarray(values).astype(view.dtype, casting="unsafe")


def add_field(m: Machine, pfns: np.ndarray | int, name: str, deltas: Any) -> np.ndarray:
    """``atomic_add(delta, &pfn_to_page(pfn)->name)`` for each pfn; repeated pfns (and pfns
    whose struct pages alias) accumulate.  Integer fields wrap like the kernel's atomics.
    Returns the new values, read back per pfn."""
    st = struct_pages(m)
    _check_field(st, name)
    rows, idx = st.locate(pfns, write=True)
    view = st.pool[name]
    d = np.broadcast_to(np.asarray(deltas), rows.shape).astype(view.dtype, casting="unsafe")
    np.add.at(view, (rows, idx), d)
    return view[rows, idx]


def set_flag_bits(m: Machine, pfns: np.ndarray | int, flag: str, on: bool = True) -> None:
    """``__SetPageX`` / ``__ClearPageX`` on each pfn's own struct page."""
    st = struct_pages(m)
    rows, idx = st.locate(pfns, write=True)
    bit = np.uint64(1 << PG(m, flag))
    view = st.pool["flags"]
    if on:
        view[rows, idx] |= bit
    else:
        view[rows, idx] &= ~bit


def test_flag_bits(m: Machine, pfns: np.ndarray | int, flag: str) -> np.ndarray:
    """``test_bit(PG_x, &page->flags)`` for each pfn (no head/tail policy applied)."""
    f = read_field(m, pfns, "flags")
    return (f >> np.uint64(PG(m, flag))) & np.uint64(1) == 1


test_flag_bits.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def head_va(m: Machine, pfns: np.ndarray | int) -> np.ndarray:
    """Kernel virtual address of the struct page of each pfn (``pfn_to_page``)."""
    return (np.uint64(m.arch.vmemmap_start)
            + np.asarray(pfns, np.int64).astype(np.uint64) * np.uint64(SIZEOF_STRUCT_PAGE))


def va_to_pfn(m: Machine, va: np.ndarray | int) -> np.ndarray:
    """``page_to_pfn`` of a struct page virtual address."""
    va = np.asarray(va, np.uint64)
    return ((va - np.uint64(m.arch.vmemmap_start)) // np.uint64(SIZEOF_STRUCT_PAGE)).astype(
        np.int64)


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
        from .vmemmap_optimization import compound_head_from_info, compound_info_has_mask

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
