"""Physical frames: who holds each one, where it lives, and its reference count.

A *frame* here is one allocation of ``1 << order`` physical pages: an order-0 vmemmap data page,
an order-9 PMD block (x86's 2 MiB vmemmap blocks) or a page-table page.  Frames are identified
by dense integer ids so that whole sections are handled with numpy.  Every frame records

* ``kind``   -- :data:`VMEMMAP` (struct pages), :data:`PAGETABLE` (a kernel page-table page);
* ``home``   -- :data:`RAM` or :data:`DEVICE` (carved from a ``vmem_altmap``);
* ``pfn``    -- its first physical page (device frames: the altmap pfn the kernel computes);
* ``refcount`` -- the struct-page ``_refcount`` of its first page, as ``get_page()`` /
  ``put_page_testzero()`` move it (kernel-facts.md §3.1: the reuse path pairs a ``get_page`` per
  extra mapping with the ``put_page_testzero`` in the freeing path).

:class:`RamAllocator` stands for the buddy allocator (or memblock at boot) and refuses with
``-ENOMEM`` when a modelled RAM size runs out; :class:`VmemAltmap` is ``struct vmem_altmap`` with
``altmap_alloc_block_buf()`` / ``vmem_altmap_free()`` semantics.
"""

from __future__ import annotations

import numpy as np

from .errors import KernelError
from .include.memremap import VmemAltmap

FREE, VMEMMAP, PAGETABLE = 0, 1, 2
RAM, DEVICE = 0, 1
KIND_NAMES = {FREE: "free", VMEMMAP: "vmemmap", PAGETABLE: "pagetable"}
HOME_NAMES = {RAM: "RAM", DEVICE: "device"}

#: RAM frames of a machine without a RAM size get label pfns counting up from here (4 GiB): the
#: model checks RAM by capacity, so these name pages (in diagrams, and as the keys of the struct
#: page store, so a live frame's label is never another live frame's); with boot RAM the boot
#: memmap's frames come first.  A machine with a RAM size labels top-down from its last pfn
#: (memblock allocates top-down), so every label is a pfn that machine has.
RAM_LABEL_BASE = 1 << 20


