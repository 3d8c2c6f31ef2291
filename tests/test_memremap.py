"""Bad input is refused the way the kernel refuses it, and the machine is left as it was."""

from __future__ import annotations

import subprocess
import sys

import pytest

import vmemlab
from vmemlab.frames import VmemAltmap
from vmemlab.machine import Machine
from vmemlab.memremap import PGMAP_ALTMAP_VALID, DevPagemap, memremap_pages, memunmap_pages

GiB, MiB = 1 << 30, 1 << 20
BASE = 64 * GiB


def mapped_machine() -> tuple[Machine, DevPagemap]:
    m = Machine("x86_64", "6.6", ram=4 * GiB)
    pg = DevPagemap(ranges=[(BASE, BASE + GiB)], vmemmap_shift=9, name="dax0.0")
    memremap_pages(m, pg)
    return m, pg


def refused(m: Machine, pgmap: DevPagemap, errno: str) -> vmemlab.KernelError:
    before = m.state()
    with pytest.raises(vmemlab.KernelError) as e:
        memremap_pages(m, pgmap)
    assert e.value.errno == errno, e.value
    assert m.state() == before, "a refused memremap_pages changed the machine"
    return e.value


def test_misaligned_range_is_einval():
    m, _ = mapped_machine()
    pg = DevPagemap(ranges=[(BASE + 4 * GiB + 4096, BASE + 5 * GiB)], vmemmap_shift=0)
    e = refused(m, pg, "EINVAL")
    assert "PAGES_PER_SUBSECTION" in str(e) and "__add_pages" in str(e)


def test_overlap_with_a_mapped_pgmap_is_refused():
    m, _ = mapped_machine()
    # first pfn inside dax0.0: pagemap_range's "Conflicting mapping in same section"
    e = refused(m, DevPagemap(ranges=[(BASE + 512 * MiB, BASE + 2 * GiB)], name="x"), "ENOMEM")
    assert "dax0.0" in str(e)
    # neither end inside dax0.0, but a middle subsection overlaps: fill_subsection_map -EEXIST
    m2 = Machine("x86_64", "6.6")
    memremap_pages(m2, DevPagemap(ranges=[(BASE + 64 * MiB, BASE + 66 * MiB)], name="small"))
    refused(m2, DevPagemap(ranges=[(BASE, BASE + 128 * MiB)], name="big"), "EEXIST")


def test_range_over_system_ram_is_enxio():
    m, _ = mapped_machine()
    refused(m, DevPagemap(ranges=[(2 * GiB, 6 * GiB)], name="ram"), "ENXIO")


def test_altmap_too_small_is_enomem_and_nothing_is_lost():
    m, _ = mapped_machine()
    start = BASE + 8 * GiB
    pfn = start >> 12
    # 4 GiB needs 32 PMD blocks of memmap = 16384 pages; give the altmap room for 10 blocks
    altmap = VmemAltmap(base_pfn=pfn, end_pfn=pfn + (4 * GiB >> 12), reserve=2, free=10 * 512)
    pg = DevPagemap(ranges=[(start, start + 4 * GiB)], altmap=altmap, flags=PGMAP_ALTMAP_VALID,
                    name="dev")
    e = refused(m, pg, "ENOMEM")
    assert "altmap" in str(e)
    assert altmap.alloc == 0


def test_ram_exhausted_is_enomem_and_nothing_is_lost():
    m = Machine("x86_64", "6.6", ram=1 * GiB)
    pg = DevPagemap(ranges=[(BASE, BASE + 128 * GiB)], vmemmap_shift=0, name="huge")
    refused(m, pg, "ENOMEM")


def test_beyond_max_physmem_bits_is_e2big():
    m = Machine("x86_64", "6.6")
    top = 1 << 46
    refused(m, DevPagemap(ranges=[(top - GiB, top + GiB)], name="far"), "E2BIG")


def test_unmapping_twice_is_refused():
    m, pg = mapped_machine()
    memunmap_pages(m, pg)
    before = m.state()
    with pytest.raises(vmemlab.KernelError):
        memunmap_pages(m, pg)
    assert m.state() == before


@pytest.mark.parametrize("kwargs, name", [
    ({"align": "3M"}, "align"),
    ({"arch": "sparc"}, "arch"),
    ({"kernel": "4.19"}, "kernel"),
    ({"map": "disk"}, "map"),
    ({"size": "lots"}, "size"),
    ({"size": "1M"}, "size"),
])
def test_plan_parameter_errors_name_the_parameter(kwargs, name):
    args = {"size": "16G", **kwargs}
    with pytest.raises(vmemlab.ParameterError) as e:
        vmemlab.plan(**args)
    assert e.value.name == name
    assert "allowed" in str(e.value)


def test_align_the_arch_does_not_offer_is_eopnotsupp():
    with pytest.raises(vmemlab.KernelError) as e:
        vmemlab.plan("16G", align="1G", arch="arm64-4k")
    assert e.value.errno == "EOPNOTSUPP" and "2M" in str(e.value)


def test_cli_errors_are_one_line_and_exit_2():
    r = subprocess.run([sys.executable, "-m", "vmemlab", "plan", "--size", "1T", "--align",
                        "3M"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "align" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "vmemlab", "plan", "--size", "1T", "--ram", "2G"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "ENOMEM" in r.stderr and "Traceback" not in r.stderr


def test_cli_json_has_the_documented_keys():
    import json

    r = subprocess.run([sys.executable, "-m", "vmemlab", "plan", "--size", "1T", "--align", "2M",
                        "--map", "mem", "--json"], capture_output=True, text=True, check=True)
    d = json.loads(r.stdout)
    assert d["ram_data_pages"] * 4096 == 4 * GiB  # cover letter: 4G per TiB at 2M
    assert d["optimised"] is True


def test_import_pulls_in_no_plotting_or_widgets():
    """The engine stays importable without matplotlib/ipywidgets (the layer rule); how long the
    import takes is measured by benchmarks/bench_import.py, not asserted here."""
    code = "import sys, vmemlab; print('matplotlib' in sys.modules, 'ipywidgets' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("kernel", ["6.6", "6.12.117"])
def test_failed_hot_add_restores_the_memmap_counter(kernel):
    """A hot-add that runs out of RAM part way is undone section by section; the undo must take
    back exactly what activation added to nr_memmap_pages (the deduplicated count on
    6.12.117, which needs the pgmap on the deactivation path)."""
    m = Machine("x86_64", kernel, ram=GiB)
    m.ram.capacity = m.ram.used + 40  # room for a few sections' page tables and data
    pg = DevPagemap(ranges=[(BASE, BASE + 4 * GiB)], vmemmap_shift=18, name="big")
    refused(m, pg, "ENOMEM")
    assert m.vmstat["nr_memmap_pages"] == 0
