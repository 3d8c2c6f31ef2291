"""Regression tests for the reliability issue (#11): each test is named for what it checks.

Independent oracles used here:
* the kernel loop of ``memmap_init_zone_device`` / ``memmap_init_compound`` (mm/mm_init.c
  6.x) writes head, then tails 1..compound_nr_pages-1 of each compound page in pfn order, each
  through its own vmemmap address; where two vmemmap addresses map one physical page, the last
  write wins.  :func:`last_writer` replays exactly that over the page tables, in pure Python;
* the cover letter / kernel-facts arithmetic for sizes (named where used).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import vmemlab
from vmemlab import gup
from vmemlab.dax_device import dax_mmap_plan
from vmemlab.errors import KernelError, ParameterError
from vmemlab.exercises import generate
from vmemlab.frames import VmemAltmap
from vmemlab.hugetlb_vmemmap import contrast_with_device_dax
from vmemlab.machine import Machine
from vmemlab.memory_failure import memory_failure
from vmemlab.memremap import PGMAP_ALTMAP_VALID, DevPagemap, memremap_pages, memunmap_pages
from vmemlab.page import compound_head_pfns, read_field, struct_pages, write_field
from vmemlab.units import GiB, MiB

BASE = 64 * GiB


def refused(m: Machine, call, errno: str | None = None, kind=KernelError):
    before = m.state()
    with pytest.raises(kind) as e:
        call()
    if errno is not None:
        assert e.value.errno == errno, e.value
    assert m.state() == before, "a refused operation changed the machine"
    return e.value


# -- 1. compound pages not aligned to their size ------------------------------------------------
def last_writer(m: Machine, start_pfn: int, end_pfn: int, order: int, per_compound: int):
    """The pure-Python kernel loop: for every physical struct-page slot, the pfn whose write
    landed last, and whether that write was a head (index 0 in its compound page)."""
    a = m.arch
    per_page = a.PAGE_SIZE // 64
    nr = 1 << order
    slot_writer: dict[tuple[int, int, int], tuple[int, int]] = {}
    for head in range(start_pfn, end_pfn, nr):
        for pfn in range(head, min(head + per_compound, end_pfn)):
            vpn = pfn // per_page
            home, ppfn = m.pgtables.resolve_pfn(np.array([vpn]))
            slot_writer[(int(home[0]), int(ppfn[0]), pfn % per_page)] = (pfn, head)
    return slot_writer


def test_misaligned_compound_pages_give_what_the_kernel_loop_writes():
    """The issue's probe: 16 MiB compound pages (order 12) over [64G+120M, 64G+152M) on x86_64
    6.6.  The range is 2 MiB-aligned but not 16 MiB-aligned, so the second compound page's head
    (64G+136M) lies in a section that reuse_compound_section() maps onto the first compound
    page's tail vmemmap page.  The model must give exactly what the kernel's writes leave."""
    m = Machine("x86_64", "6.6")
    lo, hi = BASE + 120 * MiB, BASE + 152 * MiB
    memremap_pages(m, DevPagemap(ranges=[(lo, hi)], vmemmap_shift=12))
    s, e = lo >> 12, hi >> 12
    writers = last_writer(m, s, e, 12, 128)  # compound_nr_pages = 2 * 64 (6.6, 4K pages)
    pfns = np.arange(s, e, dtype=np.int64)
    home, ppfn = m.pgtables.resolve_pfn(pfns // 64)
    expect = []
    for pfn, h, p in zip(pfns.tolist(), home.tolist(), ppfn.tolist()):
        w, head = writers[(h, p, pfn % 64)]
        expect.append(w if w == head else head)  # a head reads as itself, a tail as its head
    assert np.array_equal(compound_head_pfns(m, pfns), np.array(expect))
    # and the loop really did overwrite: the second head's slot ends as a tail
    assert int(read_field(m, s + 4096, "_refcount")[0]) == 0


def test_misaligned_compound_pages_lazy_equals_eager():
    from vmemlab.mm_init import memmap_init_zone_device  # noqa: F401 - the eager path is used

    for lazy_first in (True, False):
        m = Machine("x86_64", "6.6")
        lo, hi = BASE + 120 * MiB, BASE + 152 * MiB
        memremap_pages(m, DevPagemap(ranges=[(lo, hi)], vmemmap_shift=12))
        pfns = np.arange(lo >> 12, hi >> 12, dtype=np.int64)
        if lazy_first:
            read_field(m, pfns[:1], "flags")
        words = read_field(m, pfns, "words")
        if lazy_first:
            first = words
        else:
            assert np.array_equal(words, first)


# -- 2. lazy materialisation in every order ---------------------------------------------------------
@pytest.mark.parametrize("arch", ["arm64-16k", "arm64-64k", "ppc64-radix-64k"])
def test_reading_a_neighbour_first_does_not_change_a_later_range(arch):
    """Two 2 MiB ranges whose memmaps share one vmemmap page: reading range A before mapping B
    must leave B initialised exactly as when nothing was read."""
    results = []
    for read_first in (False, True):
        m = Machine(arch, "6.6")
        ps = m.arch.page_shift
        a_rng, b_rng = (BASE, BASE + 2 * MiB), (BASE + 2 * MiB, BASE + 4 * MiB)
        memremap_pages(m, DevPagemap(ranges=[a_rng], name="A"))
        if read_first:
            read_field(m, np.array([BASE >> ps]), "flags")
        pb = DevPagemap(ranges=[b_rng], name="B")
        memremap_pages(m, pb)
        bp = np.arange(b_rng[0] >> ps, b_rng[1] >> ps, dtype=np.int64)
        results.append(read_field(m, bp, "words"))
        assert (read_field(m, bp, "_refcount") == 1).all()
        assert (read_field(m, bp, "pgmap") == struct_pages(m).pgmap_token(pb)).all()
    assert np.array_equal(results[0], results[1])


@pytest.mark.parametrize("arch", ["arm64-16k", "arm64-64k", "ppc64-radix-64k"])
def test_remapping_a_range_forgets_the_old_struct_pages(arch):
    """Unmap A, map A2 on the same range: A2's struct pages are freshly initialised (the
    kernel's __init_single_page zeroes each one), whatever A left in a shared vmemmap page."""
    m = Machine(arch, "6.6")
    ps = m.arch.page_shift
    rng = (BASE + 2 * MiB, BASE + 4 * MiB)
    memremap_pages(m, DevPagemap(ranges=[(BASE, BASE + 2 * MiB)], name="neighbour"))
    pa = DevPagemap(ranges=[rng], name="A")
    memremap_pages(m, pa)
    pfns = np.arange(rng[0] >> ps, rng[1] >> ps, dtype=np.int64)
    write_field(m, pfns, "_refcount", 7)
    memunmap_pages(m, pa)
    pa2 = DevPagemap(ranges=[rng], name="A2")
    memremap_pages(m, pa2)
    assert (read_field(m, pfns, "_refcount") == 1).all()
    assert (read_field(m, pfns, "pgmap") == struct_pages(m).pgmap_token(pa2)).all()


