"""mm/gup.c: GUP-fast over a device-dax mapping, what it does to struct pages, and what it costs.

Three variants, chosen by ``m.kernel.gup`` (kernel-facts.md §9):

``"base"``  (kernel ``"5.16"``, :data:`vmemlab.kernels.PRE_COMPOUND`; the cover letter's
    "before"): device pages are order-0.  ``__gup_device_huge`` loops one page at a time:
    ``SetPageReferenced(page)``, ``try_grab_page(page, flags)`` -- one reference on each page's
    own struct page.
``"per-subpage-head"`` (every released devmap gup_fast path read: 5.17 ``__gup_device_huge``,
    6.1.192 ``__gup_device_huge`` with ``try_grab_page(page, flags)``, 6.6
    ``try_grab_folio(page_folio(page), 1, ...)``, 6.12 ``gup_fast_devmap_leaf`` with
    ``try_grab_folio_fast(page, 1, ...)``; kernel-facts §0a 11): the same loop over compound
    devmap pages; every grab and every ``SetPageReferenced`` / ``folio_set_referenced`` lands on
    the head, so a 2M PMD costs 512 grabs on one head.  GUP-fast refuses ``FOLL_LONGTERM`` on
    devmap entries, so RDMA/VFIO-style long-term pins take the slow path.
``"head-once"`` -- the unmerged v3 patch 13 only ("mm/gup: grab head page refcount once for group
    of subpages", v4 08/14, deferred at v5): it matches no released devmap GUP path.  (Only after
    the devmap helpers were removed, past the 6.12 trees read, do device-dax leaves go through
    ``gup_fast_pmd_leaf``, which has this shape.)
    ``head = compound_head(page)``; ``next = PageCompound(head) ? end : addr + PAGE_SIZE``;
    ``refs = record_subpages(page, addr, next, pages + *nr)``; ``SetPageReferenced(head)``; one
    ``try_grab_compound_head(head, refs, flags)``.

Grab semantics (``try_grab_page`` 5.x-6.9, ``try_grab_compound_head`` 5.x, ``try_grab_folio`` 6.x;
kernel-facts.md §9, gup.c read through the search index):

* ``FOLL_GET``: ``refcount += refs``.
* ``FOLL_PIN`` on a page with a pin count (5.7-5.17: compound order > 1, ``page[2]``
  ``hpage_pinned_refcount``; 5.18+: any head, ``page[1]`` ``compound_pincount``; 6.x folios:
  ``_pincount``, also in ``page[1]`` on 64-bit): ``refcount += refs`` and ``pincount += refs``.
* ``FOLL_PIN`` otherwise: ``refcount += refs * GUP_PIN_COUNTING_BIAS`` (1024).
* A grab is refused (``WARN_ON_ONCE`` + failure) when the head's signed 32-bit refcount is already
  ``<= 0`` (``try_grab_page``: ``folio_ref_count(folio) <= 0``; ``try_get_folio``:
  ``< 0`` plus ``folio_ref_try_add`` failing on 0).  The add itself wraps like ``atomic_t``: the
  grab that crosses ``INT_MAX`` succeeds and leaves the count negative; the next one is refused.
  ``overflow="strict"`` refuses the crossing grab itself instead (a model option, not kernel).

Refused calls: the kernel's ``undo_dev_pagemap`` / ``gup_fast_undo_dev_pagemap`` drops what the
current leaf took and GUP-fast returns the pages of earlier leaves (the caller then falls back to
the slow path).  The model is stricter, as the project asks: a refused call raises
:class:`~vmemlab.errors.KernelError` and leaves *nothing* taken (every grab is decided before any
is applied, which ends in the same state as taking them and undoing).

Counters (:class:`GupCounters`) are exact and vectorised: struct pages touched (read or written),
distinct struct-page cache lines (64 B) by virtual address and by physical line (vmemmap
deduplication makes tail struct pages alias the same physical lines), each split RAM / device
(``--map=dev`` altmap), atomic read-modify-writes and where they land, ``pages[]`` entries written,
user page-table entries read, ``get_dev_pagemap`` slow lookups.

Cost model (:mod:`vmemlab.gup_cost`, re-exported here): :class:`CostParams`, :func:`predict_ns`,
:func:`fit_params` (non-negative least squares, written in numpy) and :data:`COVER_LETTER_ROWS`,
the gup_test table of the v3 cover letter; :func:`cover_letter_table` (here: it runs the
table's scenarios on this model) fits on one size and predicts the other;
:func:`predict_variants` extends the prediction to mainline's per-subpage-head kernels.  The
struct page reference fields and the counters are :mod:`vmemlab.gup_refs`.

Verified (mm/gup.c of a 6.x snapshot read through the search index -- 6.11+, it has
``try_grab_folio_fast`` -- and Debian's 6.1.192; v3/v4 patch 13 mail text):
``try_grab_folio``/``try_grab_folio_fast``/``try_get_folio``/``gup_put_folio``/
``unpin_user_pages``/``gup_fast_devmap_leaf``/``gup_fast_undo_dev_pagemap``/
``gup_fast_pmd_leaf``/``record_subpages`` bodies; patch 13's loop (``next = PageCompound(head) ?
end : addr + PAGE_SIZE``, ``SetPageReferenced(head)``, one ``try_grab_compound_head``).

Checked in Debian's 6.1.192 mm/gup.c and include/linux/mm.h (the 5.16/5.17 bodies have the
same shape): ``try_grab_page`` refuses when ``folio_ref_count <= 0``; ``FOLL_GET`` is one
``folio_ref_inc``; ``FOLL_PIN`` on a large folio is ``folio_ref_add(folio, 1)`` plus
``atomic_add(1, folio_pincount_ptr(folio))``, on a small one ``folio_ref_add(folio,
GUP_PIN_COUNTING_BIAS)`` -- the per-grab atomics the model counts.  ``try_grab_folio`` (the
batched form) pins a small folio with two atomics (``try_get_folio`` then ``folio_ref_add(refs
* (BIAS - 1))``); the model counts one there, as ``try_grab_page`` does, which is what the
devmap loop calls.  ``FOLL_WRITE`` 0x01, ``FOLL_GET`` 0x04, ``FOLL_LONGTERM`` 0x10000,
``FOLL_PIN`` 0x40000 as in 6.1.192 include/linux/mm.h.

Modelling choices, not kernel facts: the cost model's miss/near split (prefetchers follow a
stream within a 4 KiB page, not a 32 KiB stride) is not something the cover letter measured;
per-call overhead of gup_test's batches (``-n``) and cross-CPU effects are not modelled; the
PG_referenced bit is counted as an atomic (``set_bit``) but not stored.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .dax_device import DaxVma, dax_mmap_plan
from .errors import KernelError, ParameterError
from .frames import DEVICE, RAM
from .gup_cost import (
    COVER_LETTER_KERNELS,
    COVER_LETTER_ROWS,
    CostParams,
    Prediction,
    features,
    fit_params,
    format_table,
    namespace_for,
    nnls,
    predict_ns,
)
from .gup_refs import (
    FOLL_GET,
    FOLL_LONGTERM,
    FOLL_PIN,
    FOLL_WRITE,
    GUP_PIN_COUNTING_BIAS,
    INT_MAX,
    VARIANTS,
    CompoundGeometry,
    GupCounters,
    GupResult,
    StructPageRefs,
    _expand_runs,
    _homes_of_pfns,
    compound_geometry,
    compound_nr_struct_pages,
    folio_maybe_dma_pinned,
    gup_references,
    pincount_offset,
    struct_page_footprint,
    wrap32,
)
from .plan import plan
from .units import as_int, as_int_array, parse_size

if TYPE_CHECKING:
    from .machine import Machine

#: the cost model (:mod:`vmemlab.gup_cost`) and the struct page fields (:mod:`vmemlab.gup_refs`)
#: stay importable from here
__all__ = [
    "COVER_LETTER_KERNELS", "COVER_LETTER_ROWS", "CostParams", "Prediction", "features",
    "fit_params", "format_table", "nnls", "predict_ns", "FOLL_GET", "FOLL_LONGTERM", "FOLL_PIN",
    "FOLL_WRITE", "GUP_PIN_COUNTING_BIAS", "INT_MAX", "VARIANTS", "CompoundGeometry",
    "GupCounters", "GupResult", "StructPageRefs", "compound_geometry",
    "compound_nr_struct_pages", "folio_maybe_dma_pinned", "gup_references", "pincount_offset",
    "struct_page_footprint", "wrap32", "gup_fast", "get_user_pages_fast", "pin_user_pages_fast",
    "unpin_user_pages", "put_pages", "release", "namespace_for", "scenario_counters",
    "cover_letter_rows", "cover_letter_table", "predict_variants",
]


# -- the user page-table walk ------------------------------------------------------------------------
@dataclass
class _Walk:
    leaf_va: np.ndarray     # start address of each visited leaf chunk (clipped to the range)
    leaf_pfn: np.ndarray    # pfn mapped at leaf_va
    leaf_n: np.ndarray      # pages in the chunk
    entries: dict[str, int]
    pgmap_lookups: int


def _walk(vma: DaxVma, start: int, end: int) -> _Walk:
    """``gup_fast_pgd_range`` -> ``p4d`` -> ``pud`` -> ``pmd`` -> ``pte``: visit the leaves of
    ``[start, end)`` in order, stopping at the first non-present one (GUP-fast returns what it
    has; ``!pmd_present(pmd)`` / ``pte_none`` end the walk).  Entry counts are the entries read
    at each level (the folded P4D is not counted)."""
    a = vma.m.arch
    ls = vma.leaf_shift
    i0 = (start - vma.vm_start) >> ls
    i1 = -(-(end - vma.vm_start) >> ls)
    pres = vma.present[i0:i1]
    missing = np.flatnonzero(~pres)
    if missing.size:
        i1 = i0 + int(missing[0])
        end = max(start, vma.vm_start + (i1 << ls))
    idx = np.arange(i0, i1, dtype=np.int64)
    lva = vma.vm_start + (idx << ls)
    cs = np.maximum(lva, start)
    ce = np.minimum(lva + (1 << ls), end)
    n = (ce - cs) >> a.page_shift
    entries: dict[str, int] = {}
    if end > start:
        for lv in reversed(a.levels):
            if lv.shift < ls:
                entries[lv.name] = 0
                continue
            entries[lv.name] = int(((end - 1) >> lv.shift) - (start >> lv.shift) + 1)
    else:
        entries = {lv.name: 0 for lv in reversed(a.levels)}
    # get_dev_pagemap slow lookups: cached per devmap leaf call (PMD/PUD) or per PTE table
    if vma.leaf_level == "pte":
        lookups = entries.get("pmd", 0) if end > start else 0
    else:
        lookups = int(idx.size)
    return _Walk(cs, vma.va_to_pfn(cs), n, entries, lookups)


# -- grabs ------------------------------------------------------------------------------------------
@dataclass
class _Plan:
    heads: np.ndarray        # distinct heads grabbed
    refs: np.ndarray         # references (subpages) per head
    grabs: np.ndarray        # try_grab calls per head
    p0: np.ndarray           # first subpage pfn of every group (head-once reads it)
    pin_off: int | None      # pin-count struct page offset (None: bias)
    order: int
    runs: tuple[np.ndarray, np.ndarray] | None = None  # order-0: heads as (start, len) runs

    def expand(self) -> _Plan:
        """Per-head arrays for order-0 runs (only needed to apply the grabs)."""
        if self.runs is None:
            return self
        pfns = _expand_runs(*self.runs)
        one = np.ones(pfns.size, np.int64)
        return _Plan(pfns, one, one, pfns, self.pin_off, 0)

    @property
    def n_heads(self) -> int:
        return int(self.runs[1].sum()) if self.runs is not None else int(self.heads.size)


def _group(vma: DaxVma, w: _Walk, variant: str) -> _Plan:
    m = vma.m
    g = compound_geometry(m, vma.pgmap)
    if variant == "base" and g.nr != 1:
        raise ParameterError("variant", variant,
                             "'base' needs order-0 device pages (kernel 5.16, no vmemmap_shift)")
    if g.nr == 1:  # order-0 pages: every page is its own head (kept as runs until applied)
        return _Plan(None, None, None, w.leaf_pfn, pincount_offset(m, 0), 0,  # type: ignore[arg-type]
                     runs=(w.leaf_pfn, w.leaf_n))
    # a devmap leaf never spans two compound pages (leaf size == align == compound size)
    heads = g.head(w.leaf_pfn)
    last = g.head(w.leaf_pfn + w.leaf_n - 1)
    if (heads != last).any():
        raise AssertionError("a leaf spans two compound pages")
    uh, inv = np.unique(heads, return_inverse=True)
    refs = np.bincount(inv, weights=w.leaf_n, minlength=uh.size).astype(np.int64)
    if variant == "head-once":
        grabs = np.bincount(inv, minlength=uh.size).astype(np.int64)
    else:
        grabs = refs
    return _Plan(uh, refs, grabs, w.leaf_pfn, pincount_offset(m, g.order), g.order)


def _check_grabs(refs: StructPageRefs, p: _Plan, flags: int, variant: str,
                 overflow: str) -> tuple[np.ndarray, np.ndarray]:
    """Decide every grab: returns the refcount and pincount delta per head, or raises like
    ``try_grab_page`` / ``try_grab_compound_head`` / ``try_grab_folio`` (WARN + fail)."""
    pin = bool(flags & FOLL_PIN)
    per_ref = GUP_PIN_COUNTING_BIAS if (pin and p.pin_off is None) else 1
    c = refs.read(p.heads, "refcount")
    # each grab adds d = refs_in_grab * per_ref; per-subpage variants: refs_in_grab == 1
    d = (p.refs // p.grabs) * per_ref
    # grab j (0-based) sees c + j*d (wrapped); the kernel refuses when that is <= 0
    if overflow == "kernel":
        bad_now = c <= 0
        # first j with c + j*d > INT_MAX (wrapped negative)
        j_wrap = np.where(bad_now, 0, (INT_MAX - c) // np.maximum(d, 1) + 1)
        fail = bad_now | (j_wrap < p.grabs)
    elif overflow == "strict":
        fail = (c <= 0) | (c + p.grabs * d > INT_MAX)
    else:
        raise ParameterError("overflow", overflow, "'kernel' or 'strict'")
    if fail.any():
        i = int(np.flatnonzero(fail)[0])
        fn = {"base": "try_grab_page", "per-subpage-head": "try_grab_page",
              "head-once": "try_grab_compound_head"}[variant]
        raise KernelError(
            "ENOMEM", fn,
            f"WARN_ON_ONCE: refcount of head pfn {int(p.heads[i]):#x} is {int(c[i])}; "
            f"{int(p.grabs[i])} grab(s) of {int(d[i])} would take it past INT_MAX "
            f"({'refused once negative' if overflow == 'kernel' else 'strict mode'}); "
            "nothing was taken (undo_dev_pagemap)")
    dref = p.grabs * d
    dpin = p.refs if (pin and p.pin_off is not None) else np.zeros(p.heads.size, np.int64)
    return dref, dpin


def _grab_counters(m: Machine, vma: DaxVma, w: _Walk, p: _Plan, flags: int, variant: str,
                   op: str) -> tuple[GupCounters, tuple[np.ndarray, np.ndarray]]:
    pin = bool(flags & FOLL_PIN)
    n_pages = int(w.leaf_n.sum())
    if p.runs is not None:
        # order-0: the struct pages touched are exactly the heads grabbed, two atomics each
        # (set_bit + refcount; pins use the bias, pincount_offset(m, 0) is None)
        fp = struct_page_footprint(m, w.leaf_pfn, w.leaf_pfn + w.leaf_n)
        at_ram, at_dev = 2 * fp["struct_pages_ram"], 2 * fp["struct_pages_device"]
        return (_counters(op, variant, n_pages, n_pages, n_pages, fp, at_ram, at_dev, n_pages, w),
                (w.leaf_pfn, w.leaf_pfn + w.leaf_n))
    pin_pages = p.heads + p.pin_off if (pin and p.pin_off is not None) else np.empty(0, np.int64)
    if variant == "head-once":
        touch_s = np.concatenate((p.p0, p.heads, pin_pages))
        touch_e = touch_s + 1
    else:
        touch_s = np.concatenate((w.leaf_pfn, p.heads, pin_pages))
        touch_e = np.concatenate((w.leaf_pfn + w.leaf_n, p.heads + 1, pin_pages + 1))
    fp = struct_page_footprint(m, touch_s, touch_e)
    # atomics per grab: SetPageReferenced/folio_set_referenced (set_bit on the head's flags),
    # the refcount add, and the pin-count add when pinning a page that has one
    head_home = _homes_of_pfns(m, p.heads)
    at_head = p.grabs * 2
    at_ram = int(at_head[head_home == RAM].sum())
    at_dev = int(at_head[head_home == DEVICE].sum())
    if pin_pages.size:
        pin_home = _homes_of_pfns(m, pin_pages)
        at_ram += int(p.grabs[pin_home == RAM].sum())
        at_dev += int(p.grabs[pin_home == DEVICE].sum())
    ref_at = int(p.grabs.sum()) * (2 if pin_pages.size else 1)
    return (_counters(op, variant, n_pages, int(p.grabs.sum()), int(p.heads.size), fp, at_ram,
                      at_dev, ref_at, w), (touch_s, touch_e))


def _counters(op: str, variant: str, n_pages: int, grabs: int, groups: int, fp: dict[str, int],
              at_ram: int, at_dev: int, ref_at: int, w: _Walk) -> GupCounters:
    return GupCounters(
        op=op, variant=variant, nr_pages=n_pages, pages_entries=n_pages,
        grabs=grabs, compound_groups=groups,
        struct_pages_touched=fp["struct_pages"], struct_pages_ram=fp["struct_pages_ram"],
        struct_pages_device=fp["struct_pages_device"], cache_lines_virtual=fp["lines_virtual"],
        cache_lines=fp["lines"], cache_lines_ram=fp["lines_ram"],
        cache_lines_device=fp["lines_device"], vmemmap_pages_ram=fp["pages_ram"],
        vmemmap_pages_device=fp["pages_device"], atomics=at_ram + at_dev, atomics_ram=at_ram,
        atomics_device=at_dev, ref_atomics=ref_at, pgtable_entries=dict(w.entries),
        pgmap_lookups=w.pgmap_lookups)


def gup_fast(vma: DaxVma, start: int, nr_pages: int, gup_flags: int, *,
             variant: str | None = None, apply: bool = True,
             overflow: str = "kernel") -> GupResult:
    """``gup_fast(start, end, gup_flags, pages)`` (mm/gup.c) over a device-dax VMA.

    Walks the user page tables (``gup_fast_pgd_range`` ... ``gup_fast_pmd_leaf`` ->
    ``gup_fast_devmap_pmd_leaf`` -> ``gup_fast_devmap_leaf`` / ``__gup_device_huge``) and grabs
    per ``variant`` (default ``vma.m.kernel.gup``).  Stops at the first non-present leaf like
    GUP-fast (the result then has fewer pages).  ``apply=False`` computes the counters only.
    Refuses ``FOLL_LONGTERM`` (GUP-fast never takes devmap pages long-term: 0 pages), both or
    neither of ``FOLL_GET``/``FOLL_PIN`` (``WARN_ON_ONCE``), and overflowing grabs
    (:class:`KernelError`, nothing taken)."""
    m = vma.m
    gup_flags = as_int("gup_flags", gup_flags, 0, None, "FOLL_* flags (an int)")
    variant = m.kernel.gup if variant is None else variant
    if variant not in VARIANTS:
        raise ParameterError("variant", variant, "one of " + ", ".join(VARIANTS))
    if bool(gup_flags & FOLL_GET) == bool(gup_flags & FOLL_PIN):
        raise ParameterError("gup_flags", gup_flags, "exactly one of FOLL_GET and FOLL_PIN")
    a = m.arch
    start = as_int("start", start, 0, (1 << 64) - 1, "a user virtual address (an int)")
    nr_pages = as_int("nr_pages", nr_pages, 0, None, "a page count >= 0 (an int)")
    if start % a.PAGE_SIZE:
        raise ParameterError("start", start, f"page aligned ({a.PAGE_SIZE:#x})")
    end = start + (nr_pages << a.page_shift)
    op = "pin_user_pages_fast" if gup_flags & FOLL_PIN else "get_user_pages_fast"
    if nr_pages == 0 or gup_flags & FOLL_LONGTERM or vma.pgmap not in m.pgmaps:
        # (memunmap_pages zaps the user mappings of a torn-down device first: GUP-fast then
        # finds no present leaf and returns 0 pages)
        w = _Walk(*(np.empty(0, np.int64),) * 3, {}, 0)
    else:
        if not vma.vm_start <= start < end <= vma.vm_end:
            raise KernelError("EINVAL", "gup_fast", f"range {start:#x}-{end:#x} is outside the VMA")
        w = _walk(vma, start, end)
    p = _group(vma, w, variant)
    counters, touched = _grab_counters(m, vma, w, p, gup_flags, variant, op)
    if apply and p.n_heads:
        p = p.expand()
        refs = StructPageRefs(m)
        dref, dpin = _check_grabs(refs, p, gup_flags, variant, overflow)
        refs.add(p.heads, "refcount", dref)
        if dpin.any():
            refs.add(p.heads + p.pin_off, "pincount", dpin)  # type: ignore[operator]
    return GupResult(m, gup_flags, variant, w.leaf_pfn, w.leaf_n, counters, touched)


def get_user_pages_fast(vma: DaxVma, start: int, nr_pages: int, **kw: Any) -> GupResult:
    """``get_user_pages_fast(start, nr_pages, gup_flags, pages)``: ``FOLL_GET``."""
    return gup_fast(vma, start, nr_pages, FOLL_GET | FOLL_WRITE, **kw)


def pin_user_pages_fast(vma: DaxVma, start: int, nr_pages: int, **kw: Any) -> GupResult:
    """``pin_user_pages_fast(start, nr_pages, gup_flags, pages)``: ``FOLL_PIN``."""
    return gup_fast(vma, start, nr_pages, FOLL_PIN | FOLL_WRITE, **kw)


# -- release ----------------------------------------------------------------------------------------
def _runs_of(pages: GupResult | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pages[]`` as runs of consecutive pfns ``(start, length)`` (order kept)."""
    if isinstance(pages, GupResult):
        keep = pages.run_len > 0
        return pages.run_pfn[keep], pages.run_len[keep]
    p = np.atleast_1d(as_int_array("pages", pages, 0, (1 << 52) - 1))
    if p.size == 0:
        return p, p
    brk = np.flatnonzero(np.diff(p) != 1) + 1
    first = np.concatenate(([0], brk))
    ends = np.concatenate((brk, [p.size]))
    return p[first], ends - first


