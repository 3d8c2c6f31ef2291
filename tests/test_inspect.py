"""vmemlab.inspect on file trees.

Two kinds of tree:

* trees rebuilt from the **real kernel outputs** that ``validation/harness.py`` recorded in
  ``validation/results/*.json`` (Debian 6.12.117 and 6.12.100 guests under qemu): the sysfs
  attributes of every namespace, nd dax and dax device, the guest's /proc/vmstat
  ``nr_memmap_pages``/``nr_memmap_boot_pages`` and /proc/meminfo DirectMap* (the median read of
  each phase: an actual read), its release and kallsyms symbols.  The files are laid out as
  Documentation/ABI/testing/sysfs-bus-{dax,nvdimm} place them.  inspect's numbers must equal
  the kernel's: dax sizes, and the counter deltas from the "before" tree to the "after create"
  tree.
* small synthetic trees for what those runs did not record (HugeTLB pools, unreadable and
  malformed files), with expected values from arithmetic stated in each test.
"""

import json
import os
import statistics
import sys
from pathlib import Path

import pytest

from vmemlab.cli import main
from vmemlab.inspect import InspectError, inspect, kernel_variant, rebuild_tree

ROOT = Path(__file__).resolve().parents[1]
RESULTS = {p.name: p for p in (ROOT / "validation" / "results").glob("linux-6.12*.json")}


def write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def base_tree(root: Path, release: str, kallsyms: str, pdpe1gb: bool, vmstat: dict,
              meminfo: dict, hugepages: dict | None = None, hvo: int | None = None) -> None:
    write(root, "proc/sys/kernel/osrelease", release + "\n")
    write(root, "proc/sys/kernel/arch", "x86_64\n")
    flags = "fpu vme de pse tsc msr pae" + (" pdpe1gb" if pdpe1gb else "") + " lm"
    write(root, "proc/cpuinfo", f"processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: {flags}\n\n")
    write(root, "proc/kallsyms", "".join(f"0000000000000000 T {s}\n" for s in kallsyms.split()))
    write(root, "proc/vmstat", "".join(f"{k} {v}\n" for k, v in vmstat.items()))
    write(root, "proc/meminfo", "".join(f"{k}:{v:>16} kB\n" for k, v in meminfo.items()))
    for size_kb, attrs in (hugepages or {2048: {}, 1048576: {}}).items():
        for f in ("nr_hugepages", "free_hugepages", "surplus_hugepages", "resv_hugepages"):
            write(root, f"sys/kernel/mm/hugepages/hugepages-{size_kb}kB/{f}",
                  f"{attrs.get(f, 0)}\n")
    if hvo is not None:
        write(root, "proc/sys/vm/hugetlb_optimize_vmemmap", f"{hvo}\n")
    (root / "sys/bus/dax/devices").mkdir(parents=True, exist_ok=True)
    (root / "sys/bus/nd/devices").mkdir(parents=True, exist_ok=True)


def median_read(results, config, phase, field):
    fields = results["reading_fields"]
    vals = [r[fields.index(field)] for r in config["readings"][phase]]
    return None if None in vals else statistics.median_low(vals)


def trees_from_results(tmp: Path, results: dict, config: dict) -> tuple[Path, Path]:
    """(before, after_create) trees of one measured configuration (vmemlab.inspect.rebuild_tree
    writes the recorded values, unchanged, where the ABI documents put them)."""
    return (rebuild_tree(results, config["name"], tmp / "before", "before"),
            rebuild_tree(results, config["name"], tmp / "after", "after_create"))


def measured_configs():
    for name, path in sorted(RESULTS.items()):
        r = json.loads(path.read_text())
        for c in r["configs"]:
            if c["kind"] == "namespace" and c.get("sysfs", {}).get("nd_dax") and not c.get("pad"):
                yield pytest.param(name, c["name"], id=f"{name}:{c['name']}")


_cache: dict = {}


def load(name):
    if name not in _cache:
        _cache[name] = json.loads(RESULTS[name].read_text())
    return _cache[name]


