"""mm/mm_init.c (mm/page_alloc.c before 6.4): ``memmap_init_zone_device`` and the compound
page helpers it uses, writing real struct pages (:mod:`vmemlab.page`).

``memmap_init_zone_device`` walks the pgmap's range one compound page at a time, initialises
the head with ``__init_zone_device_page`` and, for compound pages, ``compound_nr_pages(altmap,
pgmap)`` struct pages through ``memmap_init_compound`` (kernel-facts.md §7).  With an altmap the
pfns that hold the memmap itself are skipped (``start_pfn = altmap->base_pfn +
vmem_altmap_offset(altmap)``).

Two ways to run it, with the same observable result:

* **lazy** (default, what ``memremap_pages`` uses): the loop is recorded -- one
  :class:`~vmemlab.page.InitRecord` per range -- and replayed into each physical vmemmap page the
  first time a struct page in it is read or written.  A 1 TiB namespace costs nothing until
  touched.  :class:`InitStats` is the loop's count, taken per run of identical iterations (every
  full compound page writes ``compound_nr_pages`` struct pages, the last may be cut short).
* **eager** (``eager=True``, small namespaces): the kernel loop itself, writing every field
  through the vmemmap with :func:`~vmemlab.page.write_field`, counting struct pages and distinct
  cache lines as it writes.  Tests compare both.

Also here: the init-time cost model (:class:`InitCostModel`) calibrated on one cover-letter
figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .include.memremap import pgmap_altmap, pgmap_vmemmap_nr
from .include.page_flags import compound_info_has_mask, compound_info_mask
from .page import (
    COMPOUND_PAGE_DTOR,
    PG,
    SIZEOF_STRUCT_PAGE,
    TAIL_MAPPING,
    ZONE_DEVICE,
    head_va,
    layout_key,
    read_field,
    set_flag_bits,
    struct_pages,
    write_field,
    zone_node_flags,
)
from .sparse_vmemmap import compound_nr_pages

if TYPE_CHECKING:
    from .include.memremap import DevPagemap
    from .machine import Machine

#: bytes in one CPU cache line (x86_64, arm64 and ppc64 server parts modelled here: 64/128)
CACHE_LINE = 64

#: pgmap types whose pages start with refcount 0 (6.1+; kernel-facts §7 step 6)
_ZERO_REF_TYPES = ("MEMORY_DEVICE_PRIVATE", "MEMORY_DEVICE_COHERENT")


@dataclass(frozen=True)
class InitStats:
    """What one ``memmap_init_zone_device`` call did."""

    start_pfn: int
    nr_pages: int
    compound_pages: int
    pfns_per_compound: int
    struct_pages_per_compound: int
    struct_pages_initialised: int
    cache_lines_touched: int


def _prep_head_index(m: Machine) -> int:
    """Which tail's initialisation triggers ``prep_compound_head`` in ``memmap_init_compound``:
    ``pfn == head_pfn + 2`` in 5.17-6.1 (the pin count lived in page[2] when written), ``+ 1``
    after Hugh Dickins' 6.2 rework [V: both diffs read]."""
    return 1 if m.kernel.layout == "folio" else 2