def _release(m: Machine, pages: GupResult | np.ndarray, pin: bool, apply: bool) -> GupCounters:
    """Shared by :func:`unpin_user_pages` (batched per compound page, ``gup_folio_next`` +
    ``gup_put_folio``) and :func:`put_pages` (``put_page`` per entry).  Works on runs of
    consecutive pfns split at compound-page boundaries, so 128 GiB of 2M pages is 65536
    pieces, not 33.5M entries."""
    op = "unpin_user_pages" if pin else "put_page"
    if isinstance(pages, GupResult) and pages.released and apply:
        raise KernelError("EINVAL", op, "these pages[] were released already; releasing them "
                          "again would drop references another caller holds (nothing changed)")
    rs, rl = _runs_of(pages)
    n = int(rl.sum())
    c = GupCounters(op=op, variant=m.kernel.gup, nr_pages=n)
    if n == 0:
        return c
    # split every run at compound-page boundaries: pieces (start, len, head, pin offset)
    ps_l, pl_l, ph_l, po_l = [], [], [], []
    known = np.zeros(rs.size, np.bool_)
    order = []
    for pgmap in m.pgmaps:
        g = compound_geometry(m, pgmap)
        sel = (rs >= g.first_pfn) & (rs + rl <= g.end_pfn)
        if not sel.any():
            continue
        known |= sel
        s, ln = rs[sel], rl[sel]
        h0 = g.head(s)
        npieces = (g.head(s + ln - 1) - h0) // g.nr + 1
        idx = np.repeat(np.arange(s.size), npieces)
        k = _expand_runs(np.zeros(s.size, np.int64), npieces)  # piece index within its run
        head = h0[idx] + k * g.nr
        start = np.maximum(s[idx], head)
        end = np.minimum(s[idx] + ln[idx], head + g.nr)
        off = pincount_offset(m, g.order)
        ps_l.append(start)
        pl_l.append(end - start)
        ph_l.append(head)
        po_l.append(np.full(head.size, -1 if off is None else off, np.int64))
        order.append(np.flatnonzero(sel)[idx])
    if not known.all():
        raise KernelError("EINVAL", op, f"pfn {int(rs[~known][0]):#x} is not a device page")
    run_idx = np.concatenate(order)
    srt = np.argsort(run_idx, kind="stable")  # back to the order of pages[]
    p_start, p_len = np.concatenate(ps_l)[srt], np.concatenate(pl_l)[srt]
    p_head, p_off = np.concatenate(ph_l)[srt], np.concatenate(po_l)[srt]
    if pin:  # gup_folio_next: consecutive entries of one folio -> one gup_put_folio
        new = np.ones(p_head.size, np.bool_)
        new[1:] = p_head[1:] != p_head[:-1]
        grp = np.cumsum(new) - 1
        g_heads, g_off = p_head[new], p_off[new]
        g_refs = np.bincount(grp, weights=p_len, minlength=g_heads.size).astype(np.int64)
        g_calls = np.ones(g_heads.size, np.int64)
    else:  # put_page per entry
        g_heads, g_off, g_refs, g_calls = p_head, p_off, p_len, p_len
    uh, inv = np.unique(g_heads, return_inverse=True)
    refs_per_head = np.bincount(inv, weights=g_refs, minlength=uh.size).astype(np.int64)
    off_h = np.full(uh.size, -1, np.int64)
    off_h[inv] = g_off
    has_pin = (off_h >= 0) & pin
    dref = -np.where(pin & ~has_pin, refs_per_head * GUP_PIN_COUNTING_BIAS, refs_per_head)
    # footprint: every entry's struct page is read (page_folio), heads and pin pages written
    pin_pages = uh[has_pin] + off_h[has_pin]
    fp = struct_page_footprint(m, np.concatenate((p_start, uh, pin_pages)),
                               np.concatenate((p_start + p_len, uh + 1, pin_pages + 1)))
    calls_home = _homes_of_pfns(m, g_heads)
    at_ram = int(g_calls[calls_home == RAM].sum())
    at_dev = int(g_calls[calls_home == DEVICE].sum())
    if pin and has_pin.any():
        grp_pin = g_off >= 0
        ph = _homes_of_pfns(m, g_heads[grp_pin] + g_off[grp_pin])
        at_ram += int(g_calls[grp_pin][ph == RAM].sum())
        at_dev += int(g_calls[grp_pin][ph == DEVICE].sum())
    c.grabs = int(g_calls.sum())
    c.compound_groups = int(uh.size)
    c.struct_pages_touched = fp["struct_pages"]
    c.struct_pages_ram, c.struct_pages_device = fp["struct_pages_ram"], fp["struct_pages_device"]
    c.cache_lines_virtual, c.cache_lines = fp["lines_virtual"], fp["lines"]
    c.cache_lines_ram, c.cache_lines_device = fp["lines_ram"], fp["lines_device"]
    c.vmemmap_pages_ram, c.vmemmap_pages_device = fp["pages_ram"], fp["pages_device"]
    c.atomics, c.atomics_ram, c.atomics_device = at_ram + at_dev, at_ram, at_dev
    c.ref_atomics = c.atomics
    if apply:
        refs = StructPageRefs(m)
        cur = refs.read(uh, "refcount")
        init = refs._init_refcount(uh)
        if pin:
            pc = refs.read(uh[has_pin] + off_h[has_pin], "pincount")
            if (pc < refs_per_head[has_pin]).any():
                raise KernelError("EINVAL", op, "unpinning pages that are not pinned "
                                  "(pincount would go negative); nothing changed")
        after = wrap32(cur + dref)
        if (after < init).any():
            i = int(np.flatnonzero(after < init)[0])
            raise KernelError("EINVAL", op, f"releasing more references than GUP took on head "
                              f"pfn {int(uh[i]):#x}; nothing changed")
        refs.add(uh, "refcount", dref)
        if pin and has_pin.any():
            refs.add(uh[has_pin] + off_h[has_pin], "pincount", -refs_per_head[has_pin])
        if isinstance(pages, GupResult):
            pages.released = True
    return c


