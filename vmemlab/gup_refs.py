"""The struct page fields GUP-fast reads and writes, and what a GUP call reports.

:class:`StructPageRefs` reads and adds ``_refcount`` and the pin count of device struct pages
(the ``atomic_t`` arithmetic of include/linux/page_ref.h and the pin-count placement of
include/linux/mm.h / mm_types.h per kernel variant); :class:`CompoundGeometry` says where a
pgmap's compound pages start; :class:`GupCounters` / :class:`GupResult` are the exact counts
and the ``pages[]`` of one call; :func:`struct_page_footprint` counts struct-page cache lines
and vmemmap pages by virtual and physical address.  The mm/gup.c model itself is
:mod:`vmemlab.gup`, which re-exports everything here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import page
from .frames import DEVICE, RAM
from .include.memremap import pgmap_altmap, pgmap_vmemmap_nr
from .mm_init import CACHE_LINE
from .sparse_vmemmap import compound_nr_pages

if TYPE_CHECKING:
    from .include.memremap import DevPagemap
    from .machine import Machine


#: include/linux/mm.h as in 6.1.192 (later kernels renumbered them -- the model only uses them
#: as bits)
FOLL_WRITE = 0x01


FOLL_GET = 0x04


FOLL_LONGTERM = 0x10000


FOLL_PIN = 0x40000


#: include/linux/mm.h: ``#define GUP_PIN_COUNTING_BIAS (1U << 10)``
GUP_PIN_COUNTING_BIAS = 1 << 10


INT_MAX = (1 << 31) - 1


VARIANTS = ("base", "per-subpage-head", "head-once")


def wrap32(x: np.ndarray | int) -> np.ndarray | int:
    """The value an ``atomic_t`` holds after an add: two's-complement 32-bit wrap."""
    return ((np.asarray(x, np.int64) + (1 << 31)) % (1 << 32)) - (1 << 31) \
        if isinstance(x, np.ndarray) else ((x + (1 << 31)) % (1 << 32)) - (1 << 31)


class _SparseStore:
    """Fallback holder of ``_refcount`` / pin-count values per pfn (sorted numpy arrays).

    Used while :mod:`vmemlab.page` is absent; it keeps *absolute* values only for pfns GUP has
    touched, and computes untouched values from ``memmap_init_zone_device``: 1 on a head or an
    order-0 page, 0 on a tail, pin count 0.  It does not model vmemmap aliasing, which is safe
    here because GUP writes only heads and ``page[1]``/``page[2]``, which are never aliased
    (kernel-facts.md §7: head and tails 1-63 are private)."""

    def __init__(self) -> None:
        self.keys: dict[str, np.ndarray] = {}
        self.vals: dict[str, np.ndarray] = {}

    def read(self, pfns: np.ndarray, name: str, default: np.ndarray) -> np.ndarray:
        keys = self.keys.get(name)
        out = np.array(default, np.int64, copy=True)
        if keys is None or keys.size == 0 or pfns.size == 0:
            return out
        idx = np.searchsorted(keys, pfns)
        idx_c = np.minimum(idx, keys.size - 1)
        hit = keys[idx_c] == pfns
        out[hit] = self.vals[name][idx_c[hit]]
        return out

    def write(self, pfns: np.ndarray, name: str, values: np.ndarray) -> None:
        """Set absolute values (``pfns`` distinct)."""
        keys = self.keys.get(name, np.empty(0, np.int64))
        vals = self.vals.get(name, np.empty(0, np.int64))
        if keys.size:
            idx = np.minimum(np.searchsorted(keys, pfns), keys.size - 1)
            hit = keys[idx] == pfns
            vals[idx[hit]] = values[hit]
            new = ~hit
        else:
            new = np.ones(pfns.size, np.bool_)
        if new.any():
            keys = np.concatenate((keys, pfns[new]))
            vals = np.concatenate((vals, values[new]))
            order = np.argsort(keys, kind="stable")
            keys, vals = keys[order], vals[order]
        self.keys[name], self.vals[name] = keys, vals

    def snapshot(self) -> dict[str, dict[int, int]]:
        return {n: dict(zip(self.keys[n].tolist(), self.vals[n].tolist())) for n in self.keys}


