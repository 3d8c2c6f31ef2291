"""vmemlab.widgets.tasks: the explorers' questions, answers computed from the model, checked
against independent arithmetic and the cover letter."""

from __future__ import annotations

import pytest

from vmemlab import exercises
from vmemlab.widgets import tasks


def test_smallest_saving_order_is_8_on_x86_64():
    # vmemmap_populate_compound_pages keeps the head's vmemmap page and one tail page
    # (VMEMMAP_RESERVE_NR = 2); 64 struct pages per 4 KiB page: order 7 = 2 vmemmap pages
    # (nothing to save), order 8 = 4 (2 saved)
    t = tasks.smallest_saving_order()
    assert t.answers == (8,)
    assert t.check(8).correct is True
    assert t.check(7).correct is False
    assert t.check(None).correct is None
    assert "saves 2" in t.explanation and "order 7 has 2 and saves 0" in t.explanation


def test_map_dev_ram_size_is_the_largest_partial_section():
    # arch/x86/mm/init_64.c vmemmap_populate(): below PAGES_PER_SECTION of memmap it calls
    # vmemmap_populate_basepages(start, end, node, NULL): no altmap.  Of the sizes offered,
    # 16M is the largest below one 128 MiB section
    t = tasks.map_dev_ram_size()
    assert t.answers == ("16M",)
    assert t.check("16M").correct and not t.check("128M").correct
    # 16 MiB / 4 KiB x 64 B = 64 pages of struct pages in RAM
    assert "its 64 struct-page pages" in t.explanation


def test_no_fake_head_kernels():
    # 5.14-5.17 HVO keeps two vmemmap pages (no fake heads); 5.18 "free the 2nd vmemmap page"
    # keeps one, remapping onto the head's page: 7 fake heads for a 2 MiB page (8 - 1)
    t = tasks.no_fake_head_kernels()
    assert "5.17" in t.answers and "6.6" not in t.answers and "5.19" not in t.answers
    assert "6.6 7" in t.explanation


def test_own_tail_page_order_and_least_ram():
    assert tasks.own_tail_page_order().answers == (7,)  # 128 x 64 B = 2 pages of 4 KiB
    # cover letter: v3's PMD reuse "40M -> 16M per Tb" at 1G: v3 spends the least
    t = tasks.least_ram_kernel()
    assert t.answers == ("v3",)


def test_live_feedback_follows_the_explorer():
    pytest.importorskip("ipywidgets")
    t = tasks.smallest_saving_order()
    assert t.ui is not None  # builds the explorer's widget too
    assert "data-solved='0'" in t.feedback.value
    t.explorer.update(order=8)
    assert "data-solved='1'" in t.feedback.value and "Found: order = 8" in t.feedback.value
    t.explorer.update(order=9)
    assert "data-solved='0'" in t.feedback.value


def test_solutions_hidden_unless_asked():
    t = tasks.smallest_saving_order()
    exercises.show_solutions(False)
    assert "Solution" not in t.check(5).message
    exercises.show_solutions(True)
    try:
        assert "Solution: 8" in t.check(5).message
    finally:
        exercises.show_solutions(False)


def test_hvo_without_dax_dedup_is_5_17():
    # kernels.py: 5.17 = compound devmaps without vmemmap deduplication, while HVO (5.14)
    # already freed 6 of 8 vmemmap pages (keeping 2 until 5.18)
    t = tasks.hvo_without_dax_dedup()
    assert t.answers == ("5.17",)
    assert "device-dax saves 0, HVO 6" in t.explanation


def test_fewer_gup_atomics_only_v3():
    # cover letter: the series' "grab head page refcount once" turns 8388608 atomics
    # (16 GiB / 4 KiB = 4194304 subpages x 2) into 16384 (8192 2M pages x 2); mainline kept
    # the per-subpage loop in __gup_device_huge
    t = tasks.fewer_gup_atomics()
    assert t.answers == ("v3",)
    assert "8388608 → 16384" in t.explanation


def test_first_dedup_order_ppc64_64k():
    # ppc64 64K: 64 KiB / 64 B = 1024 struct pages per vmemmap page; vmemmap_can_optimize
    # needs more than VMEMMAP_RESERVE_NR = 2 vmemmap pages: > 2048 struct pages, order 12
    t = tasks.first_dedup_order()
    assert t.answers == (12,)