def unpin_user_pages(m: Machine, pages: GupResult | np.ndarray, *, apply: bool = True) -> GupCounters:
    """``unpin_user_pages(pages, npages)``: ``gup_folio_next`` groups consecutive entries of one
    folio (reading every entry's struct page) and ``gup_put_folio(folio, nr, FOLL_PIN)`` drops
    them at once: ``pincount -= nr; refcount -= nr`` or ``refcount -= nr * 1024``.  Read in
    6.1.192 mm/gup.c (``gup_folio_next`` + ``gup_put_folio(folio, nr, FOLL_PIN)``); the
    batching came with Joao Martins' "mm/gup: decrement head page once for group of
    subpages" (the v7 compound-devmap cover letter's 5.17 numbers assume it)."""
    return _release(m, pages, True, apply)


def put_pages(m: Machine, pages: GupResult | np.ndarray, *, apply: bool = True) -> GupCounters:
    """``put_page(pages[i])`` for each entry, as gup_test releases ``FOLL_GET`` pages: one
    ``folio_put`` (an atomic on the head) per entry."""
    return _release(m, pages, False, apply)


def release(r: GupResult) -> GupCounters:
    """Undo a :class:`GupResult` the way its flags require (never mix FOLL_GET and FOLL_PIN)."""
    return unpin_user_pages(r.m, r) if r.flags & FOLL_PIN else put_pages(r.m, r)


