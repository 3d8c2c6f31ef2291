"""include/linux/page-flags.h and page-flags-layout.h: ``enum pageflags`` per kernel variant,
the zone and node fields of ``page->flags``, the HugeTLB page-type markers, and the 2026
``compound_info`` mask encoding (``compound_info_has_mask``, ``_compound_head``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import ParameterError
from .memory_model import head_va, va_to_pfn
from .mm_types import load_layout, struct_layout_name

if TYPE_CHECKING:
    from ..kernels import Kernel
    from ..machine import Machine


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


def pageflags_table(kernel: Kernel) -> dict[str, int]:
    """``enum pageflags`` of ``kernel``: the generated layout's if there is one, else the
    source-derived table (5.17-6.1 order, 6.6, 6.12)."""
    gen = load_layout(kernel.name)
    if gen is not None:
        return gen["pageflags"]
    return PAGEFLAGS[{"6.6": "folio", "6.12": "6.12"}.get(struct_layout_name(kernel), "5.17")]


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


def _is_power_of_2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def compound_info_has_mask(m: Machine) -> bool:
    """``compound_info_has_mask()`` (include/linux/page-flags.h, linux-mm/linux-mm blob
    ``03e0599da9e1``; Kiryl Shutsemau, "mm: rework compound_head() for power-of-2
    sizeof(struct page)"): a power-of-two ``struct page`` (and ``CONFIG_HUGETLB_PAGE_OPTIMIZE_
    VMEMMAP`` there; the rework's copy of the gate is not stored, and sharing tail pages across
    compound pages needs it on, so the model ties it to the ``mm-2026`` variant)."""
    return bool(m.kernel.shared_tail) and _is_power_of_2(m.arch.struct_page_size)


def compound_info_mask(m: Machine, order: int) -> int:
    """``set_compound_head(tail, head, order)`` with the mask encoding: ``GENMASK(BITS_PER_LONG
    - 1, order + order_base_2(sizeof(struct page))) | 1``: the same value for every tail of
    every compound page of ``order``, whatever its head."""
    shift = order + (m.arch.struct_page_size.bit_length() - 1)
    return ((1 << 64) - 1) & ~((1 << shift) - 1) | 1


def compound_head_from_info(m: Machine, pfns: np.ndarray, info: np.ndarray) -> np.ndarray:
    """``_compound_head(page)`` with the mask encoding: ``(unsigned long)page & info`` for a
    tail (bit 0 set), the page itself otherwise.  Returns head pfns."""
    pfns = np.asarray(pfns, np.int64)
    info = np.asarray(info, np.uint64)
    tail = (info & np.uint64(1)) == 1
    out = pfns.copy()
    if tail.any():
        out[tail] = va_to_pfn(m, head_va(m, pfns[tail]) & info[tail])
    return out