# -- 3. vmemmap_shift larger than the range -----------------------------------------------------------
@pytest.mark.parametrize("shift", [19, 20, 33])
def test_compound_page_larger_than_the_range_is_einval(shift):
    m = Machine("x86_64", "6.6")
    refused(m, lambda: memremap_pages(m, DevPagemap(ranges=[(BASE, BASE + GiB)],
                                                    vmemmap_shift=shift)), "EINVAL")
    memremap_pages(m, DevPagemap(ranges=[(BASE, BASE + GiB)], vmemmap_shift=18))


# -- 4. memmap holes --------------------------------------------------------------------------------
@pytest.mark.parametrize("arch,lo,hi", [("arm64-16k", 2 * MiB, 6 * MiB),
                                        ("arm64-64k", 62 * MiB, 66 * MiB)])
def test_a_memmap_hole_is_refused_instead_of_faulting_later(arch, lo, hi):
    """vmemmap_populate_range() steps PAGE_SIZE from an unaligned start and misses the last page
    (arm64 16K: a subsection's memmap is half a page; 64K: 1/32): the kernel would fault in
    memmap_init_zone_device.  The model refuses, leaving nothing behind."""
    m = Machine(arch, "6.6")
    refused(m, lambda: memremap_pages(m, DevPagemap(ranges=[(BASE + lo, BASE + hi)])), "EFAULT")
    assert not m.sparse.pfn_valid((BASE + lo) >> m.arch.page_shift)


