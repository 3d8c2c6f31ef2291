"""vmemlab.inspect on file trees captured verbatim from Debian guests under qemu.

``validation/captured/<release>/<scenario>/`` are copies (made by helper i12v's harness run,
copied unchanged into this repository) of /proc/vmstat, /proc/meminfo, /proc/sys/vm/*,
/sys/bus/dax/devices/* and /sys/bus/nd/devices/* of one guest boot, one tree per step.  The
steps accumulate: each devdax scenario holds the namespaces of the steps before it plus one
new one, so the tree before it is its baseline (the chain below; the test checks that each
step adds exactly one dax device).  The trees hold no osrelease, cpuinfo or kallsyms, so the
release is the directory name, the arch x86_64 (the harness runs qemu-system-x86_64), and for
6.12.117 the kernel variant 6.12.117: the same Debian package's kallsyms has
``section_nr_vmemmap_pages`` (recorded in validation/results/linux-6.12.json, guest.kallsyms).
Debian 6.1 (bookworm's 6.1.0-57) gets the variant inspect picks from the release.

Expected values are the kernel's own: dax sizes, and the nr_memmap_pages,
nr_memmap_boot_pages (6.11+ only) and DirectMap1G/2M/4k deltas from one step to the next.
"""

import json
from pathlib import Path

import pytest

from vmemlab.inspect import inspect

ROOT = Path(__file__).resolve().parents[1]
CAPTURED = ROOT / "validation" / "captured"
RELEASE = "6.12.117+deb12-amd64"
#: release -> kernel variant to force (None: inspect's choice from the release)
RELEASES = {"6.12.117+deb12-amd64": "6.12.117", "6.1.0-57-amd64": None}
#: each step and the step before it (its baseline)
CHAIN = ["devdax-1G-dev", "devdax-2M-dev", "devdax-4K-dev", "devdax-2M-mem", "devdax-1G-mem",
         "devdax-4K-mem", "devdax-2M-mem-mid"]
TREES = CAPTURED / RELEASE
pytestmark = pytest.mark.skipif(not TREES.is_dir(), reason="no captured trees")


def run(step, baseline=None, release=RELEASE):
    trees = CAPTURED / release
    return inspect(trees / step, baseline=None if baseline is None else trees / baseline,
                   arch="x86_64", release=release, kernel=RELEASES[release])


def test_kallsyms_of_this_package_has_the_2026_fix():
    r = json.loads((ROOT / "validation/results/linux-6.12.json").read_text())
    assert r["kernel"]["uname_r"] == RELEASE
    assert "section_nr_vmemmap_pages" in r["guest"]["kallsyms"]


@pytest.mark.parametrize("release", [r for r in RELEASES if (CAPTURED / r).is_dir()])
@pytest.mark.parametrize("i", range(1, len(CHAIN)), ids=CHAIN[1:])
def test_step_counters_equal_the_planner(i, release):
    step, prev = CHAIN[i], CHAIN[i - 1]
    ins, base = run(step, prev, release), run(prev, None, release)
    new = {d["name"] for d in ins.dax} - {d["name"] for d in base.dax}
    assert len(new) == 1, new  # the chain is right: one namespace per step
    checks = {c["what"]: c for c in ins.checks}
    for name in ("nr_memmap_pages", "nr_memmap_boot_pages"):
        if release.startswith("6.1."):      # no memmap counters before 6.11: named instead
            assert f"{name} not in both trees: no counter delta to compare" in ins.notes
            continue
        c = checks[f"{name} delta since the baseline"]
        assert c["agree"], c
    for key in ("DirectMap1G", "DirectMap2M", "DirectMap4k"):
        c = checks[f"{key} delta since the baseline (kB)"]
        assert c["agree"], c
    for d in ins.dax:
        c = checks[f"{d['name']} size (bytes)"]
        assert c["agree"], c


def test_first_step_against_nothing():
    ins = run(CHAIN[0])
    (d,) = ins.dax
    assert d["map"] == "dev" and d["align"] == 1 << 30
    # map=dev: every kernel counts the full memmap in nr_memmap_pages (validation/README.md):
    # 4 GiB raw namespace -> 2**20 struct pages -> 16384 pages of 4 KiB
    assert ins.counters["nr_memmap_pages"] == d["current"]["nr_memmap_pages"] == 16384
    assert ins.direct_map == "gbpages"  # meminfo has a DirectMap1G line


def test_captured_tree_table_reads_well():
    text = run("devdax-2M-mem", "devdax-4K-dev").table()
    assert "2M map=mem" in text and "<- now" in text and "DIFFER" not in text


# -- HugeTLB: one boot with hugetlb_free_vmemmap=off, one with =on (3072 MiB guests) ---------
#: the off boot's steps in order (validation/hvo.py): boot pools, then at runtime each pool
#: grown to its size with vm.hugetlb_optimize_vmemmap 0 or 1, the previous pool dissolved first
HVO_CHAIN = ["hvo-hugetlb-boot-hvo-off", "hvo-hugetlb-2M-hvo0", "hvo-hugetlb-2M-hvo1",
             "hvo-hugetlb-1G-hvo0", "hvo-hugetlb-1G-hvo1"]
needs_hvo = pytest.mark.skipif(not (TREES / HVO_CHAIN[0]).is_dir(), reason="no HVO trees")


