"""GUP-fast over device-dax (vmemlab.gup, vmemlab.dax_device).

Independent arithmetic used below (x86_64, 4 KiB pages, 64-byte struct page = one cache line):
* a 2M compound page has nr = 512 subpages, a 1G one 262144; its memmap is nr * 64 B, i.e.
  nr / 64 vmemmap pages (8 for 2M, 4096 for 1G);
* deduplicated (5.19+ without altmap) only the head vmemmap page and one tail vmemmap page are
  distinct: 2 physical pages = 128 physical cache lines per compound page, whatever its size;
* per grab: one ``SetPageReferenced``/``folio_set_referenced`` (set_bit, locked) + one refcount
  add + (pin, compound) one pin-count add -- kernel-facts.md §9, mm/gup.c ``try_grab_page``,
  ``try_grab_folio``; head-once takes one grab per compound page (v3 patch 13);
* pin count location: 5.17 and v3 ``page[2]`` (order > 1), 5.18+ ``page[1]``.
Cover-letter figures are quoted in vmemlab.gup.COVER_LETTER_ROWS.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vmemlab
from vmemlab import gup
from vmemlab.dax_device import dax_mmap, dax_mmap_plan
from vmemlab.errors import KernelError, ParameterError
from vmemlab.units import GiB, MiB

PAGE = 4096
VARIANT = {"5.16": "base", "5.17": "per-subpage-head", "6.6": "per-subpage-head", "v3": "head-once"}


def mapped(kernel: str, align: str, map: str = "mem", ns: str = "1G", size: int | None = None):
    p = vmemlab.plan(ns, align=align, map=map, kernel=kernel)
    return dax_mmap_plan(p, size=size)


def ref_state(vma) -> dict[str, np.ndarray]:
    """refcount of every page head and pin count of every compound page under the VMA."""
    m = vma.m
    g = gup.compound_geometry(m, vma.pgmap)
    pfns = vma.va_to_pfn(vma.vm_start) + np.arange(vma.size // PAGE, dtype=np.int64)
    heads = np.unique(g.head(pfns))
    refs = gup.StructPageRefs(m)
    out = {"refcount": refs.read(heads, "refcount")}
    off = gup.pincount_offset(m, g.order)
    if off is not None:
        out["pincount"] = refs.read(heads + off, "pincount")
    return out


def same_state(a, b) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# -- the user mapping (drivers/dax/device.c) -------------------------------------------------------
@pytest.mark.parametrize("align,level", [("4K", "pte"), ("2M", "pmd"), ("1G", "pud")])
def test_leaf_level_follows_align(align, level):
    vma = mapped("6.6", align, ns="3G", size=1 * GiB)
    assert vma.leaf_level == level
    assert vma.present.all()
    assert vma.present.size == GiB // vmemlab.units.parse_size(align)


def test_dev_dax_huge_fault_rules():
    """kernel-facts.md §8: PTE fault needs align == PAGE_SIZE; PMD/PUD: align > fault size ->
    SIGBUS, align < fault size -> FALLBACK."""
    vma = mapped("6.6", "2M", size=64 * MiB)
    vma.zap()
    a = vma.m.arch
    assert vma.dev_dax_huge_fault(vma.vm_start, a.PUD_SHIFT) == "FALLBACK"
    assert vma.dev_dax_huge_fault(vma.vm_start, a.page_shift) == "SIGBUS"
    assert vma.dev_dax_huge_fault(vma.vm_start, a.PMD_SHIFT) == "NOPAGE"
    big = mapped("6.6", "1G", ns="3G", size=GiB)
    big.zap()
    assert big.dev_dax_huge_fault(big.vm_start, a.PMD_SHIFT) == "SIGBUS"
    assert big.dev_dax_huge_fault(big.vm_start, a.PUD_SHIFT) == "NOPAGE"
    small = mapped("6.6", "4K", size=4 * MiB)
    small.zap()
    assert small.dev_dax_huge_fault(small.vm_start, a.PMD_SHIFT) == "FALLBACK"
    assert small.handle_mm_fault(small.vm_start + 5 * PAGE) == "NOPAGE"
    assert int(small.present.sum()) == 1


def test_mmap_must_be_aligned():
    p = vmemlab.plan("1G", align="2M")
    with pytest.raises(KernelError) as e:
        dax_mmap(p._machine, p._pgmap, p.start + p.namespace["dataoff"], 512 * MiB, 2 * MiB,
                 size=3 * MiB)
    assert e.value.errno == "EINVAL" and "check_vma" in str(e.value)


def test_128g_mapping_is_lazy_and_cheap():
    vma = mapped("6.6", "2M", ns="131G", size=128 * GiB)
    assert vma.present.size == 65536  # one boolean per PMD leaf, not one object per page
    assert vma.table_counts() == {"pte": 0, "pmd": 128, "pud": 1}


# -- counters against closed forms ----------------------------------------------------------------
CASES = [(k, al, mp) for k in ("5.16", "5.17", "6.6", "v3") for al in ("4K", "2M", "1G")
         for mp in ("mem", "dev")]


@pytest.mark.parametrize("kernel,align,map", CASES)
@pytest.mark.parametrize("pin", [False, True])
def test_counters_closed_forms(kernel, align, map, pin):
    size = {"4K": 8 * MiB, "2M": 64 * MiB, "1G": 2 * GiB}[align]
    vma = mapped(kernel, align, map, ns="3G" if align == "1G" else "1G", size=size)
    N = size // PAGE
    f = gup.pin_user_pages_fast if pin else gup.get_user_pages_fast
    r = f(vma, vma.vm_start, N)
    c = r.counters
    compound = kernel != "5.16"
    nr = vmemlab.units.parse_size(align) // PAGE if compound else 1
    C = N // nr
    variant = VARIANT[kernel]
    has_pin = pin and nr > 1  # order 9 / 18 > 1: a pin count exists in every variant
    dedup = map == "mem" and nr > 1 and kernel in ("6.6", "v3")
    grabs = C if variant == "head-once" else N
    assert c.pages_entries == c.nr_pages == r.nr == N
    assert np.array_equal(r.pages, vma.va_to_pfn(vma.vm_start) + np.arange(N))
    assert c.grabs == grabs
    assert c.compound_groups == C
    assert c.ref_atomics == grabs * (2 if has_pin else 1)
    assert c.atomics == c.ref_atomics + grabs  # + one PG_referenced set_bit per grab
    if variant == "head-once" and not pin:
        assert c.ref_atomics == C  # one refcount add per compound page covered
    if variant == "head-once" and nr > 1:
        touched = C * (2 if has_pin else 1)  # head (== first subpage) [+ page[1]/page[2]]
        lines = touched
        vpages = C
    else:
        touched = N  # every subpage; head and page[1]/[2] are among them
        lines = C * 128 if dedup else N
        first_pfn = vma.va_to_pfn(vma.vm_start)
        vpages = 2 * C if dedup else (first_pfn + N - 1) // 64 - first_pfn // 64 + 1
    assert c.struct_pages_touched == c.cache_lines_virtual == touched
    assert c.cache_lines == lines
    ram = map == "mem"
    assert (c.struct_pages_ram, c.struct_pages_device) == ((touched, 0) if ram else (0, touched))
    assert (c.cache_lines_ram, c.cache_lines_device) == ((lines, 0) if ram else (0, lines))
    assert c.vmemmap_pages_ram + c.vmemmap_pages_device == vpages
    assert (c.atomics_ram, c.atomics_device) == ((c.atomics, 0) if ram else (0, c.atomics))
    leaf = {"4K": "pte", "2M": "pmd", "1G": "pud"}[align]
    assert c.pgtable_entries[leaf] == size // vmemlab.units.parse_size(align)
    # releasing: unpin batches per compound page, put_page is per entry
    rel = gup.release(r)
    if pin:
        assert rel.grabs == C and rel.ref_atomics == C * (2 if has_pin else 1)
    else:
        assert rel.grabs == N and rel.ref_atomics == N
    assert rel.struct_pages_touched == N + (C if (has_pin and nr == 1) else 0)


@pytest.mark.parametrize("kernel", ["5.17", "6.6", "v3"])
def test_partial_range_counters(kernel):
    """Pages 3..1002 of a 2M mapping: 509 pages of compound 0 and 491 of compound 1."""
    vma = mapped(kernel, "2M", size=8 * MiB)
    r = gup.pin_user_pages_fast(vma, vma.vm_start + 3 * PAGE, 1000)
    c = r.counters
    h0 = vma.va_to_pfn(vma.vm_start)
    h1 = h0 + 512
    off = 2 if kernel in ("5.17", "v3") else 1
    assert c.compound_groups == 2
    if kernel == "v3":
        assert c.grabs == 2 and c.ref_atomics == 4 and c.atomics == 6
        assert c.struct_pages_touched == len({h0 + 3, h0, h0 + off, h1, h1 + off})
    else:
        assert c.grabs == 1000 and c.ref_atomics == 2000 and c.atomics == 3000
        outside = {h0, h0 + off} - set(range(h0 + 3, h0 + 1003))
        assert c.struct_pages_touched == 1000 + len(outside)
    st_ = ref_state(vma)
    assert list(st_["refcount"][:2]) == [1 + 509, 1 + 491]
    assert list(st_["pincount"][:2]) == [509, 491]


def test_gup_fast_edges():
    vma = mapped("6.6", "2M", size=8 * MiB)
    with pytest.raises(ParameterError):
        gup.gup_fast(vma, vma.vm_start, 4, gup.FOLL_GET | gup.FOLL_PIN)
    r = gup.gup_fast(vma, vma.vm_start, 4, gup.FOLL_PIN | gup.FOLL_LONGTERM)
    assert r.nr == 0  # GUP-fast never takes devmap pages long-term
    vma.present[2] = False  # third PMD not faulted in: GUP-fast stops there
    r = gup.pin_user_pages_fast(vma, vma.vm_start, 4 * 512)
    assert r.nr == 2 * 512
    gup.release(r)


# -- all variants end in the same reference state ----------------------------------------------
def test_variants_same_final_state():
    rng = np.random.default_rng(4)
    calls = []
    for _ in range(12):
        start = int(rng.integers(0, 16 * 512 - 1))
        n = int(rng.integers(1, 16 * 512 - start))
        calls.append((start, n, bool(rng.integers(0, 2))))
    states = {}
    for kernel in ("5.16", "5.17", "6.6", "v3"):
        vma = mapped(kernel, "2M", size=32 * MiB)
        for start, n, pin in calls:
            f = gup.pin_user_pages_fast if pin else gup.get_user_pages_fast
            f(vma, vma.vm_start + start * PAGE, n)
        states[kernel] = gup.gup_references(vma.m, vma.pgmap, 512)
    # base: summed over the 512 subpages of each window; others: on the head
    for k in ("5.17", "6.6", "v3"):
        assert np.array_equal(states[k]["gets"], states["5.16"]["gets"])
        assert np.array_equal(states[k]["pins"], states["5.16"]["pins"])
    assert states["v3"]["pins"].sum() == sum(n for _, n, p in calls if p)


@settings(max_examples=25, deadline=None)
@given(kernel=st.sampled_from(["5.16", "6.6", "v3"]),
       calls=st.lists(st.tuples(st.integers(0, 4095), st.integers(1, 2048), st.booleans()),
                      min_size=1, max_size=6),
       order=st.randoms(use_true_random=False))
def test_pins_balance(kernel, calls, order):
    vma = mapped(kernel, "2M", size=16 * MiB)
    before = ref_state(vma)
    results = []
    for start, n, pin in calls:
        n = min(n, 4096 - start)
        f = gup.pin_user_pages_fast if pin else gup.get_user_pages_fast
        results.append(f(vma, vma.vm_start + start * PAGE, n))
    if any(r.flags & gup.FOLL_PIN for r in results):
        pinned = next(r for r in results if r.flags & gup.FOLL_PIN)
        assert gup.folio_maybe_dma_pinned(vma.m, vma.pgmap, int(pinned.pages[0]))
    order.shuffle(results)
    for r in results:
        gup.release(r)
    assert same_state(ref_state(vma), before)


# -- overflow ------------------------------------------------------------------------------------
def test_overflow_refused_per_subpage_nothing_left():
    vma = mapped("6.6", "2M", size=8 * MiB)
    m = vma.m
    refs = gup.StructPageRefs(m)
    h1 = np.array([vma.va_to_pfn(vma.vm_start) + 512])
    refs.add(h1, "refcount", np.array([gup.INT_MAX - 101]))  # 1 -> INT_MAX - 100
    before = ref_state(vma)
    with pytest.raises(KernelError) as e:  # compound 0 fine, compound 1 crosses INT_MAX
        gup.pin_user_pages_fast(vma, vma.vm_start, 1024)
    assert e.value.errno == "ENOMEM" and "INT_MAX" in str(e.value)
    assert "try_grab_page" in str(e.value)
    assert same_state(ref_state(vma), before)  # compound 0's 512 pins were not left behind
    assert not gup.folio_maybe_dma_pinned(m, vma.pgmap, int(h1[0]) - 512)
    r = gup.pin_user_pages_fast(vma, vma.vm_start, 512 + 100)  # 100 more grabs fit
    gup.release(r)
    assert same_state(ref_state(vma), before)


def test_overflow_head_once_kernel_and_strict():
    vma = mapped("v3", "2M", size=8 * MiB)
    refs = gup.StructPageRefs(vma.m)
    h0 = np.array([vma.va_to_pfn(vma.vm_start)])
    refs.add(h0, "refcount", np.array([gup.INT_MAX - 101]))
    before = ref_state(vma)
    with pytest.raises(KernelError, match="strict"):
        gup.pin_user_pages_fast(vma, vma.vm_start, 512, overflow="strict")
    assert same_state(ref_state(vma), before)
    # the kernel lets the crossing grab through (the check is "already <= 0") ...
    r = gup.pin_user_pages_fast(vma, vma.vm_start, 512)
    assert refs.read(h0, "refcount")[0] < 0
    mid = ref_state(vma)
    # ... and refuses the next one with a WARN
    with pytest.raises(KernelError, match="try_grab_compound_head"):
        gup.get_user_pages_fast(vma, vma.vm_start, 4)
    assert same_state(ref_state(vma), mid)
    gup.release(r)
    assert same_state(ref_state(vma), before)


def test_overflow_base_bias():
    vma = mapped("5.16", "2M", size=4 * MiB)
    refs = gup.StructPageRefs(vma.m)
    p0 = np.array([vma.va_to_pfn(vma.vm_start)])
    refs.add(p0, "refcount", np.array([gup.INT_MAX - 2000]))  # a pin adds 1024
    before = ref_state(vma)
    with pytest.raises(KernelError):  # grab 1 ok, grab 2 crosses, grab 3 refused
        for _ in range(3):
            gup.pin_user_pages_fast(vma, vma.vm_start, 1)
    assert refs.read(p0, "refcount")[0] < 0
    assert not same_state(ref_state(vma), before)


# -- cost model ------------------------------------------------------------------------------------
def test_cover_letter_table_is_quoted():
    rows = gup.COVER_LETTER_ROWS
    assert len(rows) == 16
    assert {(r[0], r[1], r[2], r[3]) for r in rows} == {
        (s, f, mp, w) for s in ("16G", "128G") for f in ("get", "pin") for mp in ("mem", "dev")
        for w in ("before", "after")}
    for size, flags, mp, when, ms, quote in rows:
        assert quote.startswith(f"({size} {flags}_user_pages_fast")
        assert ("altmap" in quote) == (mp == "dev")
        side = quote.split("->")[0 if when == "before" else 1]
        shown = f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:g} ms"
        assert shown in side


def test_fit_16g_predicts_128g_within_25_percent():
    params, preds = gup.cover_letter_table("16G", "128G")
    assert len(preds) == 8
    for p in preds:
        assert abs(p.error) < 0.25, (p, params)
    assert all(v >= 0 for v in params.vector())
    # before/after ratios: ~10x with RAM struct pages, ~50x with struct pages on the device
    pr = {(p.flags, p.map, p.when): p.predicted_ms for p in preds}
    for fl in ("get", "pin"):
        ram = pr[(fl, "mem", "before")] / pr[(fl, "mem", "after")]
        dev = pr[(fl, "dev", "before")] / pr[(fl, "dev", "after")]
        assert 5 < ram < 20 and 25 < dev < 100, (ram, dev)


def test_fit_128g_predicts_16g_reported():
    """The reverse fit: every row within 25% except the 16G "pin" RAM "before" row (87 ms),
    which the model predicts like the "get" row (59 ms): base-page pins are one atomic add of
    1024, as gets are one add of 1, and the 128G rows (492 vs 493 ms) agree."""
    _, preds = gup.cover_letter_table("128G", "16G")
    bad = [p for p in preds if abs(p.error) >= 0.25]
    assert [(p.flags, p.map, p.when) for p in bad] == [("pin", "mem", "before")]


def test_nnls_and_predict():
    A = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert np.allclose(gup.nnls(A, np.array([2.0, -1.0, 1.0])), [1.5, 0.0], atol=1e-9)
    c = gup.scenario_counters("16G", "get", "mem", "v3")
    assert gup.predict_ns(c, gup.CostParams(**{n: 0.0 for n in gup.CostParams.names()})) == 0
    assert set(gup.CostParams.MEANING) == set(gup.CostParams.names())


def test_touched_struct_pages_and_homes():
    for mp, home in (("mem", 0), ("dev", 1)):
        vma = mapped("v3", "2M", mp, size=8 * MiB)
        r = gup.pin_user_pages_fast(vma, vma.vm_start + 3 * PAGE, 1000)
        pfns, homes = r.touched_struct_pages()
        assert pfns.size == r.counters.struct_pages_touched == 5
        assert set(homes.tolist()) == {home}
        gup.release(r)


def test_default_params_are_the_16g_fit():
    fitted, _ = gup.cover_letter_table("16G", "128G")
    assert np.allclose(fitted.vector(), gup.CostParams().vector(), rtol=0.01, atol=0.01)


def test_mainline_per_subpage_head_predictions():
    """Mainline 5.17-6.x (per-subpage grabs on the head) sits between the two measured
    kernels: no faster than base with an altmap (every tail struct page still read from the
    device), faster with deduplicated RAM memmaps (tails alias two vmemmap pages)."""
    rows = {(r["kernel"], r["map"], r["flags"]): r for r in gup.predict_variants("16G")}
    for fl in ("get", "pin"):
        assert rows[("v3", "dev", fl)]["ms"] < rows[("6.6", "dev", fl)]["ms"]
        assert rows[("6.6", "dev", fl)]["ms"] >= rows[("5.16", "dev", fl)]["ms"] * 0.99
        assert rows[("v3", "mem", fl)]["ms"] < rows[("6.6", "mem", fl)]["ms"]
        assert rows[("6.6", "mem", fl)]["ms"] < rows[("5.17", "mem", fl)]["ms"]
    assert rows[("6.6", "mem", "get")]["lines"] == 8192 * 128  # 2 vmemmap pages per 2M page


def test_unpin_raw_pages_array_with_repeats():
    """unpin_user_pages takes any pages[] array: entries of one folio next to each other are
    released by one gup_put_folio, repeats included."""
    vma = mapped("6.6", "2M", size=8 * MiB)
    before = ref_state(vma)
    a = gup.pin_user_pages_fast(vma, vma.vm_start + 500 * PAGE, 20)
    b = gup.pin_user_pages_fast(vma, vma.vm_start + 500 * PAGE, 20)
    pages = np.concatenate((a.pages, b.pages))
    c = gup.unpin_user_pages(vma.m, pages)
    # 12 entries in compound 0 and 8 in compound 1, twice: 4 runs of one folio each
    assert c.grabs == 4 and c.compound_groups == 2 and c.ref_atomics == 8
    assert same_state(ref_state(vma), before)
    with pytest.raises(KernelError):  # nothing pinned any more
        gup.unpin_user_pages(vma.m, a)
    assert same_state(ref_state(vma), before)


def test_nnls_matches_scipy():
    """The hand-written Lawson-Hanson :func:`vmemlab.gup_cost.nnls` (kept to spare the engine a
    scipy dependency, ARCHITECTURE.md) against scipy's independent implementation, on random
    problems with active constraints and on the cover letter's 16G fit."""
    optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(15)
    for _ in range(20):
        A = rng.normal(size=(12, 6))
        b = rng.normal(size=12)
        ours = gup.nnls(A, b)
        ref, _ = optimize.nnls(A, b)
        assert (ours >= 0).all()
        np.testing.assert_allclose(A @ ours, A @ ref, rtol=1e-7, atol=1e-9)
    rows = gup.cover_letter_rows("16G")
    X = np.array([gup.features(c) for _, c, _ in rows])[:, :7]
    y = np.array([ns for _, _, ns in rows])
    A = X / y[:, None]
    scale = np.abs(A).max(axis=0)
    scale[scale == 0] = 1.0
    ref, _ = optimize.nnls(A / scale, np.ones_like(y))
    np.testing.assert_allclose(gup.nnls(A / scale, np.ones_like(y)), ref, rtol=1e-6, atol=1e-9)