class StructPageRefs:
    """Reads and writes ``_refcount`` and the pin count of device struct pages.

    Adapter over :mod:`vmemlab.page` when it provides ``read_field`` / ``add_field`` (see
    :func:`_page_module`), else over :class:`_SparseStore`.  Values are the signed 32-bit
    ``atomic_t`` contents."""

    def __init__(self, m: Machine) -> None:
        self.m = m
        self.page = _page_module(m)
        if self.page is None:
            store = getattr(m, "_gup_refs", None)
            if store is None:
                store = _SparseStore()
                m._gup_refs = store  # type: ignore[attr-defined]
            self.store = store

    def _init_refcount(self, pfns: np.ndarray) -> np.ndarray:
        out = np.zeros(pfns.size, np.int64)
        for pgmap in self.m.pgmaps:
            g = compound_geometry(self.m, pgmap)
            sel = (pfns >= g.first_pfn) & (pfns < g.end_pfn)
            out[sel] = ((pfns[sel] - g.first_pfn) % g.nr == 0).astype(np.int64)
        return out

    def read(self, pfns: np.ndarray, name: str) -> np.ndarray:
        pfns = np.asarray(pfns, np.int64)
        if self.page is not None:
            return np.asarray(self.page.read_field(self.m, pfns, self._field(name)), np.int64)
        default = self._init_refcount(pfns) if name == "refcount" else np.zeros(pfns.size, np.int64)
        return self.store.read(pfns, name, default)

    def add(self, pfns: np.ndarray, name: str, deltas: np.ndarray) -> None:
        """``atomic_add`` of ``deltas`` (pfns distinct), wrapping at 32 bits."""
        pfns = np.asarray(pfns, np.int64)
        if pfns.size == 0:
            return
        old = self.read(pfns, name)
        new = wrap32(old + np.asarray(deltas, np.int64))
        if self.page is not None:
            self.page.add_field(self.m, pfns, self._field(name), new - old)
        else:
            self.store.write(pfns, name, new)


    def _field(self, name: str) -> str:
        """The :mod:`vmemlab.page` field: ``_refcount``, or the layout's pin count
        (``hpage_pinned_refcount`` / ``compound_pincount`` / ``_pincount``)."""
        if name == "refcount":
            return "_refcount"
        return self.page.pincount_location(self.m)[1]


def _page_module(m: Machine) -> Any:
    """:mod:`vmemlab.page` when it can hold GUP's references for ``m``: it has the vectorised
    accessors and ``memmap_init_zone_device`` has recorded the contents of every device memmap
    (otherwise heads would read as zeros).  Decided once per machine, so a machine never mixes
    the two holders.  Adapter note: gup.py only uses ``read_field``, ``add_field``,
    ``struct_pages(m).records`` and ``pincount_location``."""
    cached = getattr(m, "_gup_page_backend", None)
    if cached is not None:
        return cached or None
    ok = page is not None and all(hasattr(page, n) for n in (
        "read_field", "add_field", "struct_pages", "pincount_location"))
    if ok and m.pgmaps:
        try:
            recs = page.struct_pages(m).records
        except Exception:  # noqa: BLE001 - e.g. a struct page size page.py does not model
            recs = []
        for pgmap in m.pgmaps:
            g = compound_geometry(m, pgmap)
            if not any(r.lo <= g.first_pfn < r.hi for r in recs):
                ok = False
    elif ok:
        return page  # nothing mapped yet: do not cache the decision
    m._gup_page_backend = page if ok else False  # type: ignore[attr-defined]
    return page if ok else None