# -- the cover letter's gup_test scenarios, run on the model ------------------------------------


_COUNTER_CACHE: dict[tuple, GupCounters] = {}


def scenario_counters(size: str, flags: str, map: str, kernel: str, align: str = "2M",
                      variant: str | None = None) -> GupCounters:
    """Counters of one gup_test run: a fresh namespace, ``mmap`` of ``size`` bytes of its
    dax device (populated), one GUP-fast call over all of it (counters only).  Cached."""
    if flags not in ("get", "pin"):
        raise ParameterError("flags", flags, "'get' (FOLL_GET) or 'pin' (FOLL_PIN)")
    if not isinstance(size, (str, int)) or isinstance(size, bool):
        raise ParameterError("size", size, "a size such as '16G'")
    key = (size, flags, map, kernel, align, variant)
    if key not in _COUNTER_CACHE:
        nbytes = parse_size(size)
        vma = _scenario_vma(size, map, kernel, align)
        f = (FOLL_PIN if flags == "pin" else FOLL_GET) | FOLL_WRITE
        r = gup_fast(vma, vma.vm_start, nbytes >> vma.m.arch.page_shift, f, variant=variant,
                     apply=False)
        _COUNTER_CACHE[key] = r.counters
    return _COUNTER_CACHE[key]


def _map(p: Any, nbytes: int) -> DaxVma:
    return dax_mmap_plan(p, size=nbytes)