@pytest.mark.parametrize("results_name,config_name", list(measured_configs()))
def test_inspect_equals_the_kernels_counters(tmp_path, results_name, config_name):
    r = load(results_name)
    c = next(x for x in r["configs"] if x["name"] == config_name)
    before, after = trees_from_results(tmp_path, r, c)
    ins = inspect(after, baseline=before)
    # the variant follows the guest's kallsyms, as validation/compare.py kernel_variant() does:
    # 6.12.117 has the 2026 fix (section_nr_vmemmap_pages), 6.12.100 counts the full memmap
    assert ins.kernel == ("6.12.117" if "section_nr_vmemmap_pages" in r["guest"]["kallsyms"]
                          else "6.12")
    (dev,) = ins.dax
    assert dev["map"] == c["map"] and dev["align"] == int(c["sysfs"]["nd_dax"]["align"])
    checks = {k["what"]: k for k in ins.checks}
    size = checks[f"{dev['name']} size (bytes)"]
    assert size["kernel"] == int(c["sysfs"]["dax:" + dev["name"]]["size"]) and size["agree"]
    mm = checks["nr_memmap_pages delta since the baseline"]
    measured = (median_read(r, c, "after_create", "nr_memmap_pages")
                - median_read(r, c, "before", "nr_memmap_pages"))
    assert mm["kernel"] == measured
    assert mm["agree"], (mm, config_name)
    assert checks["nr_memmap_boot_pages delta since the baseline"]["agree"]
    for key in ("DirectMap1G", "DirectMap2M", "DirectMap4k"):
        if f"{key}_kb" in r["reading_fields"] and median_read(r, c, "before", f"{key}_kb") \
                is not None:
            assert checks[f"{key} delta since the baseline (kB)"]["agree"], key
    # the alternatives cover every align x map device-dax offers on x86_64
    assert {(a["align"], a["map"]) for a in dev["alternatives"]} == {
        (al, m) for al in (4096, 2 << 20, 1 << 30) for m in ("mem", "dev")}
    assert sum(a["current"] for a in dev["alternatives"]) == 1


def test_pad_configs_are_skipped_for_a_reason():
    """The pad64M runs hold a second (raw) namespace whose sysfs the harness did not record, so
    a tree of them would be incomplete; they are left out above rather than invented."""
    r = load("linux-6.12.json")
    assert any(c.get("pad") for c in r["configs"])


def _hugetlb_trees(tmp_path, hvo):
    """A 6.12.117-like guest before and after ``echo 1024 > nr_hugepages`` (2 MiB pages).
    Arithmetic: 1024 pages x 8 vmemmap pages = 8192 boot-memmap pages; HVO with the 6.2+ head
    copy frees all 8 of each (boot counter -8192) and allocates 1024 new head pages
    (nr_memmap_pages +1024).  Without HVO nothing moves."""
    common = ("6.12.117+deb12-amd64", "memmap_pages_add section_nr_vmemmap_pages", True)
    mi = {"MemTotal": 8 << 20, "DirectMap2M": 2 << 20, "DirectMap1G": 6 << 20}
    before, after = tmp_path / "b", tmp_path / "a"
    base_tree(before, *common, {"nr_memmap_pages": 0, "nr_memmap_boot_pages": 32768}, mi,
              hvo=hvo)
    vm = ({"nr_memmap_pages": 1024, "nr_memmap_boot_pages": 32768 - 8192} if hvo else
          {"nr_memmap_pages": 0, "nr_memmap_boot_pages": 32768})
    base_tree(after, *common, vm, mi, hugepages={2048: {"nr_hugepages": 1024,
                                                       "free_hugepages": 1024}}, hvo=hvo)
    return before, after


@pytest.mark.parametrize("hvo", [0, 1])
def test_hugetlb_pool_counters(tmp_path, hvo):
    before, after = _hugetlb_trees(tmp_path, hvo)
    ins = inspect(after, baseline=before)
    checks = {k["what"]: k for k in ins.checks}
    assert checks["nr_memmap_pages delta since the baseline"]["agree"]
    assert checks["nr_memmap_boot_pages delta since the baseline"]["agree"]
    (pool,) = [h for h in ins.hugetlb if h["nr_hugepages"]]
    # HVO on: 1024 kept + 16 PTE tables packed (64 pages per 128 MiB region); spread, one
    # table per region, of which MemTotal's 8 GiB has 64
    assert pool["plans"]["HVO on"]["ram_pages"] == {"packed": 1040, "spread": 1088}
    assert pool["plans"]["HVO off"]["ram_pages"] == {"packed": 8192, "spread": 8192}
    text = ins.table()
    assert "2M pages: 1024 (1024 free)" in text


def test_wrong_counter_delta_is_reported_as_differing(tmp_path):
    """A check that can fail: claim HVO is on, but the counters did not move."""
    before, after = _hugetlb_trees(tmp_path, 0)
    (after / "proc/sys/vm/hugetlb_optimize_vmemmap").write_text("1\n")
    ins = inspect(after, baseline=before)
    assert not {k["what"]: k for k in ins.checks}["nr_memmap_pages delta since the baseline"][
        "agree"]
    assert "DIFFER" in ins.table()


