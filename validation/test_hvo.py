"""Checks on the committed HVO measurements (``results/hvo-*.json``; no qemu).

Measured values come from the Debian guests (``hvo.py``); predictions from
``vmemlab.hugetlb_vmemmap`` via ``compare_hvo.py``, placed at the head pfns the guest's
``/proc/kpageflags`` showed.  Free-page deltas are corrected for the guest script's
``/tmp/dm`` (compare_hvo.py: the previous phase's dmesg, held in tmpfs pages during a phase's
reads; it was the 29-page "residual" of 6.12.117's 1 GiB HVO-off allocation).  After that,
allocations agree within ALLOC_NOISE = 8 pages (the harness's noise, validation/README.md;
the largest seen is 4); the vmstat counters must agree exactly.

A dissolve's delta also holds what the guest script ran between the allocated and the
dissolved reads: the /proc/kpageflags scan (``kpf``) and, in the ``off`` boot, ``capture``.
The ``repeat`` boots (``results/hvorepeat-*.json``, ``hvo.py run --boots repeat``) read after
each part: the dissolve alone is the model within ALLOC_NOISE, and kpf+capture cost 0 to 28
pages (``nr_slab_unreclaimable`` +6..+13 per capture: ``vmap_area``, test_slab.py).  So every
committed dissolve must lie in the band those cycles span (compare_hvo.harness_band); that
was the 15-20 pages the 2 MiB dissolves lost on both kernels.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
FILES = sorted((HERE / "results").glob("hvo-*.json"))
NOISE = 24
ALLOC_NOISE = 8


@pytest.fixture(scope="module", params=FILES, ids=[p.stem for p in FILES])
def rows(request) -> list[dict]:
    # once per kernel (the model runs behind compare() take ~2 s; no test changes the rows)
    from compare_hvo import compare

    res = json.loads(request.param.read_text())
    return [dict(r, version=res["kernel"]["version"]) for r in compare(res)]


def _rt(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["scenario"].startswith("rt-")]


def test_all_scenarios_measured(rows):
    # issue 12 §2: runtime 2M and 1G with hugetlb_optimize_vmemmap 0 and 1, and boot-time
    names = {r["scenario"] for r in rows}
    assert {"rt-2M-hvo0", "rt-2M-hvo1", "rt-1G-hvo0", "rt-1G-hvo1", "boot-time"} <= names


def test_kpageflags_finds_every_huge_page(rows):
    # /proc/kpageflags shows one aligned KPF_HUGE head per page nr_hugepages reports; the
    # guest asked for 64 x 2M and 1 x 1G: 6.12.117 got all of them, while 6.1's runtime 1G
    # allocation (alloc_contig_pages) found no free 1 GiB range in this 3 GiB guest
    for r in _rt(rows):
        want = 64 if "-2M-" in r["scenario"] else 1
        got = r["measured"]["nr_hugepages_after_alloc"]
        assert r["measured"]["pages"] == got
        if r["version"].startswith("6.12") or want == 64:
            assert got == want, r["scenario"]


def test_allocation_matches_model(rows):
    # free pages: -pages + vmemmap freed - PTE tables of the splits (model), within NOISE;
    # nr_memmap_pages / nr_memmap_boot_pages (6.11+ counters) exactly
    for r in _rt(rows):
        meas, mod = r["measured"], r["model"]
        assert abs(meas["alloc_free_delta"] - mod["alloc_free_delta"]) <= ALLOC_NOISE, (
            r["scenario"])
        if r["version"].startswith("6.12"):
            for k in ("alloc_nr_memmap_pages", "alloc_nr_memmap_boot_pages",
                      "dissolve_nr_memmap_pages"):
                assert meas[k] == mod[k], (r["scenario"], k)


def test_hvo_frees_vmemmap_as_arithmetic_says(rows):
    # arithmetic: a 2M page has 512 * 64 / 4096 = 8 vmemmap pages, a 1G page 4096; HVO keeps
    # one (5.18+); on 6.12 the head page is copied (11aad2631bf7), so all 8 / 4096 boot pages
    # are freed and one new page is counted in nr_memmap_pages
    for r in _rt(rows):
        if not r["version"].startswith("6.12") or r["scenario"].endswith("hvo0"):
            continue
        per = 8 if "-2M-" in r["scenario"] else 4096
        n = r["measured"]["pages"]
        assert r["measured"]["alloc_nr_memmap_boot_pages"] == -per * n
        assert r["measured"]["alloc_nr_memmap_pages"] == n
        assert r["measured"]["memtotal_kb_alloc_delta"] == per * n * 4


def test_dissolve_without_hvo_returns_everything(rows):
    # measured - model inside the harness band of the repeat boot (kpf [+ capture] + noise)
    for r in _rt(rows):
        if r["scenario"].endswith("hvo0"):
            assert r["measured"]["residual_in_harness_band"], r["scenario"]


def test_6_12_117_dissolve_after_hvo_leaks_the_page(rows):
    # the Debian 6.12.115+ restore bug (validation/README.md "HVO"): vmemmap_restore_pte
    # copies the head-copy page into every tail vmemmap page without reset_struct_pages();
    # free_tail_page_prepare() rejects struct pages 0..3 of each ("corrupted mapping in tail
    # page"), so the huge page never reaches the buddy allocator: the free-page change on
    # dissolve is only minus the re-allocated vmemmap pages (448 for 64 x 2M, 4095 for 1G)
    for r in _rt(rows):
        if not r["version"].startswith("6.12") or r["scenario"].endswith("hvo0"):
            continue
        per = 7 if "-2M-" in r["scenario"] else 4095
        n = r["measured"]["pages"]
        assert abs(r["measured"]["dissolve_free_delta"] + per * n) <= NOISE
        assert r["bad_page"]["dissolved"]["reports"] > 0
        assert "corrupted mapping in tail page" in r["bad_page"]["dissolved"]["reasons"]


def _engine_models_restore_bug() -> bool:
    from vmemlab.hugetlb_vmemmap import HugetlbState

    return "leaked" in HugetlbState.__dataclass_fields__


def test_dissolve_matches_model(rows):
    # every dissolve within NOISE of the model, including the leaking 6.12.117 ones once the
    # engine models the restore bug (before that, those rows are left out and counted)
    left_out = 0
    for r in _rt(rows):
        if not r["measured"]["pages"]:
            continue
        if (r["version"].startswith("6.12") and r["scenario"].endswith("hvo1")
                and not _engine_models_restore_bug()):
            left_out += 1
            continue
        assert r["measured"]["residual_in_harness_band"], r["scenario"]
    assert left_out in (0, 2)


def test_tmp_dm_correction(rows):
    # the correction is ceil(len(dmesg saved by the phase before) / 4096) pages per phase; on
    # 6.12.117 the rt-2M-hvo1 dissolve saved 124891 bytes of "BUG: Bad page state" reports,
    # held (31 pages) while rt-1G-hvo0's `before` was read: raw residual +29, corrected -1
    for r in _rt(rows):
        held = [int(x) for x in r["measured"]["harness_tmp_dm_pages"].split("/")]
        assert (r["measured"]["alloc_free_delta"] - r["measured"]["alloc_free_delta_raw"]
                == held[1] - held[0])
        assert (r["measured"]["dissolve_free_delta"] - r["measured"]["dissolve_free_delta_raw"]
                == held[2] - held[1])
        if r["version"].startswith("6.12") and r["scenario"] == "rt-1G-hvo0":
            assert held == [-(-124891 // 4096), 1, 1] == [31, 1, 1]
            assert r["measured"]["alloc_free_delta_raw"] - r["model"]["alloc_free_delta"] == 29


REPEATS = sorted((HERE / "results").glob("hvorepeat-*.json"))


@pytest.fixture(scope="module", params=REPEATS, ids=[p.stem for p in REPEATS])
def cycles(request) -> list[dict]:
    from compare_hvo import harness_costs

    return harness_costs(json.loads(request.param.read_text()))


def test_every_measured_kernel_has_a_repeat_boot():
    # the dissolve band needs the harness's cost on the same kernel
    assert {p.stem.removeprefix("hvo-") for p in FILES} == {
        p.stem.removeprefix("hvorepeat-") for p in REPEATS}


def test_repeat_dissolve_alone_matches_model(cycles):
    # measured in the repeat boots: the echo 0 alone gives back 64 x 512 pages (a0), 64 x
    # (512 - 7) on 6.1 with HVO (a1: the restore re-allocates 7 per page), and on 6.12.117 with
    # HVO only minus the 448 re-allocated pages (the leak); n cycles: nothing.  Within
    # ALLOC_NOISE of the model; the largest seen is 8 (an n cycle on 6.12.117)
    assert {c["kind"] for c in cycles} >= {"a0", "n0"}
    for c in cycles:
        assert abs(c["dissolve"]) <= ALLOC_NOISE, c["cycle"]
        assert abs(c["alloc"]) <= ALLOC_NOISE, c["cycle"]
        assert c["pages"] == (0 if c["kind"][0] == "n" else 64)


def test_repeat_capture_is_the_residual(cycles):
    # measured: capture grows nr_slab_unreclaimable by 6-13 pages every time (never given
    # back: the counter only rises through a boot), and kpf+capture cost 11-24 pages on 6.1
    # (median 16) and 0-28 on 6.12.117 (median 11.5) -- the 15-20 pages the committed 2 MiB
    # dissolves came out short
    import statistics

    for c in cycles:
        assert 6 <= c["capture_counters"]["nr_slab_unreclaimable"] <= 13, c["cycle"]
    cost = statistics.median(c["kpf"] + c["capture"] for c in cycles)
    assert -20 <= cost <= -10


def test_boot_time_on_vs_off_is_the_model_within_boot_to_boot_noise(rows):
    # measured (results/hvoboot-*.json: three more off/on boot pairs per kernel, hvo.py
    # --boots off-boot on): the same boot-time pages in identical boots leave free pages that
    # differ by up to 34 (6.1.192) and 85 (6.12.117) pages from boot to boot, so one pair's
    # on-minus-off (+27 on 6.12.117, -24 on 6.1.192 against the model) is that noise: the model
    # lies inside every kernel's range of pairs, and the difference of the means is within the
    # spread of single boots (+3.2 and +14.8 pages)
    spread = [r for r in rows if r["scenario"] == "boot-time-spread"]
    assert len(spread) == 1
    me = spread[0]["measured"]
    assert me["boots"] == "4 on, 4 off"
    assert me["model_in_pair_range"] and me["mean_within_spread"], me
    pairs = [r for r in rows if r["scenario"] == "boot-time"]
    assert len(pairs) == 4
    model = spread[0]["model"]["on_minus_off_free"]
    # the model's own value, by arithmetic: 64 x 2M pages free 7 vmemmap pages each and the
    # 1G page 4095 (one kept; 6.12 frees all and copies the head, the same net count), less
    # one PTE table per split vmemmap PMD (one per 128 MiB of memory): the 1G page's 16 MiB of
    # vmemmap spans 8 PMDs, and the 2M pages lie in the other 128 MiB regions kpageflags showed
    # (2 on 6.12.117, 3 on 6.1.192)
    regions = pairs[0]["measured"]["regions_128M"]
    assert pairs[0]["measured"]["pages_2M"] == 64 and pairs[0]["measured"]["pages_1G"] == 1
    assert model == 64 * 7 + 4095 - (8 + regions - 1)