# -- 5. failed operations keep nothing ------------------------------------------------------------------
@pytest.mark.parametrize("shift", [9.0, np.float64(9), "9", None, True])
def test_a_badly_typed_shift_is_refused_and_the_range_stays_free(shift):
    m = Machine("x86_64", "6.6")
    refused(m, lambda: memremap_pages(m, DevPagemap(ranges=[(BASE, BASE + GiB)],
                                                    vmemmap_shift=shift)), kind=ParameterError)
    memremap_pages(m, DevPagemap(ranges=[(BASE, BASE + GiB)], vmemmap_shift=np.int64(9)))


def test_altmap_enomem_keeps_no_page_table_frame():
    m = Machine("x86_64", "6.6")
    pfn = BASE >> 12
    for free in (0, 100, 600):
        altmap = VmemAltmap(base_pfn=pfn, end_pfn=pfn + (GiB >> 12), reserve=2, free=free)
        pg = DevPagemap(ranges=[(BASE, BASE + GiB)], altmap=altmap, flags=PGMAP_ALTMAP_VALID)
        refused(m, lambda pg=pg: memremap_pages(m, pg), "ENOMEM")
        assert m.frames.live().size == 0


@pytest.mark.parametrize("headroom", range(0, 12))
def test_ram_exhausted_at_any_step_keeps_no_frame(headroom):
    """RAM runs out after `headroom` more pages: at the PMD, the PTE table or a data page."""
    m = Machine("x86_64", "6.6", ram=GiB)
    m.ram.capacity = m.ram.used + headroom
    live = m.frames.live().size
    refused(m, lambda: memremap_pages(m, DevPagemap(ranges=[(BASE, BASE + 4 * GiB)],
                                                    vmemmap_shift=9)), "ENOMEM")
    assert m.frames.live().size == live


# -- 6. GUP pins balance ------------------------------------------------------------------------------
def test_releasing_the_same_gup_result_twice_is_refused():
    p = vmemlab.plan("1G", align="2M")
    vma = dax_mmap_plan(p, size=4 * MiB)
    mine = gup.pin_user_pages_fast(vma, vma.vm_start, 1024)
    theirs = gup.pin_user_pages_fast(vma, vma.vm_start, 1024)
    gup.release(mine)
    before = p._machine.state(), gup.StructPageRefs(p._machine).read(
        np.array([vma.va_to_pfn(vma.vm_start)]), "refcount")
    with pytest.raises(KernelError) as e:
        gup.release(mine)
    assert e.value.errno == "EINVAL"
    after = p._machine.state(), gup.StructPageRefs(p._machine).read(
        np.array([vma.va_to_pfn(vma.vm_start)]), "refcount")
    assert before[0] == after[0] and np.array_equal(before[1], after[1])
    gup.release(theirs)


def test_gup_after_teardown_finds_no_pages():
    p = vmemlab.plan("1G", align="2M")
    vma = dax_mmap_plan(p, size=4 * MiB)
    vmemlab.plan_teardown(p) if hasattr(vmemlab, "plan_teardown") else memunmap_pages(
        p._machine, p._pgmap)
    assert gup.pin_user_pages_fast(vma, vma.vm_start, 1024).nr == 0


@pytest.mark.parametrize("kw,name", [({"nr_pages": -1}, "nr_pages"), ({"nr_pages": 1.5}, "nr_pages"),
                                     ({"start": "0"}, "start"), ({"start": 1.0}, "start")])
def test_gup_arguments_are_checked_by_name(kw, name):
    p = vmemlab.plan("1G", align="2M")
    vma = dax_mmap_plan(p, size=4 * MiB)
    args = {"start": vma.vm_start, "nr_pages": 1, **kw}
    with pytest.raises(ParameterError) as e:
        gup.pin_user_pages_fast(vma, args["start"], args["nr_pages"])
    assert e.value.name == name