@dataclass
class ZoneDeviceInit:
    """One recorded ``memmap_init_zone_device`` range: enough to write any of its struct pages
    as the kernel loop would have."""

    start_pfn: int
    end_pfn: int
    pfns_per_compound: int
    nr_written: int  #: compound_nr_pages (struct pages the loop writes per compound page)
    order: int
    pgmap_token: int
    refcount: int
    nid: int = 0
    flags_base: int = field(default=0)

    def fill(self, m: Machine, rows: np.ndarray, pfns: np.ndarray) -> None:
        """Write the struct pages of ``pfns`` (all inside the range) into ``rows``:
        ``__init_zone_device_page`` + ``memmap_init_compound`` (``prep_compound_tail``,
        ``set_page_count(0)``, ``__SetPageHead``, ``prep_compound_head``).  Tails past
        ``nr_written`` get the same contents as a written tail of their compound page: that is
        what they read through the shared vmemmap page."""
        idx = (pfns - self.start_pfn) % self.pfns_per_compound
        self._fill_words(m, rows, pfns, idx)

    def _fill_words(self, m: Machine, rows: np.ndarray, pfns: np.ndarray,
                    idx: np.ndarray) -> None:
        """The writes of :meth:`fill` as whole 64-bit words (``rows`` is a contiguous array of
        64-byte struct pages, as the store always passes): ``INIT_LIST_HEAD(&page->lru)`` is
        overwritten by ``page->pgmap`` and ``page->zone_device_data`` (they share words 1 and 2),
        so each row is the final head or tail template, plus its ``compound_head``.  The eager
        kernel loop (``eager=True``) writes field by field; tests compare the two."""
        w = rows.view(np.uint64).reshape(-1, 8)
        head = np.zeros(1, rows.dtype)                      # __init_zone_device_page
        head["flags"] = self.flags_base
        head["pgmap"] = self.pgmap_token
        head["_mapcount"] = -1
        head["_refcount"] = self.refcount
        if self.pfns_per_compound == 1:
            w[:] = head.view(np.uint64)
            return
        head["flags"] |= np.uint64(1 << PG(m, "PG_head"))   # __SetPageHead
        tail = head.copy()                                  # ... then prep_compound_tail:
        tail["flags"] = self.flags_base
        tail["mapping"] = TAIL_MAPPING
        tail["_refcount"] = 0                               # set_page_count(page, 0)
        w[:] = tail.view(np.uint64)
        w[:, 1] = head_va(m, pfns - idx) + np.uint64(1)     # set_compound_head
        if m.kernel.shared_tail:  # mm-2026: the mask encoding (vmemlab.vmemmap_optimization)
            if compound_info_has_mask(m):
                w[:, 1] = np.uint64(compound_info_mask(m, self.order))
        heads = np.flatnonzero(idx == 0)
        w[heads] = head.view(np.uint64)
        if self.nr_written > _prep_head_index(m):
            _prep_compound_head_rows(m, rows, idx, self.order)


def _prep_compound_head_rows(m: Machine, rows: np.ndarray, idx: np.ndarray, order: int) -> None:
    """``prep_compound_head(head, order)`` applied to rows of page[1] / page[2]:

    * 5.17: ``set_compound_page_dtor(COMPOUND_PAGE_DTOR)``, ``set_compound_order`` (order and,
      64-bit, ``compound_nr``), ``compound_mapcount = -1``, and if ``order > 1``
      (``hpage_pincount_available``) ``page[2].hpage_pinned_refcount = 0``;
    * 5.18-6.1: the same, with ``page[1].compound_pincount = 0`` always;
    * 6.x folio: ``folio_set_order`` (``_flags_1`` low byte, ``_folio_nr_pages``), 6.12
      ``_large_mapcount = -1``, ``_entire_mapcount = -1``, ``_nr_pages_mapped = 0``,
      ``_pincount = 0`` (mm/internal.h)."""
    lay = layout_key(m.kernel)
    p1 = idx == 1
    if lay == "folio":
        f1 = rows["_flags_1"][p1]
        rows["_flags_1"][p1] = (f1 & ~np.uint64(0xFF)) | np.uint64(order)
        rows["_folio_nr_pages"][p1] = 1 << order
        if "_large_mapcount" in rows.dtype.names:       # 6.12 (kernel-facts §0a 3)
            rows["_large_mapcount"][p1] = -1
        rows["_entire_mapcount"][p1] = -1
        rows["_nr_pages_mapped"][p1] = 0
        rows["_pincount"][p1] = 0
        return
    rows["compound_dtor"][p1] = COMPOUND_PAGE_DTOR
    rows["compound_order"][p1] = order
    rows["compound_nr"][p1] = 1 << order
    rows["compound_mapcount"][p1] = -1
    if lay == "5.18":
        rows["compound_pincount"][p1] = 0
    elif order > 1:
        rows["hpage_pinned_refcount"][idx == 2] = 0


