"""Direct-map page tables of hot-added ranges (vmemlab.direct_map).

Oracles: the Debian 6.12.117 runs of ``validation/`` -- the DirectMap1G/2M/4k deltas that
/proc/meminfo reported on every namespace create (measured), with and without pdpe1gb, and the
page counts validation/compare.py derived from them (independent arithmetic that the measured
residuals confirmed within noise).  arm64 figures follow arch/arm64/mm/mmu.c by hand: with
NO_BLOCK_MAPPINGS every 2 MiB needs a PTE table, every 1 GiB a PMD table, every 512 GiB a PUD
table.
"""

import json
import sys
from pathlib import Path

import pytest

from vmemlab.direct_map import DirectMap, default_variant, direct_map_cost
from vmemlab.errors import ParameterError
from vmemlab.units import GiB, MiB

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "validation"))
import compare  # noqa: E402

RESULTS = sorted((ROOT / "validation" / "results").glob("linux-6.12*.json"))


def _namespace_rows(path):
    r = compare.load(path)
    gb = str(r["guest"].get("pdpe1gb", "0")) not in ("0", "")
    ram = r["machine"]["ram_mib"] << 20
    for c in r["configs"]:
        if c["kind"] != "namespace":
            continue
        g = compare.geometry(c)
        if g["start"] is not None:
            yield r, c, g, gb, ram


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_matches_measured_directmap_counters(path):
    n = 0
    for r, c, g, gb, ram in _namespace_rows(path):
        rows = compare.phase_rows(r, c)
        cost = direct_map_cost(g["mapped_start"], g["mapped_end"], "x86_64",
                               "gbpages" if gb else "2m", ram)
        for key, level in (("DirectMap1G_kb", "pud"), ("DirectMap2M_kb", "pmd"),
                           ("DirectMap4k_kb", "pte")):
            measured = compare.delta(rows, lambda x, k=key: x.get(k) or 0, "before",
                                     "after_create")
            assert cost.mapped.get(level, 0) // 1024 == measured, (c["name"], key)
        arith = compare.direct_map_tables(g["mapped_start"], g["mapped_end"], gb, ram)
        assert cost.pages == arith["pages"], c["name"]
        n += 1
    assert n >= 7  # every namespace step of the run was checked (quick list: 7)


def test_validation_findings():
    # with pdpe1gb a 1 GiB-aligned part costs nothing, any other touched GiB one PMD table
    assert direct_map_cost(4 * GiB, 20 * GiB, ram=2 * GiB).pages == 0
    assert direct_map_cost(4 * GiB + 64 * MiB, 8 * GiB + 64 * MiB, ram=2 * GiB).pages == 2
    # without pdpe1gb: one PMD table per GiB
    assert direct_map_cost(4 * GiB, 20 * GiB, variant="2m", ram=2 * GiB).pages == 16


def test_new_pgd_slot_costs_a_pud_table():
    # x86 4-level: one PGD entry covers 512 GiB; boot RAM [0, 2G) populated slot 0 only
    c = direct_map_cost(512 * GiB, 513 * GiB, ram=2 * GiB)
    assert c.tables == {"pte_tables": 0, "pmd_tables": 0, "pud_tables": 1}


def test_arm64_base_pages_by_default():
    assert default_variant("arm64-4k") == "pages"
    c = direct_map_cost(64 * GiB, 80 * GiB, "arm64-4k", ram=8 * GiB)
    assert c.tables == {"pte_tables": 16 * 512, "pmd_tables": 16, "pud_tables": 0}
    assert c.mapped == {"pte": 16 * GiB}
    blocks = direct_map_cost(64 * GiB, 80 * GiB, "arm64-4k", "blocks", ram=8 * GiB)
    assert blocks.pages == 0 and blocks.mapped["pud"] == 16 * GiB


def test_shared_slot_is_counted_once():
    dm = DirectMap("x86_64", "gbpages")
    a = dm.add(64 * GiB, 64 * GiB + 512 * MiB)
    b = dm.add(64 * GiB + 512 * MiB, 65 * GiB)
    assert a.tables["pmd_tables"] == 1 and b.tables["pmd_tables"] == 0


def test_bad_variant_and_range():
    with pytest.raises(ParameterError, match="gbpages, 2m"):
        direct_map_cost(0, GiB, "x86_64", "pages")
    with pytest.raises(ParameterError, match="only"):
        direct_map_cost(0, GiB, "ppc64-radix-64k")
    with pytest.raises(ParameterError, match="page-aligned"):
        direct_map_cost(GiB, GiB)


def test_plan_reports_direct_map_line():
    import vmemlab

    p = vmemlab.plan("16G", align="2M", start=64 * GiB + 64 * MiB, ram="2G")
    # [64G+64M, 80G+64M): 15 whole GiB slots on 1 GiB pages, 2 partial ones with a PMD table
    assert p.direct_map["pages"] == 2 and p.direct_map["mapped"]["pud"] == 15 * GiB
    assert any(k == "direct-map page tables" for k, _ in p.rows())
    assert vmemlab.plan("16G", arch="ppc64-radix-64k", align="2M").direct_map is None


ARM64 = ROOT / "validation" / "results" / "arm64-directmap-6.12.117+deb12-arm64.json"


@pytest.mark.skipif(not ARM64.exists(), reason="no arm64 measurement")
@pytest.mark.parametrize("boot,variant", [("default", "pages"), ("blocks", "blocks")])
def test_arm64_hot_add_matches_the_measurement(boot, variant):
    """Debian 6.12.117 arm64 under qemu (validation/arm64_directmap.py): a 4 GiB pmem range at
    3 GiB hot-added by nd_pmem (memmap in RAM: 16384 pages) on a machine whose RAM is
    [1 GiB, 3 GiB).  Measured free-page drop = memmap + direct-map tables, within the reads'
    spread plus the slab/vmalloc change; the other variant is 2052 pages away."""
    import statistics

    r = json.loads(ARM64.read_text())
    b = r["boots"][boot]

    def free(x):
        return x["nr_free_pages"] + x["pcp"]

    un, re_ = b["reads"]["unbound"], b["reads"]["rebound"]
    drop = statistics.median(map(free, un)) - statistics.median(map(free, re_))
    noise = (max(map(free, un)) - min(map(free, un)) + max(map(free, re_)) - min(map(free, re_))
             + abs(re_[0]["nr_slab_unreclaimable"] - un[0]["nr_slab_unreclaimable"])
             + abs(re_[0]["VmallocUsed_kb"] - un[0]["VmallocUsed_kb"]) // 4)
    memmap = re_[0]["nr_memmap_pages"] - un[0]["nr_memmap_pages"]
    assert memmap == (4 * GiB // 4096) * 64 // 4096 == 16384
    dm = DirectMap("arm64-4k", variant)
    dm.add(1 * GiB, 3 * GiB)                      # boot RAM of the virt machine
    cost = dm.add(3 * GiB, 7 * GiB)
    assert cost.pages == {"pages": 2052, "blocks": 0}[variant]
    assert abs(drop - (memmap + cost.pages)) <= noise, (drop, cost.pages, noise)
    assert abs(drop - (memmap + 2052 - cost.pages)) > noise  # and not the other variant
    assert r["config"]["CONFIG_RODATA_FULL_DEFAULT_ENABLED"] == "y"
    assert r["config"]["CONFIG_KFENCE_SAMPLE_INTERVAL"] == "0"
