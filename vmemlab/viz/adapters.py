"""Read-only adapters between the engine and the drawings.

Nothing here changes a model object or decides anything the kernel would decide: these helpers
only locate a compound page's vmemmap pages and walk the page tables with the engine's own
lookups (``m.pgtables.resolve`` / ``resolve_pfn`` / ``pmd_entry`` / ``pte``) and frame columns
(``m.frames.refcount`` / ``home`` / ``kind`` / ``pfn`` / ``order``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ParameterError
from ..frames import DEVICE, HOME_NAMES
from ..memremap import pgmap_altmap, pgmap_vmemmap_nr
from ..page import pte_is_ro
from ..units import format_size

if TYPE_CHECKING:
    from ..machine import Machine
    from ..memremap import DevPagemap

#: what the drawing functions accept: a :class:`~vmemlab.plan.Plan` (its machine and pgmap) or
#: an explicit ``(machine, pgmap)`` pair
Source = Any


def as_source(src: Source) -> tuple[Machine, DevPagemap]:
    """``(machine, pgmap)`` of a :class:`~vmemlab.plan.Plan` or of a ``(machine, pgmap)`` pair."""
    if isinstance(src, tuple) and len(src) == 2:
        return src[0], src[1]
    m, pg = getattr(src, "_machine", None), getattr(src, "_pgmap", None)
    if m is None or pg is None:
        raise ParameterError("source", type(src).__name__,
                             "a vmemlab.Plan or a (Machine, DevPagemap) pair")
    return m, pg


def source_label(m: Machine, pgmap: DevPagemap) -> str:
    """``'x86_64 · 6.6 · 1G pages · map=mem'`` for titles."""
    size = pgmap_vmemmap_nr(pgmap) << m.arch.page_shift
    where = "dev" if pgmap_altmap(pgmap) is not None else "mem"
    return f"{m.arch.name} · kernel {m.kernel.name} · {format_size(size)} pages · map={where}"


def nr_compound_pages(m: Machine, pgmap: DevPagemap) -> int:
    """Compound pages in the pgmap's ranges."""
    ps, nr = m.arch.page_shift, pgmap_vmemmap_nr(pgmap)
    return sum(((e - s) >> ps) // nr for s, e in pgmap.ranges)


def compound_vpns(m: Machine, pgmap: DevPagemap, index: int = 0) -> np.ndarray:
    """vmemmap page numbers holding the struct pages of compound page ``index`` (range 0)."""
    a = m.arch
    nr = pgmap_vmemmap_nr(pgmap)
    n = ((pgmap.ranges[0][1] - pgmap.ranges[0][0]) >> a.page_shift) // nr
    if not 0 <= index < n:
        raise ParameterError("index", index, f"a compound page index from 0 to {n - 1}")
    first_pfn = (pgmap.ranges[0][0] >> a.page_shift) + index * nr
    lo = (first_pfn * a.struct_page_size) >> a.page_shift
    hi = -(-((first_pfn + nr) * a.struct_page_size) >> a.page_shift)
    return np.arange(lo, hi, dtype=np.int64)


@dataclass
class Mapping:
    """What the page tables say about a run of vmemmap pages (arrays are per vpn)."""

    vpns: np.ndarray
    frame: np.ndarray  # frame id (-1 unmapped)
    sub: np.ndarray  # page inside the frame
    home: np.ndarray  # RAM / DEVICE
    pfn: np.ndarray  # physical pfn of the mapped page
    leaf: np.ndarray  # mapped by a PMD leaf (not a PTE)
    first: np.ndarray  # first vpn of the run mapping this physical page
    nmap: np.ndarray  # vpns of the run mapping the same physical page

    @property
    def reused(self) -> np.ndarray:
        """vpns mapping a physical page an earlier vpn of the run already maps."""
        return (self.frame >= 0) & ~self.first


def read_mapping(m: Machine, vpns: np.ndarray) -> Mapping:
    """Walk the page tables for ``vpns`` (engine lookups only)."""
    vpns = np.asarray(vpns, np.int64)
    frame, sub = m.pgtables.resolve(vpns)
    home, pfn = m.pgtables.resolve_pfn(vpns)
    bits = m.pgtables.pte_bits
    leaf = np.array([(e := m.pgtables.pmd_entry(int(k))) is not None and e[0] == "leaf"
                     for k in (vpns >> bits).tolist()], bool)
    key = frame * (1 << 40) + sub
    _, first_idx, inverse, counts = np.unique(key, return_index=True, return_inverse=True,
                                              return_counts=True)
    first = np.zeros(vpns.size, bool)
    first[first_idx] = True
    return Mapping(vpns, frame, sub, home, pfn, leaf, first & (frame >= 0), counts[inverse])


def frame_label(m: Machine, fid: int) -> str:
    """``'frame #12 · RAM pfn 0x10000000001'`` / ``'2M block #3 · device pfn 0x1000600'``."""
    f = m.frames
    order = int(f.order[fid])
    where = HOME_NAMES[int(f.home[fid])]
    size = "page" if order == 0 else f"{format_size(1 << (order + m.arch.page_shift))} block"
    return f"{size} #{fid} · {where} pfn {int(f.pfn[fid]):#x}"


def pages_by_home_kind(m: Machine, include_boot: bool = False) -> dict[tuple[int, int], int]:
    """Pages held by live frames, keyed ``(home, kind)`` (boot memmap left out by default)."""
    f = m.frames
    live = f.live()
    if not include_boot:
        live = live[~f.boot[live]]
    pages = np.int64(1) << f.order[live].astype(np.int64)
    out: dict[tuple[int, int], int] = {}
    for h, k, p in zip(f.home[live].tolist(), f.kind[live].tolist(), pages.tolist()):
        out[(h, k)] = out.get((h, k), 0) + p
    return out


def device_frame_spans(m: Machine, include_boot: bool = False) -> list[tuple[int, int]]:
    """Contiguous ``[pfn, pfn_end)`` spans of live device (altmap) frames, sorted."""
    f = m.frames
    live = f.live()
    live = live[(f.home[live] == DEVICE) & (include_boot | ~f.boot[live])]
    if live.size == 0:
        return []
    s = f.pfn[live]
    e = s + (np.int64(1) << f.order[live].astype(np.int64))
    order = np.argsort(s)
    spans: list[tuple[int, int]] = []
    for a, b in zip(s[order].tolist(), e[order].tolist()):
        if spans and a <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], b))
        else:
            spans.append((a, b))
    return spans


def is_hvo_source(src: Any) -> bool:
    """Whether ``src`` is a ``(machine, HugetlbFolio)`` pair (:mod:`vmemlab.hugetlb_vmemmap`)."""
    return (isinstance(src, tuple) and len(src) == 2
            and type(src[1]).__name__ == "HugetlbFolio")


def hvo_span(m: Machine, folio: Any) -> tuple[int, int, np.ndarray]:
    """``(head_pfn, nr_pages, vpns)`` of a HugeTLB folio's struct pages."""
    a = m.arch
    head, nr = int(folio.head_pfn), int(folio.nr_pages)
    lo = (head * a.struct_page_size) >> a.page_shift
    hi = -(-((head + nr) * a.struct_page_size) >> a.page_shift)
    return head, nr, np.arange(lo, hi, dtype=np.int64)


def pte_read_only(m: Machine, vpns: np.ndarray) -> np.ndarray:
    """Read-only vmemmap PTEs (HVO), through :func:`vmemlab.page.pte_is_ro` when present."""
    return np.asarray(pte_is_ro(m, vpns), bool)