# -- 7. no raw Python exception from a public entry point ------------------------------------------------
def test_bad_inputs_get_named_errors():
    m = Machine("x86_64", "6.6")
    memremap_pages(m, DevPagemap(ranges=[(BASE, BASE + GiB)], vmemmap_shift=9))
    calls = [
        lambda: memremap_pages(m, DevPagemap(ranges=[(1.5, 2.5)])),
        lambda: memremap_pages(m, DevPagemap(ranges=[(None, None)])),
        lambda: memremap_pages(m, DevPagemap(ranges=["ab"])),
        lambda: memremap_pages(m, DevPagemap(ranges=[(BASE + GiB, 1 << 70)])),
        lambda: memremap_pages(m, DevPagemap(ranges=[(2 * BASE, 2 * BASE + GiB)], vmemmap_shift=-1)),
        lambda: memory_failure(m, 1 << 64),
        lambda: memory_failure(m, 1.5),
        lambda: memory_failure(m, "0x1000"),
        lambda: m.sparse.pfn_valid(None),
        lambda: contrast_with_device_dax(0),
        lambda: contrast_with_device_dax(1.5),
        lambda: VmemAltmap(base_pfn=0, end_pfn=10, reserve=-100, free=0),
        lambda: VmemAltmap(base_pfn=0, end_pfn=10, reserve=True, free=0),
        lambda: gup.scenario_counters("1G", "x", "mem", "6.6"),
        lambda: vmemlab.plan("1G", strict="no"),
    ]
    for call in calls:
        before = m.state()
        with pytest.raises(vmemlab.VmemlabError):
            call()
        assert m.state() == before


def test_numpy_integers_are_valid_input():
    m = Machine("x86_64", "6.6")
    memremap_pages(m, DevPagemap(ranges=[(np.int64(BASE), np.uint64(BASE + GiB))],
                                 vmemmap_shift=np.int32(9)))
    assert m.sparse.pfn_valid(np.int64(BASE >> 12))
    assert vmemlab.plan(np.int64(4 * GiB)).ram_data_pages == 4 * GiB // (512 * 4096) * 2


def test_memory_failure_inside_a_misaligned_compound_page_uses_the_kernels_head():
    """memory_failure reads compound_head() the way the kernel does; with the misaligned layout
    of test_misaligned_compound_pages_give_what_the_kernel_loop_writes, that is the head the
    struct pages say, not the arithmetic one."""
    m = Machine("x86_64", "6.6")
    lo, hi = BASE + 120 * MiB, BASE + 152 * MiB
    memremap_pages(m, DevPagemap(ranges=[(lo, hi)], vmemmap_shift=12))
    pfn = (lo >> 12) + 200  # a tail in the shared vmemmap page of the first compound page
    r = memory_failure(m, pfn)
    assert r.head_pfn == int(compound_head_pfns(m, np.array([pfn]))[0])


# -- 8. the CLI ------------------------------------------------------------------------------------
def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vmemlab", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("args", [["plan", "--size", "1G", "--start", "0x"],
                                  ["plan", "--size", "1G", "--start", "0xZZ"],
                                  ["plan", "--size"], ["plan", "--bogus"], [],
                                  ["plan", "--size", "1G", "--ram", "1P"],
                                  ["plan", "--size", "1G", "--arch", "sparc"]])
def test_every_cli_error_is_one_line_and_exit_2(args):
    r = cli(*args)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("vmemlab: error:")


def test_compare_finishes_the_table_when_a_cell_is_refused():
    """2 GiB of RAM cannot hold a 1 TiB namespace's memmap at 4K (16 GiB: cover letter); the
    table still has every align x map x kernel row, with the refused ones marked."""
    r = cli("compare", "--size", "1T", "--ram", "2G", "--kernel", "6.6")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert sum("refused" in ln for ln in lines[1:7]) >= 1
    assert len([ln for ln in lines[1:] if not ln.startswith("[")]) == 3 * 2


def test_cli_accepts_every_kernel_the_engine_does():
    assert cli("plan", "--size", "1G", "--kernel", "5.16").returncode == 0


# -- 9. plans use the machine they are given; limits first ---------------------------------------------
def test_plan_into_a_machine_uses_its_arch_and_kernel():
    m = Machine("arm64-64k", "5.17")
    p = vmemlab.plan("4G", align="512M", machine=m)
    assert (p.arch, p.kernel) == ("arm64-64k", "5.17")
    with pytest.raises(ParameterError):
        vmemlab.plan("4G", align="512M", arch="x86_64", machine=Machine("arm64-64k"))


