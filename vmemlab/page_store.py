"""Where struct pages live in the model: :class:`StructPageStore`, 64-byte records kept per
*physical* vmemmap page, materialised lazily from init records, and the vectorised field
accessors (``read_field``, ``write_field``, ``add_field``, flag bits) every mm module uses.

Not a kernel file: the kernel just dereferences ``pfn_to_page(pfn)``.  How the store works
(keys, lazy replay, faults) is described in :mod:`vmemlab.page`, which re-exports all of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ParameterError, VmemlabError
from .include.memory_model import head_va
from .include.mm_types import (
    MAPPING_POINTER_BASE,
    PGMAP_POINTER_BASE,
    SIZEOF_STRUCT_PAGE,
    layout_key,
    struct_page_dtype,
)
from .include.page_flags import PG, ZONE_NORMAL, zone_node_flags
from .units import as_int_array

if TYPE_CHECKING:
    from .machine import Machine
    from .memremap import DevPagemap


class VmemmapFault(VmemlabError):
    """An access the kernel could not make: the vmemmap address is not mapped ("BUG: unable to
    handle page fault"), or a write hits a read-only vmemmap PTE (HVO tails)."""


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