@dataclass(frozen=True)
class CompoundGeometry:
    """Where the compound pages of a pgmap start and how big they are.

    ``memmap_init_zone_device`` starts at the range start, or with an altmap at
    ``base_pfn + vmem_altmap_offset`` (kernel-facts.md §7), and steps by ``pgmap_vmemmap_nr``."""

    first_pfn: int
    end_pfn: int
    nr: int
    order: int

    def head(self, pfns: np.ndarray) -> np.ndarray:
        return self.first_pfn + ((pfns - self.first_pfn) // self.nr) * self.nr


def compound_geometry(m: Machine, pgmap: DevPagemap) -> CompoundGeometry:
    ps = m.arch.page_shift
    start, end = pgmap.ranges[0][0] >> ps, pgmap.ranges[-1][1] >> ps
    altmap = pgmap_altmap(pgmap)
    if altmap is not None:
        start = altmap.base_pfn + altmap.vmem_altmap_offset()
    nr = pgmap_vmemmap_nr(pgmap) if m.kernel.compound_devmap else 1
    return CompoundGeometry(start, end, nr, nr.bit_length() - 1)


def pincount_offset(m: Machine, order: int) -> int | None:
    """Index of the struct page holding the pin count of a compound page of ``order``, or
    ``None`` when pins use ``GUP_PIN_COUNTING_BIAS`` (kernel-facts.md §6, §9):
    5.7-5.17 ``page[2].hpage_pinned_refcount`` when order > 1 (``hpage_pincount_available``);
    5.18+ ``page[1].compound_pincount`` for any head; 6.x folio ``_pincount`` (``page[1]``)."""
    if order == 0:
        return None
    if m.kernel.pincount == "page2":
        return 2 if order > 1 else None
    return 1


@dataclass
class GupCounters:
    """What one GUP (or unpin/put) call did to memory; every count is exact for that call."""

    op: str
    variant: str
    nr_pages: int = 0
    pages_entries: int = 0
    grabs: int = 0
    compound_groups: int = 0
    struct_pages_touched: int = 0
    struct_pages_ram: int = 0
    struct_pages_device: int = 0
    cache_lines_virtual: int = 0
    cache_lines: int = 0
    cache_lines_ram: int = 0
    cache_lines_device: int = 0
    #: distinct physical vmemmap pages touched (first line of each is an isolated miss)
    vmemmap_pages_ram: int = 0
    vmemmap_pages_device: int = 0
    atomics: int = 0
    atomics_ram: int = 0
    atomics_device: int = 0
    #: the refcount / pin-count adds among ``atomics`` (the rest are PG_referenced set_bits)
    ref_atomics: int = 0
    pgtable_entries: dict[str, int] = field(default_factory=dict)
    pgmap_lookups: int = 0

    @property
    def pgtable_entries_total(self) -> int:
        return sum(self.pgtable_entries.values())

    @property
    def lines_near_ram(self) -> int:
        """Physical RAM lines touched after the first one in the same vmemmap page."""
        return self.cache_lines_ram - self.vmemmap_pages_ram

    @property
    def lines_near_device(self) -> int:
        return self.cache_lines_device - self.vmemmap_pages_device

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pgtable_entries_total"] = self.pgtable_entries_total
        return d


@dataclass
class GupResult:
    """``pages[]`` of a successful GUP-fast call as runs of consecutive pfns, plus counters."""

    m: Machine
    flags: int
    variant: str
    run_pfn: np.ndarray
    run_len: np.ndarray
    counters: GupCounters
    #: struct pages the call read or wrote, as half-open pfn intervals (may overlap)
    touched: tuple[np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.empty(0, np.int64), np.empty(0, np.int64)), repr=False)
    #: the references were given back (``unpin_user_pages`` / ``put_page``): a second release
    #: of the same ``pages[]`` would drop somebody else's references, so it is refused
    released: bool = False

    def touched_struct_pages(self) -> tuple[np.ndarray, np.ndarray]:
        """Every struct page the call touched (sorted pfns) and where it lives: ``RAM`` (0) or
        ``DEVICE`` (1), the home of the vmemmap page holding it.  Materialised: small calls."""
        s, e = _merge_intervals(*self.touched)
        pfns = _expand_runs(s, e - s)
        return pfns, _homes_of_pfns(self.m, pfns)

    @property
    def nr(self) -> int:
        return int(self.run_len.sum())

    @property
    def pages(self) -> np.ndarray:
        """The ``pages[]`` array (as pfns), materialised on demand."""
        return _expand_runs(self.run_pfn, self.run_len)