def test_nothing_device_dax_reads_well(tmp_path):
    base_tree(tmp_path, "6.1.0-30-amd64", "", False, {"nr_free_pages": 1}, {"MemTotal": 1 << 20})
    ins = inspect(tmp_path)
    text = ins.table()
    assert "no device-dax devices here" in text
    assert "not reported (the counters exist from 6.11)" in text
    # a 6.1.y release gets the 6.1 variant (kernels.py: Debian bookworm's 6.1)
    assert ins.kernel == "6.1" and ins.direct_map == "2m" and ins.pdpe1gb is False
    # what a GiB of 2 MiB pages would keep: 4096 without HVO; 512 + 8 PTE tables with it
    h2 = next(h for h in ins.hugetlb if h["size"] == 2 << 20)
    assert h2["per_gib"] == {"count": 512, "hvo_on_pages": 520, "hvo_off_pages": 4096,
                             "why_not": None}
    # 1 GiB HugeTLB pages need pdpe1gb: named, not planned
    h1 = next(h for h in ins.hugetlb if h["size"] == 1 << 30)
    assert "pdpe1gb" in h1["why_no_plan"]
    assert "/proc/sys/vm/hugetlb_optimize_vmemmap" in ins.not_read


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_named_and_strict_fails(tmp_path, capsys):
    base_tree(tmp_path, "6.12.117", "", True, {"nr_memmap_pages": 0}, {"MemTotal": 1 << 20})
    p = tmp_path / "proc/vmstat"
    p.chmod(0)
    ins = inspect(tmp_path)
    assert ins.not_read["/proc/vmstat"].startswith("permission denied")
    assert main(["inspect", "--root", str(tmp_path), "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/proc/vmstat" in err


def test_unreadable_file_as_root(tmp_path, monkeypatch, capsys):
    """Root can read a 0000 file, so make reading fail the way EACCES does."""
    base_tree(tmp_path, "6.12.117", "", True, {"nr_memmap_pages": 0}, {"MemTotal": 1 << 20})
    real = Path.read_text

    def deny(self, *a, **k):
        if self.name == "vmstat":
            raise PermissionError(13, "Permission denied")
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", deny)
    ins = inspect(tmp_path)
    assert ins.not_read["/proc/vmstat"] == "permission denied (needs root)"
    assert ins.counters == {"nr_memmap_pages": None, "nr_memmap_boot_pages": None}
    assert main(["inspect", "--root", str(tmp_path), "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/proc/vmstat: cannot be read" in err


def test_malformed_file_is_one_line_exit_2(tmp_path, capsys):
    base_tree(tmp_path, "6.12.117", "", True, {"nr_memmap_pages": 0}, {"MemTotal": 1 << 20})
    write(tmp_path, "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "lots\n")
    with pytest.raises(InspectError, match="expected a number"):
        inspect(tmp_path)
    assert main(["inspect", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nr_hugepages" in err


def test_missing_root_is_one_line_exit_2(tmp_path, capsys):
    assert main(["inspect", "--root", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_json(tmp_path, capsys):
    before, after = _hugetlb_trees(tmp_path, 1)
    assert main(["inspect", "--root", str(after), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["counters"] == {"nr_memmap_boot_pages": 32768 - 8192, "nr_memmap_pages": 1024}
    assert d["kernel"] == "6.12.117" and d["direct_map"] == "gbpages"


def test_kernel_variants_from_release():
    assert kernel_variant("5.15.0-91-generic", None)[0] == "5.17"
    assert kernel_variant("5.19.0", None)[0] == "5.19"
    # 6.11+ without the 2026 fix: nr_memmap_pages counts the full memmap (variant 6.12)
    assert kernel_variant("6.12.100+deb12-amd64", "x memmap_pages_add")[0] == "6.12"
    assert kernel_variant("6.12.100+deb12-amd64", None)[0] == "6.12"
    # Debian bookworm (6.1.0-57 is 6.1.192) and 6.4-6.10 (no memmap counters before 6.11)
    assert kernel_variant("6.1.0-57-amd64", None)[0] == "6.1"
    assert kernel_variant("6.6.87", None)[0] == "6.6"
    assert kernel_variant("6.10.3", "T section_nr_vmemmap_pages")[0] == "6.6"
    assert kernel_variant("6.12.117+deb12-amd64", "T section_nr_vmemmap_pages")[0] == "6.12.117"
    assert "not read" in kernel_variant(None, None)[1]


def test_live_system_runs():
    """Whatever this machine is, inspect reads it without raising and names what it could not
    read (the output itself depends on the host and is not asserted)."""
    if not Path("/proc/vmstat").exists() or sys.platform != "linux":
        pytest.skip("not a Linux system")
    ins = inspect("/")
    assert ins.table().startswith("vmemlab inspect /")


def test_rebuild_tree_refuses_unknown_config_and_phase(tmp_path):
    r = load("linux-6.12.json")
    with pytest.raises(InspectError, match="no such configuration"):
        rebuild_tree(r, "16G-3M-mem", tmp_path, "before")
    with pytest.raises(InspectError, match="phase"):
        rebuild_tree(r, "16G-2M-mem", tmp_path, "during")
