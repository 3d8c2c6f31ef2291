"""vmemlab.viz.vmemmap_overview: chapter 01's picture reads sections, slices and backing pages
from the machine."""

from __future__ import annotations

from vmemlab.machine import Machine
from vmemlab.memremap import DevPagemap, memremap_pages
from vmemlab.viz.vmemmap_overview import read_sections, vmemmap_overview


def _machine() -> Machine:
    m = Machine("x86_64", "6.6", ram="1G")
    memremap_pages(m, DevPagemap(ranges=[(4 << 30, (4 << 30) + (6 << 20))], name="dax0.0"))
    return m


def test_sections_slices_and_backing():
    items = read_sections(_machine(), max_sections=10)
    gaps = [it for it in items if "gap" in it]
    present = [it for it in items if "gap" not in it]
    # independent arithmetic: 1 GiB of boot RAM = 8 sections of 128 MiB (0-7); 4 GiB is
    # section 32, so 24 absent sections between; 6 MiB = 3 subsections of 2 MiB
    assert [it["nr"] for it in present] == list(range(8)) + [32]
    assert gaps == [{"gap": 24, "left_out": 0}]
    ram, dev = present[0], present[-1]
    # a full section's memmap: 32768 x 64 B = 2 MiB, one PMD block of 512 pages
    assert ram["vmemmap"] == (0, 2 << 20)
    assert ram["backing"] == [{"kind": "block", "frame": ram["backing"][0]["frame"], "home": 0,
                               "pages": 512}]
    # 3 subsections x 512 pages x 64 B = 96 KiB = 24 base pages through one PTE table
    assert dev["subsections"] == 3 and dev["vmemmap"][1] - dev["vmemmap"][0] == 96 << 10
    assert [(b["kind"], b["pages"]) for b in dev["backing"]] == [("ptes", 24)]


def test_many_sections_are_elided():
    m = Machine("x86_64", "6.6", ram="4G")  # 32 sections
    items = read_sections(m, max_sections=6)
    assert sum("gap" not in it for it in items) == 6
    assert [it for it in items if "gap" in it] == [{"gap": 26, "left_out": 26}]


def test_figure_draws():
    fig = vmemmap_overview(_machine())
    assert fig.axes and repr(fig).startswith("<Figure size")
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "PTE table" in texts and "section 32" in texts