@pytest.mark.parametrize("ram", ["65T", 1 << 64, "1P"])
def test_ram_beyond_max_physmem_bits_is_refused_before_booting(ram):
    with pytest.raises(ParameterError):
        Machine("x86_64", "6.6", ram=ram)
    with pytest.raises(ParameterError):
        vmemlab.plan("1G", ram=ram)


def test_a_pgmap_without_ranges_is_einval():
    m = Machine()
    refused(m, lambda: memremap_pages(m, DevPagemap(ranges=[])), "EINVAL")


# -- 10. validation is consistent ------------------------------------------------------------------
def test_exercise_check_takes_whole_numbers_only():
    ex = generate("pfn-to-page", seed=0) if "pfn-to-page" in vmemlab.exercises.kinds() else \
        generate(vmemlab.exercises.kinds()[0], seed=0)
    assert ex.check(ex.answer).correct
    assert ex.check(float(ex.answer)).correct
    for bad in (ex.answer + 0.9, float("inf"), float("nan"), True, "many"):
        assert ex.check(bad).correct is False


BAD_VALUES = [None, 1.5, -1, "x", True, float("inf"), 2**70, np.float64(2), [1], {}]


@pytest.mark.parametrize("bad", BAD_VALUES, ids=repr)
def test_no_raw_exception_escapes_a_public_entry_point(bad):
    """Each public entry point given a value of the wrong type or range raises a VmemlabError
    (ParameterError / KernelError), never a raw TypeError, ValueError or AttributeError."""
    from vmemlab.hugetlb_vmemmap import (
        alloc_hugetlb_folio,
        dissolve_free_huge_page,
        hugetlb_vmemmap_optimize,
        hugetlb_vmemmap_restore,
    )
    from vmemlab.page import pfn_to_page

    p = vmemlab.plan("1G")
    vma = dax_mmap_plan(p, size=4 * MiB)
    m = Machine(ram="1G")
    calls = [
        lambda: vmemlab.plan(bad), lambda: vmemlab.plan("1G", align=bad),
        lambda: vmemlab.plan("1G", map=bad), lambda: vmemlab.plan("1G", start=bad),
        lambda: vmemlab.plan("1G", ram=bad), lambda: vmemlab.plan("1G", arch=bad),
        lambda: vmemlab.plan("1G", kernel=bad), lambda: Machine(ram=bad),
        lambda: alloc_hugetlb_folio(m, bad), lambda: hugetlb_vmemmap_optimize(m, bad),
        lambda: hugetlb_vmemmap_restore(m, bad), lambda: dissolve_free_huge_page(m, bad),
        lambda: generate(bad), lambda: generate("pfn-to-page", bad),
        lambda: gup.gup_fast(vma, vma.vm_start, 1, bad),
        lambda: gup.unpin_user_pages(p._machine, bad), lambda: gup.put_pages(p._machine, bad),
        lambda: dax_mmap_plan(p, size=bad), lambda: dax_mmap_plan(p, vm_start=bad),
        lambda: pfn_to_page(m, bad), lambda: read_field(m, bad, "flags"),
        lambda: read_field(m, 0, bad), lambda: gup.scenario_counters(bad, "get", "mem", "6.6"),
    ]
    for call in calls:
        try:
            call()
        except vmemlab.VmemlabError:
            pass


# -- found by the deep stateful run (tests/test_stateful.py, seed 1) -------------------------------
def test_a_range_that_cuts_its_last_small_compound_page_is_einval():
    """62 MiB of 16 MiB compound pages: vmemmap_populate_compound_pages() would map the cut
    page's memmap past the range (``last = addr + size``) and vmemmap_free() would never clear
    it; device-dax ranges are align multiples (dev_dax_validate_align)."""
    m = Machine("x86_64", "6.6", ram="1G")
    refused(m, lambda: memremap_pages(m, DevPagemap(ranges=[(BASE, BASE + 62 * MiB)],
                                                    vmemmap_shift=12)), "EINVAL")