@functools.lru_cache(maxsize=4)
def _scenario_vma(size: str, map: str, kernel: str, align: str) -> DaxVma:
    """The namespace and mapping of one scenario: get and pin (and every variant) run on the
    same ``mmap``, as gup_test does (``apply=False`` leaves it as it was); the table asks
    before/after in turn, so four cover a row."""
    nbytes = parse_size(size)
    return _map(plan(namespace_for(nbytes), align=align, map=map, kernel=kernel), nbytes)


def cover_letter_rows(size: str | None = None) -> list[tuple[tuple, GupCounters, float]]:
    """``(row, counters, measured ns)`` for the table rows of ``size`` (all if ``None``)."""
    out = []
    for row in COVER_LETTER_ROWS:
        sz, fl, mp, when, ms, _ = row
        if size is not None and sz != size:
            continue
        c = scenario_counters(sz, fl, mp, COVER_LETTER_KERNELS[when])
        out.append((row, c, ms * 1e6))
    return out


def cover_letter_table(fit_on: str = "16G", predict: str = "128G",
                       free: Iterable[str] | None = None) -> tuple[CostParams, list[Prediction]]:
    """Fit :class:`CostParams` on the ``fit_on`` rows only and predict the ``predict`` rows."""
    train = cover_letter_rows(fit_on)
    params = fit_params([(c, ns) for _, c, ns in train], free=free)
    out = []
    for row, c, _ns in cover_letter_rows(predict):
        sz, fl, mp, when, ms, _ = row
        out.append(Prediction(sz, fl, mp, when, ms, predict_ns(c, params) / 1e6))
    return params, out


def predict_variants(size: str = "128G", params: CostParams | None = None,
                     kernels: Sequence[str] = ("5.16", "5.17", "6.6", "v3"),
                     align: str = "2M") -> list[dict[str, Any]]:
    """Model time of one GUP-fast call over ``size`` for each kernel variant, RAM and altmap
    memmaps, get and pin -- including mainline's per-subpage-head GUP (5.17, 6.6), which the
    cover letter did not measure.  Rows: ``kernel, variant, map, flags, ms`` plus the counters
    that drive them."""
    params = CostParams() if params is None else params
    out = []
    for k in kernels:
        for mp in ("mem", "dev"):
            for fl in ("get", "pin"):
                c = scenario_counters(size, fl, mp, k, align)
                out.append({"kernel": k, "variant": c.variant, "map": mp, "flags": fl,
                            "ms": predict_ns(c, params) / 1e6, "grabs": c.grabs,
                            "atomics": c.atomics, "lines": c.cache_lines,
                            "vmemmap_pages": c.vmemmap_pages_ram + c.vmemmap_pages_device})
    return out


