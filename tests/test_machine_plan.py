"""Whole-machine plans (vmemlab.machine_plan) and the ``vmemlab plan`` CLI for them.

Independent arithmetic (x86_64, 4 KiB pages, 64-byte struct page): System RAM's boot memmap
is RAM / 64 (512 GiB -> 8 GiB = 2**21 pages); a 1 TiB 2M-aligned namespace keeps 4 GiB of
vmemmap (cover letter); HVO of 1024 2 MiB pages frees 7 of 8 vmemmap pages each (7168) and
splits 16 PMD leaves packed, 1024 spread.
"""

import json

import pytest

import vmemlab
from vmemlab.cli import main
from vmemlab.errors import KernelError, ParameterError
from vmemlab.hugetlb_plan import plan_hugetlb
from vmemlab.machine_plan import parse_namespace, plan_machine
from vmemlab.units import GiB


@pytest.fixture(scope="module")
def big():
    return plan_machine("512G", ["1T:2M:mem", "64G:1G:dev"], ["2M:1024", "1G:4"])


def lines(mp):
    return {(ln.item, ln.what): ln.pages for ln in mp.lines}


def test_boot_memmap_is_ram_over_64(big):
    assert lines(big)[("System RAM", "boot memmap (struct pages)")]["packed"] == 2**21


def test_hugetlb_lines_match_plan_hugetlb(big):
    ls = lines(big)
    assert ls[("HugeTLB 1024 x 2M", "vmemmap freed by HVO")] == {"packed": -7168,
                                                               "spread": -7168}
    assert ls[("HugeTLB 1024 x 2M", "PTE tables of HVO's PMD splits")] == {"packed": 16,
                                                                         "spread": 1024}
    hp = plan_hugetlb("1G:4", ram="512G")
    assert ls[("HugeTLB 4 x 1G", "vmemmap freed by HVO")]["packed"] == -hp.freed_pages


def test_mm_2026_one_shared_tail_page_per_order():
    """The 2026 rework (vmemlab/vmemmap_optimization.py): HVO maps tails onto one shared page
    per zone and order, so a machine with two 2 MiB pools and a 1 GiB pool has two of them:
    the first 2 MiB pool makes the order-9 page, the 1 GiB pool the order-18 page, the second
    2 MiB pool none.  Everything else is 6.12.117's per-page arithmetic."""
    mp = plan_machine("64G", hugetlb=["2M:1024", "1G:4", "2M:8"], kernel="mm-2026")
    ls = lines(mp)
    tail = "HVO's shared tail page (2026 rework)"
    assert {k[0]: v["packed"] for k, v in ls.items() if k[1] == tail} == {
        "HugeTLB 1024 x 2M": 1, "HugeTLB 4 x 1G": 1}
    same = plan_machine("64G", hugetlb=["2M:1024", "1G:4", "2M:8"], kernel="6.12.117")
    assert mp.total_pages["packed"] - same.total_pages["packed"] == 2
    assert tail not in {w for _, w in lines(same)}


def test_namespace_line_equals_a_lone_plan(big):
    ls = lines(big)
    lone = vmemlab.plan("1T", "2M", start=512 * GiB)
    assert ls[("namespace 0: 1T 2M mem", "vmemmap (data + page tables)")]["packed"] == \
        lone.ram_data_pages + lone.ram_pagetable_pages
    assert lone.ram_data_pages * 4096 == 4 * GiB
    # map=dev, 1 GiB-aligned at 1536 GiB: all 1 GiB direct-map pages, but the range opens a new
    # 512 GiB PGD slot, which needs one PUD table
    assert ls[("namespace 1: 64G 1G dev", "direct-map page tables")]["packed"] == 1


def test_total_and_share(big):
    tot = big.total_pages
    assert tot == {p: sum(ln.pages[p] for ln in big.lines) for p in ("packed", "spread")}
    assert tot["spread"] - tot["packed"] == 1024 - 16
    assert big.ram_share["packed"] == pytest.approx(tot["packed"] * 4096 / (512 * GiB))
    text = big.table()
    assert "share of RAM" in text and "[" in text  # the spread figure shown where it differs


def test_namespaces_are_placed_one_after_another(big):
    starts = [ns["start"] for ns in big.namespaces]
    assert starts == [512 * GiB, 1536 * GiB]


def test_hvo_off_and_arm64():
    off = plan_machine("64G", hugetlb=["2M:1024"], hvo=False)
    assert lines(off)[("HugeTLB 1024 x 2M", "vmemmap freed by HVO")]["packed"] == 0
    arm = plan_machine("8G", ["16G:2M:mem"], arch="arm64-4k")
    # base-page direct map: 16 GiB -> 8192 PTE tables + 16 PMD tables (arch/arm64/mm/mmu.c)
    assert lines(arm)[("namespace 0: 16G 2M mem", "direct-map page tables")]["packed"] == 8208


def test_more_than_ram_is_enomem():
    with pytest.raises(KernelError, match="ENOMEM"):
        plan_machine("4G", ["1T:4K:mem"])
    with pytest.raises(ParameterError, match="more than"):
        plan_machine("4G", hugetlb=["1G:3", "2M:1024"])


@pytest.mark.parametrize("spec", ["", "1T:2M:mem:x", "1T:2M:nvme", "big:2M", "1T::mem"])
def test_malformed_namespace(spec):
    with pytest.raises(ParameterError):
        parse_namespace(spec)


def test_parse_namespace_defaults():
    assert parse_namespace("16G") == (16 * GiB, 2 << 20, "mem")
    assert parse_namespace("16G:1G:dev") == (16 * GiB, GiB, "dev")


@pytest.mark.parametrize("argv,needle", [
    (["--ram", "64G", "--hugetlb", "3M:4"], "offers: 2M, 1G"),
    (["--ram", "1G", "--hugetlb", "2M:1024"], "at most 512 pages"),
    (["--ram", "1G", "--namespace", "1T:2M:foo"], "MAP 'mem'"),
    (["--ram", "16G", "--hugetlb", "1G:2", "--direct-map", "2m"], "pdpe1gb"),
    (["--hugetlb", "2M:2"], "--ram"),
    (["--ram", "4G", "--namespace", "1T:4K:mem"], "ENOMEM"),
])
def test_cli_errors_one_line_exit_2(argv, needle, capsys):
    assert main(["plan", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err


def test_cli_table_and_json(capsys):
    argv = ["plan", "--ram", "512G", "--hugetlb", "2M:1024", "--namespace", "1T:2M:mem"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "HugeTLB 1024 x 2M" in out and "direct-map page tables" in out
    assert main([*argv, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["total_pages"]["spread"] - d["total_pages"]["packed"] == 1024 - 16
    assert d["hugetlb"][0]["split_pte_tables"] == {"packed": 16, "spread": 1024}


def test_cli_size_still_plans_one_namespace(capsys):
    assert main(["plan", "--size", "16G", "--align", "1G"]) == 0
    out = capsys.readouterr().out
    assert "compound pages" in out and "direct-map page tables" in out
