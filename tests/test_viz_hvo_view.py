"""vmemlab.viz.hvo_view: HVO before/after, numbers read from the two machines."""

from __future__ import annotations

from vmemlab.viz.hvo_view import hvo_before_after, hvo_run


def test_2m_6_6_before_after():
    r = hvo_run("6.6", "2M")
    n = r.numbers
    # 512 struct pages x 64 B = 8 vmemmap pages, 8 distinct pages of the boot PMD block before;
    # 5.18+ keeps one (mm/hugetlb_vmemmap.c HUGETLB_VMEMMAP_RESERVE_SIZE = PAGE_SIZE) and
    # remaps 7 read-only onto it, freeing 7; one PTE table for the PMD split
    assert (n["vmemmap_pages"], n["frames_before"], n["frames_after"]) == (8, 8, 1)
    assert (n["kept"], n["remapped_ro"], n["freed"], n["split_tables"]) == (1, 7, 7, 1)
    # RAM: 7 freed, 1 table allocated
    assert n["ram_used_before"] - n["ram_used_after"] == 7 - 1
    # vmemmap_remap_pte() writes the PTE without get_page (6.1.192 mm/hugetlb_vmemmap.c):
    # 8 PTEs map the kept page, its page_count stays 1
    assert n["reused_maps"] == 8 and n["reused_page_count"] == 1


def test_5_17_keeps_two_and_1g():
    # 5.14-5.17 kept two vmemmap pages (head + first tail page), pages 2.. map page 1
    n = hvo_run("5.17", "2M").numbers
    assert (n["kept"], n["frames_after"], n["freed"], n["reused_maps"]) == (2, 2, 6, 7)
    # 1 GiB: 262144 x 64 B = 4096 vmemmap pages over 8 PMD blocks -> 8 split tables
    n = hvo_run("6.6", "1G").numbers
    assert (n["vmemmap_pages"], n["freed"], n["split_tables"]) == (4096, 4095, 8)


def test_figure_text_carries_the_run():
    fig = hvo_before_after(kernel="6.6", size="2M")
    text = "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)
    titles = "\n".join(ax.get_title() for ax in fig.axes)
    assert "page_count() is 1" in text and "mapped by 8 PTEs" in text
    assert "7 freed" in text and "1 PTE table(s)" in text
    assert "8 vmemmap pages → 8 physical pages" in titles
    assert "8 vmemmap pages → 1 physical pages" in titles