def test_a_refused_hot_add_past_a_section_leaves_no_vmemmap_behind():
    """arm64 16K, 5.19 rule: 32 MiB compound pages from 62 MiB run past the first section's
    memmap; the hot-add then meets a present subsection (-EEXIST) and must take back every
    PTE it mapped, the ones past the chunk's end included."""
    m = Machine("arm64-16k", "v3", ram="1G")
    memremap_pages(m, DevPagemap(ranges=[(BASE + 128 * MiB, BASE + 134 * MiB)], name="B"))
    refused(m, lambda: memremap_pages(m, DevPagemap(
        ranges=[(BASE + 62 * MiB, BASE + 1086 * MiB)], vmemmap_shift=11)), "EEXIST")


def test_a_refused_hot_add_keeps_a_page_it_found_mapped():
    """ppc64 64K, 5.19 rule, 2 MiB compound pages: the generic loop also maps the vmemmap page
    after each step, and that page stays after the range is removed (the kernel never clears
    it).  A later hot-add that starts in that page and is refused must not free it.  (B and C
    are compound too: an order-0 range next to a compound one in the same 2 MiB vmemmap block
    is refused on these kernels, see test_sparse_vmemmap's ppc64 "before 6.6" tests.)"""
    m = Machine("ppc64-radix-64k", "v3", ram="1G")
    memremap_pages(m, DevPagemap(ranges=[(BASE, BASE + 2 * MiB)], vmemmap_shift=5))
    memremap_pages(m, DevPagemap(ranges=[(BASE + 128 * MiB, BASE + 134 * MiB)], vmemmap_shift=5,
                                 name="B"))
    refused(m, lambda: memremap_pages(m, DevPagemap(
        ranges=[(BASE + 126 * MiB, BASE + 188 * MiB)], vmemmap_shift=5, name="C")), "EEXIST")


def test_a_range_inside_a_shared_pmd_block_is_initialised_again_after_reuse():
    """arm64 4K on 5.17 maps a partial section's memmap with a whole PMD block that
    neighbouring ranges share (found by the deep stateful run, seed 3): a range mapped,
    read, removed and mapped again with another order must read as freshly initialised
    (compound heads by arithmetic), not as the struct pages of the removed range."""
    m = Machine("arm64-4k", "5.17", ram="1G")
    memremap_pages(m, DevPagemap(ranges=[(BASE, BASE + 2 * MiB)], name="neighbour"))
    rng = (BASE + 6 * MiB, BASE + 8 * MiB)
    pfns = np.arange(rng[0] >> 12, rng[1] >> 12, dtype=np.int64)
    first = DevPagemap(ranges=[rng], vmemmap_shift=9, name="B")
    memremap_pages(m, first)
    read_field(m, pfns, "words")
    memunmap_pages(m, first)
    memremap_pages(m, DevPagemap(ranges=[rng], vmemmap_shift=0, name="B2"))
    assert np.array_equal(compound_head_pfns(m, pfns), pfns)


def test_hypothesis_examples_do_not_depend_on_the_modules_loaded_before(tmp_path, monkeypatch):
    """Hypothesis draws constants from the source of every *local* module loaded so far, so
    under ``ci`` the examples of a property test depended on which tests xdist ran before it on
    that worker (the state machine: 5802 steps alone, 5815 after a test drawing a figure).
    tests/conftest.py loads the whole package and keeps that pool: a local module loaded later
    (here one whose constant hypothesis's own scanner picks up) no longer joins it."""
    import importlib

    providers = pytest.importorskip("hypothesis.internal.conjecture.providers")
    if not hasattr(providers, "_get_local_constants"):
        pytest.skip("this hypothesis has no pool of local constants")
    from hypothesis.internal.constants_ast import constants_from_module, is_local_module_file

    before = tuple(providers._get_local_constants().set_for_type("integer"))
    (tmp_path / "vmemlab_probe_constants.py").write_text("PROBE = 987654321\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    probe = importlib.import_module("vmemlab_probe_constants")
    # the probe is what used to change the pool: local, and its constant is found
    assert is_local_module_file(probe.__file__)
    assert 987654321 in constants_from_module(probe).set_for_type("integer")
    after = tuple(providers._get_local_constants().set_for_type("integer"))
    assert after == before and 987654321 not in after
