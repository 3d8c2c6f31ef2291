"""include/linux/mm_types.h: the ``struct page`` / ``struct folio`` layouts as numpy dtypes.

One 64-byte dtype per kernel variant, with the kernel's overlapping unions as overlapping
fields (the table is in :mod:`vmemlab.page`'s docstring): source-derived tables for 5.17,
5.18-6.1, 6.6 and 6.12, or a layout generated from a packaged kernel's debug info
(``vmemlab/layouts/<variant>.json``, :func:`load_layout`).  Also the pointer poison values of
include/linux/poison.h and ``enum compound_dtor_id`` (include/linux/mm.h, 5.17).
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..kernels import Kernel


SIZEOF_STRUCT_PAGE = 64


#: include/linux/poison.h: ``TAIL_MAPPING ((void *) 0x400 + POISON_POINTER_DELTA)``, with
#: x86_64's ``CONFIG_ILLEGAL_POINTER_VALUE`` 0xdead000000000000 (arch/x86/Kconfig; both read
#: in 6.1.192)
POISON_POINTER_DELTA = 0xDEAD000000000000


TAIL_MAPPING = POISON_POINTER_DELTA + 0x400


#: enum compound_dtor_id (5.17 include/linux/mm.h): NULL, COMPOUND_PAGE, HUGETLB_PAGE, TRANSHUGE
NULL_COMPOUND_DTOR, COMPOUND_PAGE_DTOR, HUGETLB_PAGE_DTOR, TRANSHUGE_PAGE_DTOR = 0, 1, 2, 3


#: a kernel-pointer-looking value standing for ``struct dev_pagemap *`` (id in the low bits)
PGMAP_POINTER_BASE = 0xFFFF888000000000


#: a kernel-pointer-looking value standing for a device-dax inode's ``struct address_space *``
MAPPING_POINTER_BASE = 0xFFFF888100000000


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
    return files("vmemlab") / "layouts"


def load_layout(variant: str) -> dict[str, Any] | None:
    """The generated layout of kernel ``variant`` (``vmemlab/layouts/<variant>.json``, written by
    ``validation/`` from the packaged kernel's debug info), or ``None`` if there is none.

    Schema 1: ``page``/``page1``/``page2`` map member names to ``[offset, size, signed]``
    (page1/page2 offsets relative to that tail's struct page), ``pageflags`` maps ``PG_*`` to
    bit numbers, ``zones`` the ``enum zone_type``, ``flags_layout`` the ``page->flags`` field
    shifts and widths.  A file that lacks a required key or member raises ``ValueError`` (a
    broken generator must not silently fall back)."""
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
