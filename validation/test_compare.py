"""Tests for the kernel validation data and tools; they run without qemu.

Every expected value here comes from the committed measurements or from
independent arithmetic on the namespace geometry, never from planner output.
"""

from __future__ import annotations

import json
import lzma
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import compare  # noqa: E402
import harness  # noqa: E402

RESULTS = sorted((HERE / "results").glob("linux-*.json"))
MAIN = HERE / "results" / "linux-6.12.json"
PAGE = 4096
SECTION = 128 << 20
STRUCT_PAGE = 64


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


@pytest.fixture(scope="module", params=RESULTS, ids=_ids(RESULTS))
def results(request: pytest.FixtureRequest) -> dict:
    return compare.load(request.param)


def _namespaces(results: dict) -> list[dict]:
    return [c for c in results["configs"] if c["kind"] == "namespace"]


# --------------------------------------------------------------------------- structure


def test_main_results_file_exists_and_is_small() -> None:
    assert MAIN.exists(), "run: python3 validation/harness.py run"
    assert MAIN.stat().st_size < 200_000


def test_structure(results: dict) -> None:
    for key in ("schema", "kernel", "qemu", "host", "guest", "machine", "reading_fields", "configs"):
        assert key in results
    assert results["kernel"]["uname_r"] == results["kernel"]["version"]
    cmd = " ".join(results["qemu"]["command"])
    for part in ("-accel tcg", "nvdimm=on", "label-size=128K", "share=on"):
        assert part in cmd
    fields = results["reading_fields"]
    for f in ("nr_free_pages", "pcp", "nr_memmap_pages", "nr_memmap_boot_pages", "Slab_kb"):
        assert f in fields
    assert "pdpe1gb" in results["guest"]
    assert any(c["kind"] == "control" for c in results["configs"])
    assert not results["errors"]
    for c in results["configs"]:
        assert not c["errors"], (c["name"], c["errors"])
        for phase in compare.PHASES:
            rows = c["readings"][phase]
            assert len(rows) >= 3, (c["name"], phase)
            assert all(len(r) == len(fields) for r in rows)


def test_namespace_geometry_recorded(results: dict) -> None:
    for c in _namespaces(results):
        ns, nd_dax = c["sysfs"]["namespace"], c["sysfs"]["nd_dax"]
        assert int(ns["size"]) == c["size"]
        start = int(ns["resource"], 16)
        assert start % (2 << 20) == 0
        data = int(nd_dax["resource"], 16)
        assert data > start and data % compare.parse_size(c["align"]) == 0
        assert c["ndctl_create"]["map"] == c["map"]
        assert c["ndctl_create"]["align"] == compare.parse_size(c["align"])
        assert c["pad"] == start - int(results["guest"]["sysfs"]["boot:region"]["resource"], 16)


# --------------------------------------------------------------------------- behaviour


def test_memory_returns_after_destroy(results: dict) -> None:
    rows = compare.compare(results)
    noise = compare.noise(results)
    for r in rows:
        assert abs(r["leak"]) <= noise, (r["config"], r["leak"], noise)


def test_nr_memmap_pages_returns_to_zero(results: dict) -> None:
    for c in results["configs"]:
        rows = compare.phase_rows(results, c)
        before = {r["nr_memmap_pages"] for r in rows["before"]}
        after = {r["nr_memmap_pages"] for r in rows["after_destroy"]}
        assert before == after == {0}, c["name"]


def test_controls_are_quiet(results: dict) -> None:
    assert compare.control_noise(results) <= 8