class RamAllocator:
    """The page allocator as far as the vmemmap sees it: a capacity in pages and a use count.

    ``capacity=None`` means unlimited.  Boot allocations (memblock) and runtime ones (buddy)
    draw on the same capacity; ``alloc`` refuses with ``-ENOMEM`` instead of overdrawing.
    """

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.used = 0
        self.peak = 0
        self._next_pfn = RAM_LABEL_BASE
        #: next label, counting down from the end of RAM (only with a capacity)
        self._top = capacity

    @property
    def free(self) -> int | None:
        return None if self.capacity is None else self.capacity - self.used

    def alloc(self, nr_pages: int, order: int, function: str = "vmemmap_alloc_block") -> int:
        """Take ``nr_pages`` pages in blocks of ``1 << order``; return the first label pfn."""
        if self.capacity is not None and self.used + nr_pages > self.capacity:
            raise KernelError(
                "ENOMEM", function,
                f"needs {nr_pages} more page(s) of RAM but only {self.capacity - self.used} of "
                f"{self.capacity} are free")
        self.used += nr_pages
        if self.used > self.peak:
            self.peak = self.used
        align = 1 << order
        if self._top is not None:
            pfn = (self._top - nr_pages) // align * align
            if pfn >= 0:
                self._top = pfn
                return pfn
            # more pages handed out over time than the machine has: labels are never reused
            # (they key the struct page store), so continue above the end of RAM
            self._top = None
            self._next_pfn = max(self._next_pfn, self.capacity)
        pfn = -(-self._next_pfn // align) * align
        self._next_pfn = pfn + nr_pages
        return pfn

    def release(self, nr_pages: int) -> None:
        if nr_pages > self.used:
            raise AssertionError(f"RAM underflow: freeing {nr_pages} of {self.used}")
        self.used -= nr_pages


class FrameTable:
    """Every frame the model has allocated, as growable numpy columns indexed by frame id."""

    def __init__(self, ram: RamAllocator, page_shift: int) -> None:
        self.ram = ram
        self.page_shift = page_shift
        self.n = 0
        cap = 1024
        self.refcount = np.zeros(cap, np.int64)
        self.order = np.zeros(cap, np.int8)
        self.kind = np.zeros(cap, np.int8)
        self.home = np.zeros(cap, np.int8)
        self.pfn = np.zeros(cap, np.int64)
        self.boot = np.zeros(cap, np.bool_)
        #: for a page-table *fragment* (a table smaller than a page, ppc64's pte/pmd fragments):
        #: the frame of the page that hosts it; -1 for ordinary frames
        self.frag_of = np.full(cap, -1, np.int64)
        self.altmap: dict[int, VmemAltmap] = {}  # frame id -> altmap it came from
        #: called with the ids of frames about to be freed (the struct page store forgets
        #: their contents)
        self.on_free: list = []

    # -- growth ---------------------------------------------------------------------------
    def _reserve(self, extra: int) -> None:
        need = self.n + extra
        cap = len(self.refcount)
        if need <= cap:
            return
        while cap < need:
            cap *= 2
        for name in ("refcount", "order", "kind", "home", "pfn", "boot", "frag_of"):
            old = getattr(self, name)
            new = np.full(cap, -1, old.dtype) if name == "frag_of" else np.zeros(cap, old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)

    def _new(self, count: int, order: int, kind: int, home: int, pfn0: int, boot: bool) -> np.ndarray:
        """``count`` new frame ids, refcount 1, pfns ``pfn0`` up in steps of ``1 << order``."""
        n = self.n
        if n + count > len(self.refcount):
            self._reserve(count)
        ids = np.arange(n, n + count, dtype=np.int64)
        if count == 1:  # a page-table page or a PMD block: scalar stores cost less
            self.refcount[n] = 1
            self.order[n] = order
            self.kind[n] = kind
            self.home[n] = home
            self.pfn[n] = pfn0
            self.boot[n] = boot
        else:
            # rows from n up were never used (ids are not reused; _reserve zero-fills), so
            # only values other than zero need storing
            sl = slice(n, n + count)
            self.refcount[sl] = 1
            self.kind[sl] = kind
            self.pfn[sl] = np.arange(pfn0, pfn0 + (count << order), 1 << order, dtype=np.int64)
            if order:
                self.order[sl] = order
            if home:
                self.home[sl] = home
            if boot:
                self.boot[sl] = boot
        self.n = n + count
        return ids

    # -- allocation -----------------------------------------------------------------------
    def alloc_ram(self, count: int, order: int, kind: int, boot: bool = False,
                  function: str = "vmemmap_alloc_block") -> np.ndarray:
        """``count`` new frames of ``1 << order`` RAM pages each, refcount 1."""
        if count == 0:
            return np.empty(0, np.int64)
        pfn0 = self.ram.alloc(count << order, order, function)
        return self._new(count, order, kind, RAM, pfn0, boot)

    def alloc_fragment(self, host: int, index: int, nr_per_page: int) -> int:
        """A page-table fragment inside page-table page ``host`` (``pte_fragment_alloc``-style:
        one page is carved into ``nr_per_page`` tables; the host is freed with its last one)."""
        fid = int(self._new(1, 0, PAGETABLE, RAM, int(self.pfn[host]), bool(self.boot[host]))[0])
        self.frag_of[fid] = host
        self.refcount[host] += 1
        return fid

    def alloc_altmap(self, altmap: VmemAltmap, order: int) -> int | None:
        """One frame of ``1 << order`` pages from the altmap (``altmap_alloc_block_buf``), or
        ``None`` when it cannot supply it (nothing is taken then)."""
        pfn = altmap.altmap_alloc_block_buf(1 << (order + self.page_shift), self.page_shift)
        if pfn is None:
            return None
        fid = int(self._new(1, order, VMEMMAP, DEVICE, pfn, False)[0])
        self.altmap[fid] = altmap
        return fid

    def alloc_altmap_pages(self, altmap: VmemAltmap, count: int) -> np.ndarray | None:
        """``count`` order-0 frames from the altmap in one go (order-0 blocks need no alignment)."""
        if count == 0:
            return np.empty(0, np.int64)
        if count > altmap.vmem_altmap_nr_free():
            return None
        pfn0 = altmap.vmem_altmap_next_pfn()
        altmap.alloc += count
        ids = self._new(count, 0, VMEMMAP, DEVICE, pfn0, False)
        for fid in ids.tolist():
            self.altmap[fid] = altmap
        return ids

    # -- references -----------------------------------------------------------------------
    def get(self, ids: np.ndarray, counts: np.ndarray | int = 1) -> None:
        """``get_page()`` on each frame (``counts`` times); ids may repeat."""
        np.add.at(self.refcount, ids, counts)

    def put(self, ids: np.ndarray) -> np.ndarray:
        """``put_page_testzero()`` once per id (ids may repeat); frees and returns the frames
        whose count reached zero."""
        ids = np.asarray(ids, np.int64)
        if ids.size == 0:
            return ids
        uniq, counts = np.unique(ids, return_counts=True)
        rc = self.refcount[uniq] - counts
        if (rc < 0).any() or (self.kind[uniq] == FREE).any():
            raise AssertionError("put_page on a free frame: a double free in the model")
        self.refcount[uniq] = rc
        dead = uniq[rc == 0]
        self.free_frames(dead)
        return dead

    def free_frames(self, ids: np.ndarray) -> None:
        """Return frames to where they came from: the page allocator or their altmap."""
        ids = np.asarray(ids, np.int64)
        if ids.size == 0:
            return
        frag = self.frag_of[ids] >= 0
        if frag.any():
            hosts = self.frag_of[ids[frag]]
            self.kind[ids[frag]] = FREE
            self.refcount[ids[frag]] = 0
            self.frag_of[ids[frag]] = -1
            ids = ids[~frag]
            self.put(hosts)
            if ids.size == 0:
                return
        for hook in self.on_free:
            hook(ids)
        home = self.home[ids]
        pages = np.int64(1) << self.order[ids].astype(np.int64)
        on_dev = home == DEVICE
        if on_dev.any():
            for fid, npages in zip(ids[on_dev].tolist(), pages[on_dev].tolist()):
                self.altmap.pop(fid).vmem_altmap_free(npages)
            ram_pages = int(pages[~on_dev].sum())
        else:
            ram_pages = int(pages.sum())
        if ram_pages:
            self.ram.release(ram_pages)
        self.kind[ids] = FREE
        self.refcount[ids] = 0

    # -- views ----------------------------------------------------------------------------
    def live(self) -> np.ndarray:
        return np.flatnonzero(self.kind[: self.n] != FREE)

    def pages(self, kind: int | None = None, home: int | None = None, boot: bool | None = None) -> int:
        """Total pages held by live frames matching ``kind`` / ``home`` / ``boot`` (fragments
        count through the page that hosts them)."""
        sel = (self.kind[: self.n] != FREE) & (self.frag_of[: self.n] < 0)
        if kind is not None:
            sel &= self.kind[: self.n] == kind
        if home is not None:
            sel &= self.home[: self.n] == home
        if boot is not None:
            sel &= self.boot[: self.n] == boot
        return int((np.int64(1) << self.order[: self.n][sel].astype(np.int64)).sum())
