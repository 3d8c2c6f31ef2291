"""vmemlab.viz.pipeline: the create-namespace pipeline figure carries the numbers of its run."""

from __future__ import annotations

import vmemlab
from vmemlab.viz.pipeline import pipeline_stages, pipeline_view


def _texts(fig) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts) + fig.axes[0].get_title()


def test_16g_2m_map_mem_numbers():
    p = vmemlab.plan("16G", align="2M", map="mem")
    st = {s.function: s.numbers for s in pipeline_stages(p)}
    assert list(st) == ["nd_pfn_init", "memremap_pages", "section_activate",
                        "vmemmap_populate*", "memmap_init_zone_device"]
    # independent arithmetic: 16 GiB / 4 KiB = 4194304 pfns; / 128 MiB sections = 128, all
    # full, 64 subsections each; 2 MiB compound pages: 16G / 2M = 8192
    assert st["memremap_pages"]["pfns"] == 16 << 18
    assert st["memremap_pages"]["compound_pages"] == 8192
    assert st["memremap_pages"]["vmemmap_shift"] == 9
    assert st["section_activate"] == {"sections": 128, "full_sections": 128,
                                      "subsections": 128 * 64}
    # 4194304 struct pages x 64 B / 4096 = 65536 vmemmap pages; the cover letter's tail reuse
    # keeps 2 of the 8 per 2M compound page: 8192 x 2 = 16384 physical pages
    v = st["vmemmap_populate*"]
    assert v["vmemmap_pages"] == 65536 and v["physical_pages"] == 16384
    assert v["ram_data_pages"] == 16384 and v["device_pages"] == 0 and v["pmd_leaf_pages"] == 0
    # memmap_init_compound writes the struct pages of the first 2 vmemmap pages
    # (compound_nr_pages: 2 * PAGE_SIZE / sizeof(struct page) = 128) of each compound page
    assert st["memmap_init_zone_device"]["struct_pages_initialised"] == 8192 * 128
    # nd_pfn_init with --map=mem: 8 KiB info block, data offset aligned to 2 MiB
    assert st["nd_pfn_init"]["dataoff"] == 2 << 20
    text = _texts(pipeline_view(p))
    for s in ("8192 compound pages", "128 sections", "65536 vmemmap pages mapped",
              "backed by 16384 physical pages", "1048576 struct pages written",
              "vmemmap_populate_compound_pages"):
        assert s in text, s


def test_partial_section_map_dev_populates_basepages_in_ram():
    # arch/x86/mm/init_64.c vmemmap_populate(): less than a section's memmap goes to
    # vmemmap_populate_basepages(start, end, node, NULL) -- no altmap -- so --map=dev puts this
    # 16 MiB namespace's struct pages in RAM: 4096 pfns x 64 B = 64 pages
    p = vmemlab.plan("16M", align="2M", map="dev")
    st = {s.function: s for s in pipeline_stages(p)}
    assert st["section_activate"].numbers == {"sections": 1, "full_sections": 0,
                                              "subsections": 8}
    v = st["vmemmap_populate*"]
    assert v.numbers["vmemmap_pages"] == 64 and v.numbers["ram_data_pages"] == 64
    assert v.numbers["device_pages"] == 0
    assert v.lines[0] == "vmemmap_populate_basepages"


def test_1g_map_dev_uses_the_device():
    # a full section with an altmap: PMD blocks from the device, 2 MiB per 128 MiB section
    p = vmemlab.plan("1G", align="2M", map="dev")
    v = {s.function: s for s in pipeline_stages(p)}["vmemmap_populate*"]
    assert v.numbers["ram_data_pages"] == 0
    assert v.numbers["device_pages"] == 8 * 512
    assert v.numbers["pmd_leaf_pages"] == 8 * 512
    assert v.lines[0] == "vmemmap_populate_hugepages"
