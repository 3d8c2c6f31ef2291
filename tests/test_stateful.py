"""A stateful property test of the whole engine (hypothesis ``RuleBasedStateMachine``).

One :class:`~vmemlab.machine.Machine` per run, of any arch preset and any kernel variant, with
1 GiB of boot RAM.  Rules hot-add and remove device memory (``memremap_pages`` /
``memunmap_pages``: struct pages in RAM or in an altmap, every device-dax order, aligned or
not, crossing sections or not), read and write struct pages, allocate, optimise, restore and
dissolve HugeTLB pages, pin and unpin through a device-dax mapping, and poison pfns.

Every rule runs on two machines: ``m`` and a *twin* that, after each successful step, reads
(materialises) the struct pages of every live range.  The engine stores struct pages lazily,
so the twin sees every page "eagerly" while ``m`` touches them only when a rule does; the
read rule compares the two word for word.  Invariants derived independently of the engine's
own bookkeeping, checked after every step:

* every vmemmap page of a live range is mapped (a present ``pfn_valid`` pfn has a struct page);
* a vmemmap data frame's refcount equals the number of PTEs and PMD leaves mapping it, a PTE
  table's the number of PMD entries pointing at it (``get_page`` per mapping, kernel-facts §3);
* compound heads of aligned ranges are the arithmetic ones, ``pfn & ~(nr - 1)``;
* a refused rule leaves ``Machine.state()`` as it was;
* after removing everything, RAM, frames and page tables are back where boot left them.

The ``ci`` profile (tests/conftest.py) runs a fixed set of examples; ``HYPOTHESIS_PROFILE=deep``
explores for as long as you let it.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from vmemlab import gup
from vmemlab.arch import ARCHES
from vmemlab.dax_device import dax_mmap
from vmemlab.errors import VmemlabError
from vmemlab.frames import PAGETABLE, VMEMMAP, VmemAltmap
from vmemlab.hugetlb_vmemmap import (
    alloc_hugetlb_folio,
    dissolve_free_huge_page,
    hugetlb_vmemmap_optimize,
    hugetlb_vmemmap_restore,
    vmemmap_page_count,
)
from vmemlab.kernels import KERNELS
from vmemlab.machine import Machine
from vmemlab.memory_failure import memory_failure
from vmemlab.memremap import PGMAP_ALTMAP_VALID, DevPagemap, memremap_pages, memunmap_pages
from vmemlab.page import compound_head_pfns, read_field, write_field

BASE = 64 << 30
SUB = 2 << 20  # SUBSECTION_SIZE on every arch (include/linux/mmzone.h)
ARCH_KERNELS = [(a, k) for a in ARCHES for k in KERNELS]
STEPS = [0]  # rules run in this session (the deep run reports it)


def _sample(pgmap: DevPagemap, ps: int, n: int = 24) -> np.ndarray:
    """A fixed sample of a pgmap's pfns: its edges, each compound head near the start, the
    first two vmemmap pages' worth of struct pages and a stride through the rest."""
    out = []
    nr = 1 << pgmap.vmemmap_shift
    for s, e in pgmap.ranges:
        lo, hi = s >> ps, e >> ps
        out += [lo, lo + 1, lo + 2, hi - 1]
        out += list(range(lo, min(hi, lo + 4 * nr), nr))
        out += list(range(lo, hi, max(1, (hi - lo) // n)))
        out += [min(hi - 1, lo + k) for k in (63, 64, 65, 127, 128, 1023, 1024, 2047, 2048)]
    return np.unique(np.array(out, np.int64))


class VmemmapMachine(RuleBasedStateMachine):
    @initialize(ak=st.sampled_from(ARCH_KERNELS))
    def boot(self, ak):
        self._boot(*ak)

    def _boot(self, arch: str, kernel: str) -> None:
        STEPS[0] += 1
        self.arch, self.kernel = arch, kernel
        self.m = Machine(self.arch, self.kernel, ram="1G")
        self.t = Machine(self.arch, self.kernel, ram="1G")
        self.boot_state = self.m.state()
        self.pgmaps: list[tuple[DevPagemap, DevPagemap]] = []
        self.folios: list = []
        self.pins: list = []
        self.vmas: dict[int, tuple] = {}
        self.splits = 0  # vmemmap PMDs HVO split: their PTE tables stay (kernel-facts §10)

    # -- running a step on both machines ----------------------------------------------------
    def both(self, fn):
        """Run ``fn(machine, side)`` on m and on the twin; both must succeed or both refuse the
        same way, a refusal changing nothing.  Returns both results (or None)."""
        STEPS[0] += 1
        out = []
        errs = []
        for side, mach in ((0, self.m), (1, self.t)):
            before = mach.state()
            try:
                out.append(fn(mach, side))
                errs.append(None)
            except VmemlabError as e:
                assert mach.state() == before, f"refused step changed the machine: {e}"
                out.append(None)
                errs.append(type(e).__name__ + ":" + getattr(e, "errno", ""))
        assert errs[0] == errs[1], errs
        if errs[0] is None:
            self._materialise_twin()
            return out
        return None

    def _materialise_twin(self):
        ps = self.t.arch.page_shift
        for _, pt in self.pgmaps:
            read_field(self.t, _sample(pt, ps), "words")

    # -- device memory ---------------------------------------------------------------------
    @rule(slot=st.sampled_from([0, 1, 2, 3, 31, 32, 63, 64, 512, 640]),
          nsub=st.sampled_from([1, 2, 3, 5, 8, 31, 64, 65, 512, 576]),
          order=st.sampled_from(["dax0", "dax1", "dax2", 0, 12]),
          dev=st.booleans(), free_factor=st.sampled_from([0.5, 1.0, 2.0]))
    def map_device_memory(self, slot, nsub, order, dev, free_factor):
        a = self.m.arch
        if isinstance(order, str):
            orders = a.dax_align_orders()
            i = int(order[-1])
            if i >= len(orders):
                return
            order = orders[i]
        start, size = BASE + slot * SUB, nsub * SUB
        ps = a.page_shift

        def go(mach, side):
            altmap, flags = None, 0
            if dev:
                pfn = start >> ps
                need = (size >> ps) * a.struct_page_size // a.PAGE_SIZE + a.PTRS_PER_PTE
                altmap = VmemAltmap(base_pfn=pfn, end_pfn=pfn + (size >> ps), reserve=2,
                                    free=int(need * free_factor))
                flags = PGMAP_ALTMAP_VALID
            pg = DevPagemap(ranges=[(start, start + size)], vmemmap_shift=order,
                            altmap=altmap, flags=flags, name=f"dax{slot}.{nsub}")
            memremap_pages(mach, pg)
            return pg

        r = self.both(go)
        if r is not None:
            self.pgmaps.append((r[0], r[1]))

    @precondition(lambda self: self.pgmaps)
    @rule(i=st.integers(0, 7))
    def unmap_device_memory(self, i):
        i %= len(self.pgmaps)
        pair = self.pgmaps[i]
        lo, hi = pair[0].pfn_range(0, self.m.arch.page_shift)
        for k in [k for k, (res, _) in enumerate(self.pins)
                  if res.run_pfn.size and lo <= int(res.run_pfn[0]) < hi][::-1]:
            self.release_pins(k)
        self.vmas.pop(id(pair[0]), None)
        self.pgmaps.pop(i)
        assert self.both(lambda mach, side: memunmap_pages(mach, pair[side])) is not None

    # -- struct pages ----------------------------------------------------------------------
    @precondition(lambda self: self.pgmaps)
    @rule(i=st.integers(0, 7))
    def read_struct_pages(self, i):
        pm, pt = self.pgmaps[i % len(self.pgmaps)]
        pfns = _sample(pm, self.m.arch.page_shift)
        assert np.array_equal(read_field(self.m, pfns, "words"), read_field(self.t, pfns, "words"))

    @precondition(lambda self: self.pgmaps)
    @rule(i=st.integers(0, 7), k=st.integers(0, 10_000), value=st.integers(0, 2**32))
    def write_private(self, i, k, value):
        pm, _ = self.pgmaps[i % len(self.pgmaps)]
        pfns = _sample(pm, self.m.arch.page_shift)
        pfn = int(pfns[k % pfns.size])
        self.both(lambda mach, side: write_field(mach, pfn, "private", value))

    # -- HugeTLB and HVO ---------------------------------------------------------------------
    @rule(big=st.booleans())
    def alloc_hugetlb(self, big):
        a = self.m.arch
        orders = [a.PMD_SHIFT - a.page_shift] + (
            [a.PUD_SHIFT - a.page_shift] if a.PUD_SHIFT is not None else [])
        order = orders[-1] if big else orders[0]
        r = self.both(lambda mach, side: alloc_hugetlb_folio(mach, 1 << (order + a.page_shift)))
        if r is not None:
            self.folios.append(r)

    @precondition(lambda self: self.folios)
    @rule(i=st.integers(0, 7), head_copy=st.sampled_from([None, False, True]))
    def optimize_hugetlb(self, i, head_copy):
        f = self.folios[i % len(self.folios)]
        r = self.both(lambda mach, side: hugetlb_vmemmap_optimize(mach, f[side], head_copy))
        if r is not None:
            self.splits += r[0].split_pte_tables

    @precondition(lambda self: self.folios)
    @rule(i=st.integers(0, 7))
    def restore_hugetlb(self, i):
        f = self.folios[i % len(self.folios)]
        self.both(lambda mach, side: hugetlb_vmemmap_restore(mach, f[side]))

    @precondition(lambda self: self.folios)
    @rule(i=st.integers(0, 7))
    def dissolve_hugetlb(self, i):
        i %= len(self.folios)
        f = self.folios[i]
        if self.both(lambda mach, side: dissolve_free_huge_page(mach, f[side])) is not None:
            self.folios.pop(i)

    # -- GUP -------------------------------------------------------------------------------
    def _vma(self, pair):
        a = self.m.arch
        if id(pair[0]) not in self.vmas:
            align = a.PAGE_SIZE << pair[0].vmemmap_shift
            if align not in (a.PAGE_SIZE, a.PMD_SIZE, a.PUD_SIZE) or pair[0].altmap is not None:
                return None
            (s, e), = pair[0].ranges
            if s % align or (e - s) % align:
                return None
            vm = [dax_mmap(mach, pair[side], s, e - s, align)
                  for side, mach in ((0, self.m), (1, self.t))]
            for v in vm:
                v.populate()
            self.vmas[id(pair[0])] = tuple(vm)
        return self.vmas[id(pair[0])]

    @precondition(lambda self: self.pgmaps)
    @rule(i=st.integers(0, 7), nr=st.sampled_from([1, 2, 513, 4096]), pin=st.booleans())
    def grab_pages(self, i, nr, pin):
        pair = self.pgmaps[i % len(self.pgmaps)]
        vm = self._vma(pair)
        if vm is None:
            return
        nr = min(nr, vm[0].size >> self.m.arch.page_shift)
        fn = gup.pin_user_pages_fast if pin else gup.get_user_pages_fast
        r = self.both(lambda mach, side: fn(vm[side], vm[side].vm_start, nr))
        if r is not None:
            assert r[0].nr == r[1].nr
            self.pins.append(r)

    @precondition(lambda self: self.pins)
    @rule(k=st.integers(0, 7))
    def release_pins(self, k):
        k %= len(self.pins)
        res = self.pins.pop(k)
        self.both(lambda mach, side: gup.release(res[side]))
        # a second release of the same pages[] is refused and changes nothing
        assert self.both(lambda mach, side: gup.release(res[side])) is None

    # -- memory failure ----------------------------------------------------------------------
    @precondition(lambda self: self.pgmaps)
    @rule(i=st.integers(0, 7), k=st.integers(0, 10_000))
    def poison(self, i, k):
        pm, _ = self.pgmaps[i % len(self.pgmaps)]
        pfns = _sample(pm, self.m.arch.page_shift)
        pfn = int(pfns[k % pfns.size])
        r = self.both(lambda mach, side: memory_failure(mach, pfn))
        if r is not None:
            assert (r[0].rc, r[0].head_pfn) == (r[1].rc, r[1].head_pfn)

    # -- invariants ---------------------------------------------------------------------------
    @invariant()
    def memmap_of_live_ranges_is_mapped(self):
        if not hasattr(self, "m"):
            return
        a = self.m.arch
        for pm, _ in self.pgmaps:
            for s, e in pm.ranges:
                lo = ((s >> a.page_shift) * a.struct_page_size) >> a.page_shift
                hi = -(-((e >> a.page_shift) * a.struct_page_size) // a.PAGE_SIZE)
                fr, _ = self.m.pgtables.resolve(np.arange(lo, hi, dtype=np.int64))
                assert (fr >= 0).all(), f"hole in the memmap of {pm.name}"

    @invariant()
    def refcounts_count_the_mappings(self):
        if not hasattr(self, "m"):
            return
        for mach in (self.m, self.t):
            pt, f = mach.pgtables, mach.frames
            # a PTE mapped by vmemmap_pte_populate() holds a reference (get_page); HVO's
            # read-only remaps (vmemmap_remap_pte: mk_pte only) hold none; a 2026 shared tail
            # page also holds its zone's allocation reference
            rw, ro_maps = [], []
            # a PTE table a ppc64 PMD leaf overwrote (5.19-6.3) keeps its pages' references
            rw += [table[table >= 0] for _, table in pt.leaked_pte.values()]
            for t, table in pt.pte.items():
                ro = pt.pte_ro.get(t)
                keep = table >= 0 if ro is None else (table >= 0) & ~ro
                rw.append(table[keep])
                if ro is not None:
                    ro_maps.append(table[(table >= 0) & ro])
            empty = np.empty(0, np.int64)
            mapped = np.concatenate(rw or [empty])
            leaves = np.array(list(pt.pmd_leaf.values()), np.int64)
            zone = np.array(list(getattr(getattr(mach, "vmemmap_optimization", None), "tails",
                                         {}).values()), np.int64)
            counts = np.bincount(np.concatenate((mapped, leaves, zone)).astype(np.int64),
                                 minlength=f.n)
            ro_count = np.bincount(np.concatenate(ro_maps or [empty]), minlength=f.n)
            live = f.live()
            data = live[f.kind[live] == VMEMMAP]
            # the model's frame refcount is the frame's lifetime count: before the 2026
            # rework it also counts HVO's read-only PTEs, and vmemmap_page_count() takes them
            # out again to give the kernel's page_count()
            lifetime_ro = 0 if mach.kernel.shared_tail else ro_count[data]
            assert np.array_equal(f.refcount[data] - lifetime_ro, counts[data]), \
                "vmemmap refcounts"
            for fid in data[ro_count[data] > 0].tolist():
                assert vmemmap_page_count(mach, fid) == counts[fid], "kernel page_count"
            tables = np.array(list(pt.entries[1].values()), np.int64)
            tcount = np.bincount(tables, minlength=f.n) if tables.size else np.zeros(f.n, int)
            ptes = live[(f.kind[live] == PAGETABLE) & np.isin(live, list(pt.pte))]
            ptes = ptes[f.frag_of[ptes] < 0]
            assert np.array_equal(f.refcount[ptes], tcount[ptes]), "PTE table refcounts"

    @invariant()
    def aligned_compound_heads_are_arithmetic(self):
        if not hasattr(self, "t"):
            return
        ps = self.t.arch.page_shift
        for _, pt in self.pgmaps:
            nr = 1 << pt.vmemmap_shift
            (s, _e), = pt.ranges
            if (s >> ps) % nr:
                continue
            start = s >> ps
            if pt.altmap is not None:
                start = pt.altmap.base_pfn + pt.altmap.vmem_altmap_offset()
                if self.t.kernel.shared_tail and start % nr:
                    # the 2026 encoding is a mask on the struct page address: compound pages
                    # must be aligned to their size (nd_pfn's dataoff guarantees it for real
                    # namespaces; this hand-built altmap does not)
                    continue
            pfns = _sample(pt, ps)
            pfns = pfns[pfns >= start]
            if self.t.kernel.compound_devmap and nr > 1:
                expect = start + ((pfns - start) // nr) * nr
            else:
                expect = pfns
            assert np.array_equal(compound_head_pfns(self.t, pfns), expect), pt.name

    @staticmethod
    def _stray_vmemmap(mach: Machine) -> tuple[int, int]:
        """(distinct data frames, PTEs) of vmemmap pages mapped although no present section
        or subsection has struct pages in them, and the data frames of PTE tables a ppc64 PMD
        leaf overwrote (whose PTEs no walk reaches any more)."""
        pt = mach.pgtables
        ptrs = mach.arch.PTRS_PER_PTE
        frames, n = set(), 0
        for _, table in pt.leaked_pte.values():
            frames.update(table[table >= 0].tolist())
        for k, t in pt.entries[1].items():
            if k in pt.pmd_leaf or t not in pt.pte:
                continue
            table = pt.pte[t]
            for j in np.flatnonzero(table >= 0).tolist():
                vpn = k * ptrs + j
                if not mach.sparse.memmap_in_use(vpn, vpn + 1):
                    frames.add(int(table[j]))
                    n += 1
        return len(frames), n

    def teardown(self):
        if not hasattr(self, "m"):
            return
        while self.pins:
            self.release_pins(0)
        while self.folios:
            self.dissolve_hugetlb(0)
        while self.pgmaps:
            self.unmap_device_memory(0)
        b = self.boot_state
        ptrs = self.m.arch.PTRS_PER_PTE
        for mach in (self.m, self.t):
            st_ = mach.state()
            u, ub = st_["usage"], b["usage"]
            # The generic vmemmap_populate_compound_pages() maps a cut compound page's memmap
            # past the chunk's end (and 5.19's small orders the page after each step);
            # vmemmap_free() never clears those PTEs: a kernel leak the model keeps
            # (memremap.vmemmap_overrun_vpns).  On ppc64 radix 5.19-6.3 the arch vmemmap_free()
            # frees only blocks on vmemmap_list, so a compound range's PTE-mapped memmap stays
            # too, and a later PMD leaf can orphan its PTE table (pgtables.leaked_pte).  They
            # are the only pages allowed to stay, and only as pages no present memory uses.
            stray_frames, stray_ptes = self._stray_vmemmap(mach)
            u = dict(u, ram_data_pages=u["ram_data_pages"] - stray_frames)
            st_["ptes"] -= stray_ptes
            # every device page and every HVO page is back; what stays is one PTE table per
            # vmemmap PMD that HVO split (the kernel never collapses them again)
            # ... and the 2026 rework's shared tail pages, which nothing frees (zone-owned)
            zone = len(getattr(getattr(mach, "vmemmap_optimization", None), "tails", {}))
            assert u["ram_data_pages"] == ub["ram_data_pages"] + zone
            assert u["device_data_pages"] == ub["device_data_pages"] == 0
            if stray_ptes or mach.pgtables.leaked_pte:
                assert u["ram_pagetable_pages"] >= ub["ram_pagetable_pages"] + self.splits
            else:
                assert u["ram_pagetable_pages"] == ub["ram_pagetable_pages"] + self.splits
                assert st_["ram_used"] == b["ram_used"] + self.splits + zone
            assert st_["ptes"] == b["ptes"] + ptrs * self.splits
            assert st_["sections"] == b["sections"] and st_["pgmaps"] == []
            # HVO moves counts between the boot and the normal counter (freed boot pages
            # decrement nr_memmap_boot_pages, restored ones are buddy pages: kernel-facts §12)
            assert sum(st_["vmstat"].values()) == sum(b["vmstat"].values())


def _machine_for(arch: str, kernel: str) -> type[VmemmapMachine]:
    class One(VmemmapMachine):
        @initialize()
        def boot(self):  # type: ignore[override]
            self._boot(arch, kernel)

    One.__name__ = f"VmemmapMachine[{arch},{kernel}]"
    return One


@pytest.mark.parametrize("arch,kernel", ARCH_KERNELS)
def test_engine_state_machine(arch, kernel, record_property):
    """The state machine on one arch x kernel variant (ci: a few derandomised examples per
    pair, and as many drawn from --hypothesis-seed under ``seeded``; deep: as many as the
    profile says).  The steps it ran go into the report (``stateful_steps``), which the
    root conftest sums into the run's closing summary line."""
    deep = os.environ.get("HYPOTHESIS_PROFILE") == "deep"
    before = STEPS[0]
    try:
        run_state_machine_as_test(
            _machine_for(arch, kernel),
            settings=settings(settings.default,
                              max_examples=settings.default.max_examples if deep else 6,
                              stateful_step_count=settings.default.stateful_step_count if deep
                              else 25))
    finally:
        record_property("stateful_steps", STEPS[0] - before)