def _full_memmap_pages(start: int, end: int) -> int:
    """DIV_ROUND_UP(nr_pages * 64, PAGE_SIZE) summed over section-bounded chunks."""
    total, pfn = 0, start
    while pfn < end:
        nxt = min(end, (pfn // SECTION + 1) * SECTION)
        total += -(-((nxt - pfn) // PAGE) * STRUCT_PAGE // PAGE)
        pfn = nxt
    return total


def test_nr_memmap_counts_full_memmap_when_not_deduplicated(results: dict) -> None:
    """map=dev (altmap) and 4K align: the counter shows the whole memmap of the mapped range."""
    for c in _namespaces(results):
        if c["map"] != "dev" and c["align"] != "4K":
            continue
        geo = compare.geometry(c)
        rows = compare.phase_rows(results, c)
        measured = compare.delta(rows, lambda r: r["nr_memmap_pages"], "before", "after_create")
        assert measured == _full_memmap_pages(geo["mapped_start"], geo["mapped_end"]), c["name"]


def test_map_mem_4k_costs_the_full_memmap_in_ram(results: dict) -> None:
    """4K align, map=mem, section-aligned: RAM drop = memmap pages (PMD blocks, no PTE tables)."""
    noise = compare.noise(results)
    for r in compare.compare(results):
        geo = r["geometry"]
        if r["kind"] != "namespace" or r["align"] != "4K" or r["map"] != "mem":
            continue
        if geo["start"] % SECTION or geo["size"] % SECTION:
            continue
        expected = geo["size"] // PAGE * STRUCT_PAGE // PAGE
        assert abs(r["measured_vmemmap"] - expected) <= noise, r["config"]


def test_map_dev_section_aligned_costs_no_ram(results: dict) -> None:
    noise = compare.noise(results)
    for r in compare.compare(results):
        geo = r["geometry"]
        if r["kind"] == "namespace" and r["map"] == "dev" and not (geo["start"] % SECTION):
            if geo["mapped_end"] % SECTION == 0:
                assert abs(r["measured_vmemmap"]) <= noise, r["config"]


# --------------------------------------------------------------------------- planner


def _require_planner() -> None:
    if compare.planner() is None:
        pytest.skip("vmemlab.plan is not available yet")


def test_planner_predicts_ram(results: dict) -> None:
    _require_planner()
    noise = compare.noise(results)
    for r in compare.compare(results):
        if r["kind"] != "namespace" or r["warmup"]:
            continue  # the warm-up step also pays one-time costs (first namespace after boot)
        ok = abs(r["difference"]) <= noise or abs(r["residual"]) <= noise
        assert ok, (r["config"], r["free_drop"], r["predicted"], r["explain"], noise)


def test_planner_nr_memmap_when_not_optimised(results: dict) -> None:
    _require_planner()
    for r in compare.compare(results):
        if r["kind"] == "namespace" and not r["planner"]["optimised"]:
            assert r["nr_memmap_delta"] == r["predicted_nr_memmap_delta"], r["config"]


def test_planner_nr_memmap_when_optimised(results: dict) -> None:
    """The counter follows the kernel: 6.12.100 counts the full memmap, 6.12.107+ (which has
    section_nr_vmemmap_pages) only the deduplicated one; compare() picks the matching variant."""
    _require_planner()
    rows = [r for r in compare.compare(results)
            if r["kind"] == "namespace" and r["planner"]["optimised"]]
    assert rows
    wrong = [r["config"] for r in rows if r["nr_memmap_delta"] != r["predicted_nr_memmap_delta"]]
    assert not wrong


# --------------------------------------------------------------------------- harness


def test_harness_fails_clearly_without_qemu(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path))
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(HERE / "harness.py"), "run", "--no-install", "--cache", str(tmp_path / "c"),
         "--out", str(tmp_path / "out.json")],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert time.monotonic() - t0 < 30
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("harness: error:") and "qemu-system-x86_64" in lines[0]
    assert not (tmp_path / "out.json").exists()


def test_boot_timeout_kills_and_reports(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(harness.HarnessError, match="did not finish in 1 s"):
        harness.boot(["sleep", "60"], tmp_path / "console.log", timeout=1)
    assert time.monotonic() - t0 < 10


def test_missing_markers_are_reported() -> None:
    with pytest.raises(harness.HarnessError, match="start marker"):
        harness.parse_console("SeaBIOS ...\n[ 1.0] Kernel panic - not syncing: VFS\n")
    with pytest.raises(harness.HarnessError, match="end marker"):
        harness.parse_console(f"{harness.MARK_BEGIN}\nVML\tfact\tboot\tuname_r\tx\n")


def test_parse_console_round_trip() -> None:
    cfg = harness.Config("c", "namespace", 1 << 30, "2M", "mem")
    text = "\n".join(
        [
            harness.MARK_BEGIN,
            "VML\tconfig\tc\tnamespace\t1073741824\t2M\tmem\t0\t0",
            "VML\tread\tc\tbefore\t0\tpcp=5 nr_free_pages=100",
            "VML-BLOB-BEGIN\tc\tndctl_create",
            json.dumps({"dev": "namespace0.0", "map": "mem"}),
            "VML-BLOB-END",
            "VML\tattr\tc\tnamespace\tsize\t1073741824 ",
            "VML\terror\tc\tcreate failed: x",
            harness.MARK_END,
        ]
    )
    parsed = harness.parse_console(text)
    (c,) = parsed["configs"]
    assert c["name"] == cfg.name and c["size"] == cfg.size and c["map"] == "mem"
    assert c["readings"]["before"] == [{"i": 0, "pcp": 5, "nr_free_pages": 100}]
    assert c["ndctl_create"]["dev"] == "namespace0.0"
    assert c["sysfs"]["namespace"]["size"] == "1073741824"
    assert c["errors"][0]["message"] == "create failed: x"


def test_config_lists() -> None:
    for which in ("tiny", "quick", "full"):
        configs = harness.config_list(which)
        names = [c.name for c in configs]
        assert len(names) == len(set(names))
        assert any(c.kind == "control" for c in configs)
        script = harness.guest_script(configs, 3)
        assert all(f"measure_ns {c.name} " in script for c in configs if c.kind == "namespace")
    with pytest.raises(harness.HarnessError):
        harness.config_list("nope")


def test_module_depends_and_order(tmp_path: Path) -> None:
    kdir = tmp_path / "kernel"
    kdir.mkdir()
    (kdir / "a.ko.xz").write_bytes(lzma.compress(b"\x00license=GPL\x00depends=b,c-d\x00"))
    (kdir / "b.ko").write_bytes(b"\x00depends=\x00")
    (kdir / "c-d.ko").write_bytes(b"\x00depends=b\x00")
    order = [n for n, _ in harness.module_load_order(harness.module_index(tmp_path), ["a"])]
    assert order == ["b", "c_d", "a"]
    with pytest.raises(harness.HarnessError, match="not in the kernel package"):
        harness.module_load_order(harness.module_index(tmp_path), ["zz"])


def test_direct_map_arithmetic_matches_kernel_counters(results: dict) -> None:
    """DirectMap2M/4k growth equals what the arithmetic maps below 1 GiB pages."""
    for r in compare.compare(results):
        if r["kind"] == "namespace":
            assert r["direct_map"]["consistent"], (r["config"], r["direct_map"])


def test_direct_map_tables_arithmetic() -> None:
    gib = 1 << 30
    # 1 GiB pages: a 1 GiB-aligned range needs no tables; a 64 MiB tail needs one PMD table.
    assert compare.direct_map_tables(4 * gib, 8 * gib, True, 2 * gib)["pages"] == 0
    assert compare.direct_map_tables(4 * gib, 8 * gib + (64 << 20), True, 2 * gib)["pages"] == 1
    # No 1 GiB pages: one PMD table per GiB slot touched.
    assert compare.direct_map_tables(4 * gib, 20 * gib, False, 2 * gib)["pmd_tables"] == 16
