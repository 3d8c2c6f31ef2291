"""The kernel page tables (``init_mm``) for the vmemmap region, table for table.

Indices are vmemmap page numbers (``vpn``: offset from ``VMEMMAP_START`` in pages), so a struct
page of ``pfn`` lives at byte ``pfn * sizeof(struct page)`` and in page ``vpn = that >> PAGE_SHIFT``.
Levels are numbered bottom-up: 0 = PTE, 1 = PMD, then PUD (if not folded) and PGD (the top,
which already exists: ``swapper_pg_dir``).  A table at level ``i`` is named by the global index of
the level ``i+1`` entry that points at it.

* ``entries[i][e]`` -- level ``i`` entry ``e`` (``i >= 1``) points at the frame of a level ``i-1``
  table (``vmemmap_{pmd,pud,p4d,pgd}_populate`` allocate these: RAM, zeroed, never altmap);
* ``pmd_leaf[k]``   -- PMD entry ``k`` is a leaf mapping a PMD-sized block frame
  (``vmemmap_populate_hugepages``);
* ``pte[t]``        -- the entries of PTE table frame ``t``: frame ids, ``-1`` for none.

Sharing is by reference count on frames: a reused data page is counted once per PTE that maps
it (``vmemmap_pte_populate``'s ``get_page(reuse)``); a PTE table reused by several PMD entries
(the v3 series' patch 14) is counted once per PMD entry.  Freeing follows x86
``remove_pagetable()``: clearing a PTE puts its page; tables are freed when their last entry goes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .arch import Arch
from .errors import KernelError
from .frames import DEVICE, FREE, PAGETABLE, FrameTable

TOP = -2  # the PGD: preallocated, never freed


class KernelPageTables:
    """``init_mm`` page tables over the vmemmap; see the module docstring for the layout."""

    def __init__(self, arch: Arch, frames: FrameTable) -> None:
        self.arch = arch
        self.frames = frames
        self.levels = arch.levels
        self.top = len(arch.levels) - 1
        self.pte_bits = arch.levels[0].bits
        self.pte_mask = arch.levels[0].ptrs - 1
        #: ``levels[i].bits``, read on every table walk
        self.level_bits = tuple(lv.bits for lv in arch.levels)
        #: an empty PTE table, copied for each new one (``np.full`` costs more per call)
        self._empty_pte = np.full(arch.levels[0].ptrs, -1, np.int64)
        self.entries: list[dict[int, int]] = [{} for _ in arch.levels]  # entries[0] unused
        self.pmd_leaf: dict[int, int] = {}
        self.pte: dict[int, np.ndarray] = {}
        self.children: dict[int, int] = {}
        self.boot = False  # allocate from memblock (boot) rather than the buddy allocator
        self._frag_pool: dict[int, tuple[int, int]] = {}  # level -> (host page, tables used)
        self.pte_ro: dict[int, np.ndarray] = {}  # read-only PTE bits per PTE table (HVO)
        #: PTE tables a PMD leaf overwrote (pre-6.6 ppc64 radix, :meth:`overwrite_pmd_leaf`):
        #: frame -> (PMD entry it hung from, its entries); unreachable, never freed, still
        #: holding their pages
        self.leaked_pte: dict[int, tuple[int, np.ndarray]] = {}
        #: PMD blocks a new leaf replaced while still allocated (same path)
        self.leaked_blocks: list[int] = []

    # -- allocation of tables ---------------------------------------------------------------
    def _alloc_table(self, level: int) -> int:
        table_bytes = self.levels[level].ptrs * 8
        if table_bytes < self.arch.PAGE_SIZE:
            fid = self._alloc_fragment(level, table_bytes)
        else:
            fid = int(self.frames.alloc_ram(1, 0, PAGETABLE, boot=self.boot,
                                            function="vmemmap_alloc_block_zero")[0])
        if level == 0:
            self.pte[fid] = self._empty_pte.copy()
        else:
            self.children[fid] = 0
        return fid

    def _alloc_fragment(self, level: int, table_bytes: int) -> int:
        """A table smaller than a page (ppc64 radix 64K: 256-byte PTE tables, 4 KiB PMD/PUD
        tables) is a fragment of a shared page-table page, as ``pte_fragment_alloc`` /
        ``pmd_fragment_alloc`` hand them out; a new page is taken when the current one is full."""
        per_page = self.arch.PAGE_SIZE // table_bytes
        host, used = self._frag_pool.get(level, (-1, per_page))
        if used >= per_page or host < 0 or self.frames.kind[host] == 0:
            host = int(self.frames.alloc_ram(1, 0, PAGETABLE, boot=self.boot,
                                             function="pte_fragment_alloc")[0])
            self.frames.refcount[host] = 0
            used = 0
        fid = self.frames.alloc_fragment(host, used, per_page)
        self._frag_pool[level] = (host, used + 1)
        return fid

    def table_for(self, level: int, index: int) -> int:
        """The level-``level`` table named ``index``, allocated (with its parents) if missing:
        ``vmemmap_p4d/pud/pmd_populate()``."""
        if level == self.top:
            return TOP
        parent_entries = self.entries[level + 1]
        fid = parent_entries.get(index)
        if fid is None:
            parent = self.table_for(level + 1, index >> self.level_bits[level + 1])
            if level == 0 and index in self.pmd_leaf:
                raise AssertionError("PTE table requested under a PMD leaf")
            fid = self._alloc_table(level)
            parent_entries[index] = fid
            if parent != TOP:
                self.children[parent] += 1
        return fid

    def pmd_table_of(self, k: int) -> int:
        """Frame of the PMD table holding PMD entry ``k`` (allocating parents): ``pud`` walk."""
        return self.table_for(1, k >> self.level_bits[1])

    # -- PTE population --------------------------------------------------------------------
    def populate_ptes(self, vpns: np.ndarray, *, fresh: Callable[[int], np.ndarray] | None = None,
                      reuse: int | np.ndarray | None = None) -> np.ndarray:
        """``vmemmap_pte_populate()`` for each vpn (ascending, distinct): an empty PTE gets a new
        page from ``fresh(n)`` or maps ``reuse`` with ``get_page(reuse)``; a present PTE is left
        alone.  ``reuse`` may be one frame or one per vpn.  Returns the frame each vpn maps."""
        vpns = np.asarray(vpns, np.int64)
        out = np.empty(vpns.size, np.int64)
        if vpns.size == 0:
            return out
        if vpns.size <= 4:  # a few pages (ppc64 sections): the same steps without numpy overhead
            return self._populate_few(vpns, fresh, reuse)
        ks = vpns >> self.pte_bits
        if ks[0] == ks[-1]:  # ascending: all in one PTE table (a section's memmap, mostly)
            starts, ends = [0], [vpns.size]
        else:
            bounds = (np.flatnonzero(np.diff(ks)) + 1).tolist()
            starts, ends = [0, *bounds], [*bounds, vpns.size]
        per_vpn_reuse = reuse is not None and np.ndim(reuse) > 0
        for s, e in zip(starts, ends):
            k = int(ks[s])
            if k in self.pmd_leaf:
                raise KernelError("EEXIST", "vmemmap_pte_populate",
                                  f"vmemmap page {int(vpns[s])} is already covered by a PMD leaf")
            table = self.pte[self.table_for(0, k)]
            sub = vpns[s:e] & self.pte_mask
            cur = table[sub]  # a copy (fancy indexing)
            empty = cur < 0
            n_empty = int(np.count_nonzero(empty))
            if n_empty:
                if reuse is None:
                    new = fresh(n_empty)
                elif per_vpn_reuse:
                    new = np.asarray(reuse)[s:e][empty]
                    self.frames.get(new)
                else:
                    new = int(reuse)
                    self.frames.refcount[new] += n_empty  # get_page() once per new PTE
                if n_empty == e - s:
                    cur[:] = new
                    table[sub] = new
                else:
                    cur[empty] = new
                    table[sub[empty]] = new
            out[s:e] = cur
        return out

    def populate_pte_range(self, lo: int, hi: int, *,
                           fresh: Callable[[int], np.ndarray] | None = None,
                           reuse: int | None = None) -> np.ndarray:
        """:meth:`populate_ptes` over the contiguous vpns ``[lo, hi)`` (``reuse``: one frame or
        none), the shape ``vmemmap_populate_range()``'s ``addr += PAGE_SIZE`` loop has.  A range
        inside one PTE table (a section's memmap, mostly) is done on a slice of that table;
        any other goes through :meth:`populate_ptes`."""
        n = hi - lo
        k = lo >> self.pte_bits
        if n <= 4 or (hi - 1) >> self.pte_bits != k:
            return self.populate_ptes(np.arange(lo, hi, dtype=np.int64), fresh=fresh, reuse=reuse)
        if k in self.pmd_leaf:
            raise KernelError("EEXIST", "vmemmap_pte_populate",
                              f"vmemmap page {lo} is already covered by a PMD leaf")
        first = lo & self.pte_mask
        view = self.pte[self.table_for(0, k)][first:first + n]  # a view: writes go to the table
        empty = view < 0
        n_empty = int(np.count_nonzero(empty))
        if n_empty == 0:
            return view.copy()
        if reuse is None:
            new = fresh(n_empty)
        else:
            new = int(reuse)
            self.frames.refcount[new] += n_empty  # get_page() once per new PTE
        if n_empty == n:
            view[:] = new
            if reuse is None:
                return new  # the fresh frames, in vpn order
        else:
            view[empty] = new
        return view.copy()

    def _populate_few(self, vpns: np.ndarray, fresh, reuse) -> np.ndarray:
        out = np.empty(vpns.size, np.int64)
        for i, vpn in enumerate(vpns.tolist()):
            k = vpn >> self.pte_bits
            if k in self.pmd_leaf:
                raise KernelError("EEXIST", "vmemmap_pte_populate",
                                  f"vmemmap page {vpn} is already covered by a PMD leaf")
            table = self.pte[self.table_for(0, k)]
            cur = int(table[vpn & self.pte_mask])
            if cur < 0:
                if reuse is None:
                    cur = int(fresh(1)[0])
                else:
                    cur = int(reuse[i]) if np.ndim(reuse) > 0 else int(reuse)
                    self.frames.refcount[cur] += 1
                table[vpn & self.pte_mask] = cur
            out[i] = cur
        return out

    def set_pmd_leaf(self, k: int, block: int) -> None:
        """Install PMD entry ``k`` as a leaf on a PMD-sized block (``vmemmap_set_pmd``)."""
        parent = self.pmd_table_of(k)
        self.pmd_leaf[k] = block
        self.children[parent] += 1

    def overwrite_pmd_leaf(self, k: int, block: int) -> int | None:
        """Install PMD entry ``k`` as a leaf whatever it holds, the way ppc64 radix's
        ``__map_kernel_page(..., PMD_SIZE)`` does (``set_pte_at(pmdp_ptep(pmdp))``, no check of
        the old entry).  A PTE table it pointed at is leaked with every page it maps (kept in
        :attr:`leaked_pte`); returns that table's frame, or None."""
        old = self.entries[1].get(k)
        if old is None:
            self.set_pmd_leaf(k, block)
            return None
        del self.entries[1][k]
        self.leaked_pte[old] = (k, self.pte.pop(old))
        self.pmd_leaf[k] = block  # the PMD table's entry count is unchanged: one for one
        return old

    def unleak_pte_tables(self, since: set[int]) -> None:
        """Undo :meth:`overwrite_pmd_leaf` for the tables leaked since ``since`` (the keys of
        :attr:`leaked_pte` before) whose PMD entry is empty again: a failed hot-add's undo, as
        the model promises a refused operation changes nothing."""
        for t in [t for t in self.leaked_pte if t not in since]:
            k, table = self.leaked_pte[t]
            if k in self.pmd_leaf or k in self.entries[1]:
                continue
            del self.leaked_pte[t]
            self.pte[t] = table
            parent = self.pmd_table_of(k)
            self.entries[1][k] = t
            self.children[parent] += 1

    def set_pmd_table(self, k: int, table: int) -> None:
        """Point PMD entry ``k`` at an existing PTE table with ``get_page`` (v3 patch 14's
        ``vmemmap_pmd_populate(..., block)``)."""
        parent = self.pmd_table_of(k)
        self.entries[1][k] = table
        self.frames.get(np.array([table]))
        self.children[parent] += 1

    # -- lookups ---------------------------------------------------------------------------
    def pmd_entry(self, k: int) -> tuple[str, int] | None:
        """``("leaf", block)``, ``("table", pte_table)`` or ``None`` for PMD entry ``k``."""
        if k in self.pmd_leaf:
            return ("leaf", self.pmd_leaf[k])
        t = self.entries[1].get(k)
        return None if t is None else ("table", t)

    def resolve(self, vpns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Walk the tables for each vpn: ``(frame id, page index inside the frame)``; frame -1
        where nothing is mapped."""
        vpns = np.atleast_1d(np.asarray(vpns, np.int64))
        ks = vpns >> self.pte_bits
        if vpns.size and (ks == ks[0]).all():  # one PMD entry: no grouping needed
            return self._resolve_one_pmd(int(ks[0]), vpns)
        order, ks, spans = _pmd_runs(ks)
        if order is not None:
            vpns = vpns[order]
        frame = np.full(vpns.size, -1, np.int64)
        sub = np.zeros(vpns.size, np.int64)
        leaf, tables, mask = self.pmd_leaf, self.entries[1], self.pte_mask
        for k, a, b in spans:
            blk = leaf.get(k)
            if blk is not None:
                frame[a:b] = blk
                sub[a:b] = vpns[a:b] & mask
            else:
                t = tables.get(k)
                if t is not None:
                    frame[a:b] = self.pte[t][vpns[a:b] & mask]
        if order is not None:  # back into the caller's order
            frame[order], sub[order] = frame.copy(), sub.copy()
        return frame, sub

    def lookup(self, vpn: int) -> int:
        """:meth:`resolve` of one vpn, without arrays: the frame id mapping it, -1 for none."""
        k = vpn >> self.pte_bits
        leaf = self.pmd_leaf.get(k)
        if leaf is not None:
            return int(leaf)
        t = self.entries[1].get(k)
        return -1 if t is None else int(self.pte[t][vpn & self.pte_mask])

    def _resolve_one_pmd(self, k: int, vpns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`resolve` for vpns that all lie under PMD entry ``k``."""
        leaf = self.pmd_leaf.get(k)
        if leaf is not None:
            return np.full(vpns.size, leaf, np.int64), vpns & self.pte_mask
        sub = np.zeros(vpns.size, np.int64)
        t = self.entries[1].get(k)
        if t is None:
            return np.full(vpns.size, -1, np.int64), sub
        return self.pte[t][vpns & self.pte_mask], sub

    def first_unmapped(self, vpns: np.ndarray) -> int | None:
        """The first of ``vpns`` that nothing maps, or None when every one is mapped."""
        frames, _ = self.resolve(vpns)
        hole = np.flatnonzero(frames < 0)
        return int(np.asarray(vpns)[hole[0]]) if hole.size else None

    def resolve_pfn(self, vpns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(home, pfn)`` of the physical page each vpn maps (pfn -1 where unmapped)."""
        frame, sub = self.resolve(vpns)
        ok = frame >= 0
        pfn = np.full(frame.size, -1, np.int64)
        home = np.zeros(frame.size, np.int8)
        pfn[ok] = self.frames.pfn[frame[ok]] + sub[ok]
        home[ok] = self.frames.home[frame[ok]]
        return home, pfn

    # -- teardown --------------------------------------------------------------------------
    def _child_gone(self, level: int, index: int) -> None:
        parent_index = index >> self.levels[level].bits
        if level == self.top:
            return
        parent = self.entries[level + 1][parent_index]
        self.children[parent] -= 1
        if self.children[parent] == 0:
            del self.children[parent]
            self.frames.put(np.array([parent]))
            del self.entries[level + 1][parent_index]
            self._child_gone(level + 1, parent_index)

    def remove_range(self, vpn_start: int, vpn_end: int,
                     in_use: Callable[[int, int], bool] | None = None) -> None:
        """``vmemmap_free()`` / ``remove_pagetable()`` for vmemmap pages ``[vpn_start, vpn_end)``.

        ``in_use(first_vpn, last_vpn_exclusive)`` tells whether another present (sub)section's
        memmap still lies in a page range at the edges; such pages stay (ppc64's quarter-page
        sections, x86's sub-PMD tracking)."""
        ptrs = self.levels[0].ptrs
        k0, k1 = vpn_start >> self.pte_bits, (vpn_end - 1) >> self.pte_bits
        data: list[np.ndarray] = []  # pages whose PTEs were cleared, put together at the end
        for k in range(k0, k1 + 1):
            lo, hi = max(vpn_start, k * ptrs), min(vpn_end, (k + 1) * ptrs)
            if k in self.pmd_leaf:
                whole = lo == k * ptrs and hi == (k + 1) * ptrs
                if whole or in_use is None or not in_use(k * ptrs, (k + 1) * ptrs):
                    data.append(np.array([self.pmd_leaf.pop(k)], np.int64))
                    self._child_gone(1, k)
                continue
            t = self.entries[1].get(k)
            if t is None:
                continue
            if self.frames.refcount[t] > 1:  # a PTE table shared by several PMD entries (v3)
                del self.entries[1][k]
                self.frames.put(np.array([t]))
                self._child_gone(1, k)
                continue
            table = self.pte[t]
            if hi - lo == ptrs:
                vals = table[table >= 0]
                table[:] = -1
            else:
                sub = np.arange(lo, hi, dtype=np.int64) & self.pte_mask
                vals = table[sub]
                vals = vals[vals >= 0]
                table[sub] = -1
            data.append(vals)
            if (table < 0).all():
                del self.pte[t]
                del self.entries[1][k]
                data.append(np.array([t], np.int64))
                self._child_gone(1, k)
        if data:
            self.frames.put(np.concatenate(data))

    def prune_empty(self) -> None:
        """Free every table left without entries: PTE tables with no present PTE, then upper
        tables with no children.  Called on the failure path of a hot-add so that a refused
        operation leaves no page-table page behind (x86's ``remove_pagetable`` frees such
        tables over the range it clears; the model sweeps them all, there are no others)."""
        for k, t in list(self.entries[1].items()):
            if k in self.pmd_leaf or t not in self.pte:
                continue
            if (self.pte[t] < 0).all() and self.frames.refcount[t] == 1:
                del self.pte[t]
                self.pte_ro.pop(t, None)
                del self.entries[1][k]
                self.frames.put(np.array([t]))
                self._child_gone(1, k)
        for level in range(2, len(self.entries)):
            for idx, fid in list(self.entries[level].items()):
                if self.children.get(fid, 1) == 0 and idx in self.entries[level]:
                    del self.children[fid]
                    del self.entries[level][idx]
                    self.frames.put(np.array([fid]))
                    self._child_gone(level, idx)

    # -- counts ------------------------------------------------------------------------------
    def table_counts(self) -> dict[str, int]:
        """Number of page-table pages per level (the PGD, which always exists, is left out)."""
        out = {}
        for i, lv in enumerate(self.levels[:-1]):
            out[lv.name] = len(set(self.entries[i + 1].values()))
        return out

    def mapped_ptes(self) -> int:
        return int(sum(int((t >= 0).sum()) for t in self.pte.values()))

    # -- PTE permissions, remapping and PMD splits (HVO: mm/hugetlb_vmemmap.c) ----------------
    # Added for vmemlab.hugetlb_vmemmap.  Read-only bits are kept per PTE table frame and are
    # only set by HVO on boot-RAM vmemmap, which is never hot-removed.
    def pte_is_ro(self, vpns: np.ndarray) -> np.ndarray:
        """Whether each vpn is mapped by a read-only PTE (PMD leaves are always RW)."""
        vpns = np.atleast_1d(np.asarray(vpns, np.int64))
        out = np.zeros(vpns.size, bool)
        ro_tables = self.pte_ro
        if not ro_tables:
            return out
        order, ks, spans = _pmd_runs(vpns >> self.pte_bits)
        if order is not None:
            vpns = vpns[order]
        for k, a, b in spans:
            t = self.entries[1].get(k)
            if t is None or k in self.pmd_leaf or t not in ro_tables:
                continue
            out[a:b] = ro_tables[t][vpns[a:b] & self.pte_mask]
        if order is not None:
            out[order] = out.copy()
        return out

    def remap_pte(self, vpn: int, frame: int, ro: bool) -> int:
        """``set_pte_at(&init_mm, addr, pte, mk_pte(page, pgprot))`` on a present PTE: point
        ``vpn`` at ``frame`` (``get_page`` on it) with ``PAGE_KERNEL_RO`` or ``PAGE_KERNEL``.
        Returns the frame it mapped before; the caller puts that one."""
        k = vpn >> self.pte_bits
        t = self.entries[1].get(k)
        if t is None or k in self.pmd_leaf:
            raise AssertionError(f"remap_pte: vmemmap page {vpn} is not mapped by a PTE")
        table = self.pte[t]
        old = int(table[vpn & self.pte_mask])
        if old < 0:
            raise AssertionError(f"remap_pte: PTE of vmemmap page {vpn} is empty")
        self.frames.get(np.array([frame]))
        table[vpn & self.pte_mask] = frame
        ro_bits = self.pte_ro.setdefault(t, np.zeros(self.levels[0].ptrs, bool))
        ro_bits[vpn & self.pte_mask] = ro
        return old

    def split_pmd_leaf(self, k: int) -> int:
        """``vmemmap_split_pmd()``: replace the PMD leaf ``k`` by a new PTE table whose 512 PTEs
        map the block's pages, and split the block frame into order-0 frames (``split_page``;
        the kernel skips that for PageReserved boot blocks, the model always splits so pages can
        be freed one by one -- RAM accounting is the same).  Returns the PTE table frame."""
        block = self.pmd_leaf.get(k)
        if block is None:
            raise AssertionError(f"split_pmd_leaf: PMD {k} is not a leaf")
        f = self.frames
        if int(f.home[block]) == DEVICE:
            raise KernelError("ENOTSUPP", "vmemmap_split_pmd",
                              "the vmemmap block lives on the device (altmap); it cannot be "
                              "split and remapped")
        table = self._alloc_table(0)
        ptrs = self.levels[0].ptrs
        order = int(f.order[block])
        if order != self.pte_bits:
            raise AssertionError(f"PMD block of order {order}, expected {self.pte_bits}")
        ids = f._new(ptrs, 0, int(f.kind[block]), int(f.home[block]), int(f.pfn[block]),
                     bool(f.boot[block]))
        f.kind[block] = FREE  # the block's pages now belong to the order-0 frames
        f.refcount[block] = 0
        self.pte[table][:] = ids
        del self.pmd_leaf[k]
        self.entries[1][k] = table
        return table


def _pmd_runs(ks: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, list[tuple[int, int, int]]]:
    """Group PMD indices ``ks`` into runs of one value: ``(order, sorted ks, [(k, start,
    end)])``, ``order`` the permutation that sorted them (``None`` when they already were, the
    usual case: vmemmap ranges ascend).  Linear in ``ks`` plus one step per distinct PMD
    entry, where comparing every vpn with every entry was quadratic (8192 PMD entries x 4M
    vpns for 4 TiB of 4K pages)."""
    order = None
    if ks.size > 1 and (ks[1:] < ks[:-1]).any():
        order = np.argsort(ks, kind="stable")
        ks = ks[order]
    starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]]) if ks.size else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], ks.size]
    return order, ks, list(zip(ks[starts].tolist(), starts.tolist(), ends.tolist()))