@needs_hvo
def test_hvo_trees_follow_the_planner():
    from vmemlab.hugetlb_plan import boot_memmap_pages, plan_hugetlb

    t = {s: run(s) for s in HVO_CHAIN + ["hvo-hugetlb-boot-hvo-on"]}
    c = {s: dict(i.counters) for s, i in t.items()}
    pools = {s: {h["size"]: h["nr_hugepages"] for h in i.hugetlb} for s, i in t.items()}
    two, one = plan_hugetlb("2M:64", kernel="6.12.117"), plan_hugetlb("1G:1", kernel="6.12.117")
    # boot with HVO off: the whole boot memmap of 3 GiB is there, nothing else
    assert c[HVO_CHAIN[0]] == {"nr_memmap_boot_pages": boot_memmap_pages("3G")["data"],
                               "nr_memmap_pages": 0}
    assert pools[HVO_CHAIN[0]] == {2 << 20: 64, 1 << 30: 1}
    assert t["hvo-hugetlb-2M-hvo1"].hvo_sysctl == 1 and t["hvo-hugetlb-2M-hvo0"].hvo_sysctl == 0

    def moved(a, *deltas):
        return {k: a[k] + sum(d.get(k, 0) for d in deltas) for k in a}

    # runtime, HVO off: nothing moves; HVO on: the planner's deltas, and dissolving restores
    assert c["hvo-hugetlb-2M-hvo0"] == c[HVO_CHAIN[0]]
    assert c["hvo-hugetlb-2M-hvo1"] == moved(c["hvo-hugetlb-2M-hvo0"], two.vmstat_delta)
    assert c["hvo-hugetlb-1G-hvo0"] == moved(c["hvo-hugetlb-2M-hvo1"],
                                              two.restore_vmstat_delta)
    assert c["hvo-hugetlb-1G-hvo1"] == moved(c["hvo-hugetlb-1G-hvo0"], one.vmstat_delta)
    # the other boot, HVO on at boot for the same pools: already in the first values read
    assert c["hvo-hugetlb-boot-hvo-on"] == moved(
        c[HVO_CHAIN[0]], plan_hugetlb("2M:64", kernel="6.12.117", when="boot").vmstat_delta,
        plan_hugetlb("1G:1", kernel="6.12.117", when="boot").vmstat_delta)
    # freed boot memmap joins MemTotal: the on boot has exactly those pages more
    on, off = t["hvo-hugetlb-boot-hvo-on"].meminfo, t[HVO_CHAIN[0]].meminfo
    assert (on["MemTotal"] - off["MemTotal"]) // 4 == 64 * 8 + 4096


@needs_hvo
def test_hvo_tree_table():
    text = run("hvo-hugetlb-2M-hvo1").table()
    assert "2M pages: 64 (64 free)" in text and "= 1 (on for pages allocated" in text
    assert "no device-dax devices here" in text


@pytest.mark.parametrize("release", [r for r in RELEASES
                                     if (CAPTURED / r / HVO_CHAIN[0]).is_dir()])
def test_hvo_memtotal_follows_the_planner(release):
    """MemTotal grows by the boot-memmap pages HVO frees (free_bootmem_page adds them to
    totalram); restore takes ordinary pages and gives nothing back.  This holds on 6.1 too,
    which has no memmap counters.  On the 6.1 guest both runtime 1 GiB allocations found no
    free gigantic range (nr_hugepages stayed 0), which inspect reads and the planner follows."""
    from vmemlab.hugetlb_plan import plan_hugetlb

    t = {s: run(s, None, release) for s in HVO_CHAIN + ["hvo-hugetlb-boot-hvo-on"]}
    k = t[HVO_CHAIN[0]].kernel
    mem = {s: i.meminfo["MemTotal"] // 4 for s, i in t.items()}      # kB -> 4 KiB pages

    def pool(step, size):
        return next(h["nr_hugepages"] for h in t[step].hugetlb if h["size"] == size)

    def freed(spec, hvo, when="runtime"):
        return plan_hugetlb(spec, kernel=k, hvo=hvo, when=when).boot_pages_freed

    assert mem["hvo-hugetlb-2M-hvo0"] == mem[HVO_CHAIN[0]]
    assert mem["hvo-hugetlb-2M-hvo1"] - mem["hvo-hugetlb-2M-hvo0"] == freed(
        f"2M:{pool('hvo-hugetlb-2M-hvo1', 2 << 20)}", True)
    assert mem["hvo-hugetlb-1G-hvo0"] == mem["hvo-hugetlb-2M-hvo1"]
    assert mem["hvo-hugetlb-1G-hvo1"] - mem["hvo-hugetlb-1G-hvo0"] == freed(
        f"1G:{pool('hvo-hugetlb-1G-hvo1', 1 << 30)}", True)
    on = "hvo-hugetlb-boot-hvo-on"
    assert mem[on] - mem[HVO_CHAIN[0]] == (
        freed(f"2M:{pool(on, 2 << 20)}", True, "boot") + freed(f"1G:{pool(on, 1 << 30)}", True,
                                                            "boot"))
    if release.startswith("6.1."):
        # inspect picks the 6.1 variant from the release (vmemlab/kernels.py, Debian 6.1.192)
        assert pool("hvo-hugetlb-1G-hvo1", 1 << 30) == 0 and t[on].kernel == "6.1"