def _altmap_hosting_fill(m: Machine, flags: int):
    """``memmap_init_range(..., MEMINIT_HOTPLUG, altmap)`` from ``move_pfn_range_to_zone`` for a
    ZONE_DEVICE range with an altmap: the struct pages of the pfns that host the memmap
    (``[base_pfn + reserve, base_pfn + vmem_altmap_offset)``) get ``__init_single_page`` and
    ``PG_reserved``, no pgmap link.  Read in 6.1.192 mm/page_alloc.c ``memmap_init_range``: for
    ZONE_DEVICE it returns without an altmap, else starts past ``altmap->reserve`` and ends at
    ``altmap->base_pfn + vmem_altmap_offset(altmap)``, calling ``__init_single_page`` and
    (MEMINIT_HOTPLUG) ``__SetPageReserved``."""

    def fill(rows: np.ndarray, pfns: np.ndarray) -> None:
        va = head_va(m, pfns)
        rows["words"] = 0
        rows["flags"] = flags
        rows["_refcount"] = 1
        rows["_mapcount"] = -1
        rows["lru_next"] = va + np.uint64(8)
        rows["lru_prev"] = va + np.uint64(8)

    return fill


def _loop_counts(m: Machine, nr_pages: int, pfns_per_compound: int,
                 per: int) -> tuple[int, int, int]:
    """(compound pages, struct pages written, cache lines touched) of the init loop, summed over
    its runs of identical iterations: ``n_compound - 1`` full ones and a last one that
    ``end_pfn`` may cut short.  Each written struct page is written through its own vmemmap
    address, so lines touched are the distinct lines of those struct pages."""
    a = m.arch
    n_compound = -(-nr_pages // pfns_per_compound) if nr_pages > 0 else 0
    if not n_compound:
        return 0, 0, 0
    last = nr_pages - (n_compound - 1) * pfns_per_compound
    runs = [(n_compound - 1, per), (1, min(per, last))]
    total = sum(k * n for k, n in runs)
    lines = sum(k * -(-n * a.struct_page_size // CACHE_LINE) for k, n in runs)
    return n_compound, total, lines


def memmap_init_zone_device(m: Machine, start_pfn: int, nr_pages: int, pgmap: DevPagemap,
                            eager: bool = False, nid: int = 0) -> InitStats:
    """``memmap_init_zone_device(zone, start_pfn, nr_pages, pgmap)`` (5.17+ compound form).

    Lazy by default (records the loop, see the module docstring); ``eager=True`` runs the loop,
    writing each struct page through the vmemmap.  Returns what the loop wrote."""
    a = m.arch
    end_pfn = start_pfn + nr_pages
    altmap = pgmap_altmap(pgmap)
    if altmap is not None:
        start_pfn = altmap.base_pfn + altmap.vmem_altmap_offset()
        nr_pages = end_pfn - start_pfn
    pfns_per_compound = pgmap_vmemmap_nr(pgmap) if m.kernel.compound_devmap else 1
    per = compound_nr_pages(m, altmap, pgmap) if pfns_per_compound > 1 else 1
    # 5.19-6.3 return 2 * PAGE_SIZE / sizeof(struct page) whatever the order, so for orders
    # below 7 the kernel loop writes past each compound page (and past the range for the last
    # one); device-dax never uses those orders, and the model writes one compound page at most
    per = min(per, pfns_per_compound)
    n_compound, total, lines = _loop_counts(m, nr_pages, pfns_per_compound, per)
    stats = InitStats(start_pfn, nr_pages, n_compound, pfns_per_compound, per, total, lines)
    if a.struct_page_size != SIZEOF_STRUCT_PAGE:
        return stats  # struct page contents are modelled for 64-byte struct pages only
    st = struct_pages(m)
    token = st.pgmap_token(pgmap)
    flags = zone_node_flags(ZONE_DEVICE, nid) | (1 << PG(m, "PG_reserved"))
    refcount = 0 if pgmap.type in _ZERO_REF_TYPES else 1
    rec = ZoneDeviceInit(start_pfn, end_pfn, pfns_per_compound, per,
                         pfns_per_compound.bit_length() - 1, token, refcount, nid, flags)
    if altmap is not None:
        lo = altmap.base_pfn + altmap.reserve
        if start_pfn > lo:
            st.add_init_record(lo, start_pfn, _altmap_hosting_fill(m, flags), owner=token,
                               what=f"{pgmap.name} memmap_init_range (altmap pfns)")
    if pfns_per_compound > 1 and start_pfn % pfns_per_compound and per < pfns_per_compound:
        # Compound pages not aligned to their size: a head can fall in a section whose vmemmap
        # reuses the previous section's tail page (reuse_compound_section() measures offsets
        # from the range start), so several compound pages write through one physical page
        # and the last write wins.  Replaying the loop for real is the exact answer (a raw
        # pmem namespace with --map=mem starting mid-section does this on a real kernel).
        eager = True
    if eager:
        st.add_init_record(start_pfn, end_pfn, lambda r, p: None, owner=token,
                           what=f"{pgmap.name} (written eagerly)")
        got_total, got_lines = _eager_loop(m, rec)
        if (got_total, got_lines) != (total, lines):
            raise AssertionError(f"eager init wrote {got_total} struct pages / {got_lines} lines,"
                                 f" the loop count says {total} / {lines}")
    else:
        st.add_init_record(start_pfn, end_pfn, lambda r, p: rec.fill(m, r, p), owner=token,
                           what=f"{pgmap.name} memmap_init_zone_device")
    return stats


def _eager_loop(m: Machine, rec: ZoneDeviceInit) -> tuple[int, int]:
    """The ``memmap_init_zone_device`` loop itself, one compound page per iteration, each field
    written through the vmemmap in kernel order.  Returns (struct pages written, distinct
    cache lines written)."""
    step, n = rec.pfns_per_compound, rec.nr_written
    written = 0
    lines: set[int] = set()
    for pfn in range(rec.start_pfn, rec.end_pfn, step):
        __init_zone_device_page(m, np.array([pfn], np.int64), rec)
        written += 1
        lines.add(pfn * SIZEOF_STRUCT_PAGE // CACHE_LINE)
        if step == 1:
            continue
        tails = memmap_init_compound(m, pfn, rec, min(n, rec.end_pfn - pfn))
        written += tails.size
        lines.update((tails * SIZEOF_STRUCT_PAGE // CACHE_LINE).tolist())
    return written, len(lines)


def __init_zone_device_page(m: Machine, pfns: np.ndarray, rec: ZoneDeviceInit) -> None:
    """``__init_zone_device_page(page, pfn, zone_idx, nid, pgmap)`` (mm/mm_init.c 6.x; 5.17 in
    page_alloc.c) over ``pfns``: ``__init_single_page`` (zero, zone/node links, refcount 1,
    mapcount -1, ``INIT_LIST_HEAD(&page->lru)``; cpupid and KASAN tag not modelled),
    ``__SetPageReserved``, ``page->pgmap = pgmap``, ``page->zone_device_data = NULL``, and the
    pgmap-type refcount (0 for DEVICE_PRIVATE/COHERENT, 6.1+)."""
    va = head_va(m, pfns)
    write_field(m, pfns, "words", np.zeros((pfns.size, 8), np.uint64))
    write_field(m, pfns, "flags", rec.flags_base)
    write_field(m, pfns, "_refcount", 1)
    write_field(m, pfns, "_mapcount", -1)
    write_field(m, pfns, "lru_next", va + np.uint64(8))
    write_field(m, pfns, "lru_prev", va + np.uint64(8))
    write_field(m, pfns, "pgmap", rec.pgmap_token)
    write_field(m, pfns, "zone_device_data", 0)
    if rec.refcount != 1:
        write_field(m, pfns, "_refcount", rec.refcount)


def memmap_init_compound(m: Machine, head_pfn: int, rec: ZoneDeviceInit,
                         nr_pages: int) -> np.ndarray:
    """``memmap_init_compound(head, head_pfn, zone_idx, nid, pgmap, nr_pages)``:
    ``__SetPageHead(head)``; for each pfn in ``(head_pfn, head_pfn + nr_pages)``:
    ``__init_zone_device_page``, ``prep_compound_tail``, ``set_page_count(page, 0)``; and
    ``prep_compound_head`` once the tail it writes is initialised (``pfn == head_pfn + 2`` in
    5.17-6.1, ``+ 1`` later).  Vectorised over the tails, which gives the same result because
    ``prep_compound_head`` only writes page[1]/page[2] after they are initialised.  Returns the
    tail pfns written."""
    set_flag_bits(m, head_pfn, "PG_head")                                   # __SetPageHead
    tails = np.arange(head_pfn + 1, head_pfn + nr_pages, dtype=np.int64)
    # prep_compound_head() runs right after the tail it writes is initialised; a later tail
    # whose struct page aliases that one (compound pages not aligned to their size) writes
    # over it, so the two halves are written in kernel order
    cut = min(_prep_head_index(m), tails.size)
    for i, part in enumerate((tails[:cut], tails[cut:])):
        if part.size:
            __init_zone_device_page(m, part, rec)
            prep_compound_tail(m, head_pfn, part - head_pfn, rec.order)
            write_field(m, part, "_refcount", 0)                            # set_page_count
        if i == 0 and nr_pages > _prep_head_index(m):
            prep_compound_head(m, head_pfn, rec.order)
    return tails


def prep_compound_tail(m: Machine, head_pfn: int, tail_idx: np.ndarray,
                       order: int | None = None) -> None:
    """``prep_compound_tail(head, tail_idx)`` (mm/internal.h 6.x, page_alloc.c 5.17) for each
    index: ``p->mapping = TAIL_MAPPING``, ``set_compound_head(p, head)`` (head address + 1),
    ``set_page_private(p, 0)`` (6.x; private is already 0 in the earlier versions' callers).
    With ``order`` under ``mm-2026``: the mask encoding of ``set_compound_head(tail, head,
    order)`` (:func:`vmemlab.vmemmap_optimization.compound_info_mask`)."""
    tails = head_pfn + np.asarray(tail_idx, np.int64)
    write_field(m, tails, "mapping", TAIL_MAPPING)
    info = head_va(m, head_pfn) + np.uint64(1)
    if m.kernel.shared_tail and order is not None:
        if compound_info_has_mask(m):
            info = np.uint64(compound_info_mask(m, order))
    write_field(m, tails, "compound_head", info)
    write_field(m, tails, "private", 0)


def prep_compound_head(m: Machine, head_pfn: int, order: int) -> None:
    """``prep_compound_head(head, order)`` written field by field through the vmemmap:

    * 5.17: ``set_compound_page_dtor(COMPOUND_PAGE_DTOR)``, ``set_compound_order`` (order and
      ``compound_nr``), ``compound_mapcount = -1``, and, if ``hpage_pincount_available``
      (order > 1), ``page[2].hpage_pinned_refcount = 0``;
    * 5.18-6.1: the same with ``page[1].compound_pincount = 0`` always;
    * 6.x folio: ``folio_set_order`` (``_flags_1`` low byte, ``_folio_nr_pages``), 6.12
      ``_large_mapcount = -1``, ``_entire_mapcount = -1``, ``_nr_pages_mapped = 0``,
      ``_pincount = 0`` and, order > 1, ``INIT_LIST_HEAD(&folio->_deferred_list)``."""
    lay = layout_key(m.kernel)
    p1 = head_pfn + 1
    if lay == "folio":
        f1 = int(read_field(m, p1, "_flags_1")[0])
        write_field(m, p1, "_flags_1", (f1 & ~0xFF) | order)
        write_field(m, p1, "_folio_nr_pages", 1 << order)
        if "_large_mapcount" in struct_pages(m).dtype.names:  # 6.12 (kernel-facts §0a 3)
            write_field(m, p1, "_large_mapcount", -1)
        write_field(m, p1, "_entire_mapcount", -1)
        write_field(m, p1, "_nr_pages_mapped", 0)
        write_field(m, p1, "_pincount", 0)
        if order > 1 and "_large_mapcount" in struct_pages(m).dtype.names:
            # 6.12: INIT_LIST_HEAD(&folio->_deferred_list) (since 8897277acfef, 6.8); in
            # memmap_init_compound page[2] is initialised afterwards and overwrites it
            va = int(head_va(m, head_pfn + 2)) + 16
            write_field(m, head_pfn + 2, "_deferred_list_next", va)
            write_field(m, head_pfn + 2, "_deferred_list_prev", va)
        return
    write_field(m, p1, "compound_dtor", COMPOUND_PAGE_DTOR)
    write_field(m, p1, "compound_order", order)
    write_field(m, p1, "compound_nr", 1 << order)
    write_field(m, p1, "compound_mapcount", -1)
    if lay == "5.18":
        write_field(m, p1, "compound_pincount", 0)
    elif order > 1:
        write_field(m, head_pfn + 2, "hpage_pinned_refcount", 0)


# -- the init cost model -------------------------------------------------------------------------
#: Cover letter v3 (compound-pagemaps-v3-cover-letter.txt): "NVDIMM namespace bootstrap improves
#: from ~268-358 ms to ~78-100/<1ms on 128G NVDIMMs with 2M and 1G respectivally"
COVER_LETTER_BOOTSTRAP_MS: dict[str, tuple[float, float]] = {
    "4K": (268.0, 358.0), "2M": (78.0, 100.0), "1G": (0.0, 1.0)}


@dataclass(frozen=True)
class InitCostModel:
    """Time of ``memmap_init_zone_device``: ``ns_per_struct_page`` for every struct page the loop
    writes, plus an optional ``ns_per_compound_page`` (per ``memmap_init_compound`` call:
    ``prep_compound_head`` and the cold head line) that is 0 unless fitted explicitly.

    ``calibration`` says which figure fixed the constants; ``band`` is the per-struct-page cost
    range implied by the two ends of that figure."""

    ns_per_struct_page: float
    ns_per_compound_page: float = 0.0
    band: tuple[float, float] = (0.0, 0.0)
    calibration: str = ""

    def predict_ms(self, stats: InitStats | list[InitStats]) -> float:
        ss = stats if isinstance(stats, list) else [stats]
        ns = sum(s.struct_pages_initialised * self.ns_per_struct_page
                 + (s.compound_pages * self.ns_per_compound_page
                    if s.pfns_per_compound > 1 else 0.0) for s in ss)
        return ns / 1e6

    def predict_band_ms(self, stats: InitStats | list[InitStats]) -> tuple[float, float]:
        """The prediction at both ends of the calibration band (per-struct-page term only)."""
        ss = stats if isinstance(stats, list) else [stats]
        n = sum(s.struct_pages_initialised for s in ss)
        return n * self.band[0] / 1e6, n * self.band[1] / 1e6


def calibrate_init_cost(stats_4k: InitStats | list[InitStats],
                        figure_ms: tuple[float, float] = COVER_LETTER_BOOTSTRAP_MS["4K"],
                        ) -> InitCostModel:
    """Fit ``ns_per_struct_page`` on ONE figure: the 128G NVDIMM bootstrap at 4K alignment
    (every struct page written), taking the middle of the quoted range; the ends give the band.
    ``stats_4k`` must come from running the model on that namespace."""
    ss = stats_4k if isinstance(stats_4k, list) else [stats_4k]
    n = sum(s.struct_pages_initialised for s in ss)
    lo, hi = figure_ms
    mid = (lo + hi) / 2
    return InitCostModel(ns_per_struct_page=mid * 1e6 / n,
                         band=(lo * 1e6 / n, hi * 1e6 / n),
                         calibration=f"128G NVDIMM, 4K align, {lo:g}-{hi:g} ms (cover letter v3) "
                                     f"over {n} struct pages written")