def _expand_runs(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    lens = np.asarray(lens, np.int64)
    total = int(lens.sum())
    if total == 0:
        return np.empty(0, np.int64)
    offs = np.cumsum(lens) - lens
    return np.repeat(np.asarray(starts, np.int64) - offs, lens) + np.arange(total, dtype=np.int64)


def _merge_intervals(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of half-open intervals ``[a, b)`` as sorted disjoint intervals."""
    keep = b > a
    a, b = a[keep], b[keep]
    if a.size == 0:
        return a, b
    order = np.argsort(a, kind="stable")
    a, b = a[order], b[order]
    run_max = np.maximum.accumulate(b)
    new = np.ones(a.size, np.bool_)
    new[1:] = a[1:] > run_max[:-1]
    starts = a[new]
    grp = np.cumsum(new) - 1
    ends = np.zeros(starts.size, np.int64)
    np.maximum.at(ends, grp, b)
    return starts, ends


def _resolve_vpns(m: Machine, vpns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(home, phys pfn)`` of vmemmap pages ``vpns``: the init_mm walk
    (:meth:`~vmemlab.pagetables.KernelPageTables.resolve_pfn`, one PMD entry at a time); every
    page a struct page lies in must be mapped."""
    home, pfn = m.pgtables.resolve_pfn(vpns)
    if (pfn < 0).any():
        bad = int(vpns[np.flatnonzero(pfn < 0)[0]])
        raise AssertionError(f"struct page in unmapped vmemmap page {bad}: the model lost a page")
    return home.astype(np.int64), pfn


def _distinct(a: np.ndarray) -> np.ndarray:
    """``np.unique(a)`` by one stable sort: the keys come in runs (vmemmap pages in address
    order), which timsort takes in one pass -- 0.5 ms for the half a million vmemmap pages of
    128 GiB, against 25 ms for quicksort and 35 ms for numpy 2's hash-based ``np.unique``."""
    a = np.sort(a, kind="stable")
    keep = np.ones(a.size, np.bool_)
    keep[1:] = a[1:] != a[:-1]
    return a[keep]


def struct_page_footprint(m: Machine, starts: np.ndarray, ends: np.ndarray) -> dict[str, int]:
    """Count what touching struct pages of pfns ``[starts, ends)`` (any overlap) reads.

    Returns distinct struct pages (by home of the vmemmap page holding each struct page's first
    byte), distinct virtual 64-byte lines, distinct *physical* lines (aliases through deduplicated
    vmemmap pages count once) and distinct physical vmemmap pages, split RAM/device.  Exact when
    ``sizeof(struct page)`` divides ``PAGE_SIZE`` (the 64-byte default); for other sizes a struct
    page straddling two vmemmap pages is attributed to the page of its first byte."""
    a = m.arch
    sps, P, L = a.struct_page_size, a.PAGE_SIZE, CACHE_LINE
    ps = a.page_shift
    s, e = _merge_intervals(np.asarray(starts, np.int64), np.asarray(ends, np.int64))
    out = dict(struct_pages=0, struct_pages_ram=0, struct_pages_device=0, lines_virtual=0,
               lines=0, lines_ram=0, lines_device=0, pages_ram=0, pages_device=0)
    if s.size == 0:
        return out
    out["struct_pages"] = int((e - s).sum())
    bs, be = s * sps, e * sps  # byte intervals
    ls, le = bs // L, -(-be // L)
    vs, ve = _merge_intervals(ls, le)
    out["lines_virtual"] = int((ve - vs).sum())
    # vmemmap pages an interval covers whole: every line of the page, and the struct pages
    # whose first byte lies in it, whatever the interval (a long run, per-subpage-head GUP:
    # nearly all of its pages)
    w0, w1 = -(-bs // P), be // P
    nw = np.maximum(w1 - w0, 0)
    wvpn = _expand_runs(w0, nw)
    whome, wppfn = _resolve_vpns(m, wvpn)
    wnsp = -(-((wvpn + 1) * P) // sps) - -(-(wvpn * P) // sps)  # ceil((v+1)P/sps) - ceil(vP/sps)
    # the other pieces, one per (interval, vmemmap page it covers part of): the first page
    # of an interval that starts inside it, the last of one that ends inside it (once if
    # both are the same page)
    v0, v1 = bs >> ps, (be - 1) >> ps
    head = w0 > v0
    tail = (w1 <= v1) & ~(head & (v0 == v1))
    idx = np.concatenate((np.flatnonzero(head), np.flatnonzero(tail)))
    vpn = np.concatenate((v0[head], v1[tail]))
    page_b0 = vpn * P
    pb0 = np.maximum(bs[idx], page_b0)
    pb1 = np.minimum(be[idx], page_b0 + P)
    # struct pages whose first byte lies in this vmemmap page
    first_pfn = np.maximum(s[idx], -(-page_b0 // sps))
    end_pfn = np.minimum(e[idx], -(-(page_b0 + P) // sps))
    nsp = np.maximum(end_pfn - first_pfn, 0)
    lo = (pb0 - page_b0) // L
    hi = -(-(pb1 - page_b0) // L)
    home, ppfn = _resolve_vpns(m, vpn)
    out["struct_pages_ram"] = int(wnsp[whome == RAM].sum() + nsp[home == RAM].sum())
    out["struct_pages_device"] = int(wnsp[whome == DEVICE].sum() + nsp[home == DEVICE].sum())
    # physical pages: (home, pfn) keys; a page some interval covers whole has all its lines
    # read, whatever else touches it
    kbits = max(int(max(wppfn.max(initial=0), ppfn.max(initial=0))).bit_length(), 1)
    wkeys = _distinct((whome << kbits) | wppfn)
    keys = (home << kbits) | ppfn
    part = ~np.isin(keys, wkeys)
    keys, lo, hi = keys[part], lo[part], hi[part]
    # the partly read pages: the union of each page's line ranges [lo, hi), with the pages
    # laid end to end (one slot of per_page lines each) and sorted once
    ukeys, inv = np.unique(keys, return_inverse=True)
    per_page = P // L + 1
    c_lo = inv * per_page + lo
    c_hi = inv * per_page + hi
    order = np.argsort(c_lo, kind="stable")
    c_lo, c_hi, h = c_lo[order], c_hi[order], keys[order] >> kbits
    prev = np.concatenate(([-1], np.maximum.accumulate(c_hi)[:-1]))
    contrib = np.maximum(c_hi - np.maximum(c_lo, prev), 0)
    whole_home = wkeys >> kbits
    for name, hm in (("ram", RAM), ("device", DEVICE)):
        whole = int((whole_home == hm).sum())
        out[f"lines_{name}"] = whole * (P // L) + int(contrib[h == hm].sum())
        out[f"pages_{name}"] = whole + int((ukeys >> kbits == hm).sum())
    out["lines"] = out["lines_ram"] + out["lines_device"]
    return out


def _homes_of_pfns(m: Machine, pfns: np.ndarray) -> np.ndarray:
    """Home (RAM/DEVICE) of the vmemmap page holding each struct page (any order of pfns)."""
    a = m.arch
    vpn = (pfns * a.struct_page_size) >> a.page_shift
    order = np.argsort(vpn, kind="stable")
    home = np.empty(pfns.size, np.int64)
    home[order] = _resolve_vpns(m, vpn[order])[0]
    return home


def gup_references(m: Machine, pgmap: DevPagemap, window: int) -> dict[str, np.ndarray]:
    """References GUP holds, summed over each ``window``-page window of the pgmap's compound
    area: ``gets`` (refcount above the initial 1, minus pins) and ``pins`` (pin count, or
    refcount bias units for pages without one).  Lets tests compare variants whose pages differ
    in order (base: per subpage; compound: on the head)."""
    g = compound_geometry(m, pgmap)
    refs = StructPageRefs(m)
    nwin = (g.end_pfn - g.first_pfn) // window
    pfns = g.first_pfn + np.arange(nwin * window, dtype=np.int64)
    is_head = (pfns - g.first_pfn) % g.nr == 0
    hp = pfns[is_head]
    rc = refs.read(hp, "refcount") - 1
    off = pincount_offset(m, g.order)
    if off is None:
        pins = rc // GUP_PIN_COUNTING_BIAS
        gets = rc % GUP_PIN_COUNTING_BIAS
    else:
        pins = refs.read(hp + off, "pincount")
        gets = rc - pins
    win = (hp - g.first_pfn) // window
    return {"gets": np.bincount(win, weights=gets, minlength=nwin).astype(np.int64),
            "pins": np.bincount(win, weights=pins, minlength=nwin).astype(np.int64)}


def folio_maybe_dma_pinned(m: Machine, pgmap: DevPagemap, pfn: int) -> bool:
    """``folio_maybe_dma_pinned``: pin count > 0 for pages with one, else
    ``(unsigned)refcount >= GUP_PIN_COUNTING_BIAS``."""
    g = compound_geometry(m, pgmap)
    head = int(g.head(np.array([pfn]))[0])
    refs = StructPageRefs(m)
    off = pincount_offset(m, g.order)
    if off is not None:
        return bool(refs.read(np.array([head + off]), "pincount")[0] > 0)
    return bool((int(refs.read(np.array([head]), "refcount")[0]) & 0xFFFFFFFF)
                >= GUP_PIN_COUNTING_BIAS)


def compound_nr_struct_pages(m: Machine, pgmap: DevPagemap) -> int:
    """Struct pages ``memmap_init_zone_device`` writes per compound page (for reference)."""
    return compound_nr_pages(m, pgmap_altmap(pgmap), pgmap)
