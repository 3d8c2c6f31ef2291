"""vmemlab.viz.lifetimes and vmemlab.viz.bootstrap_view: chapters 10 and 06's figures."""

from __future__ import annotations

import vmemlab
from vmemlab.viz.bootstrap_view import init_writes_view, read_init
from vmemlab.viz.lifetimes import teardown_view


def test_teardown_view_draws_the_rows():
    rows = [{"removed": i, "tail_refcount": 4095 - 512 * i if i < 8 else 0, "tail_alive": i < 8,
             "head_alive": i == 0, "ram_pages": 22 - i} for i in range(9)]
    fig = teardown_view(rows)
    left, right = fig.axes
    assert [round(b.get_height()) for b in left.patches] == [r["tail_refcount"] for r in rows]
    notes = " ".join(t.get_text() for t in right.texts)
    assert "head page freed" in notes and "tail page freed" in notes


def test_init_writes_2m():
    # independent arithmetic (x86_64, 6.6, 2M): 512 struct pages in 8 vmemmap pages of 64;
    # compound_nr_pages = VMEMMAP_RESERVE_NR (2) x 4096 / 64 = 128 written; vmemmap pages 2-7
    # map vmemmap page 1's frame (the shared tail page)
    d = read_init(vmemlab.plan("4G", align="2M"))
    assert (d["total"], d["per_page"], d["written"]) == (512, 64, 128)
    assert [first for _, first in d["rows"]] == [0, 1, 1, 1, 1, 1, 1, 1]
    assert init_writes_view(vmemlab.plan("4G", align="2M")).axes


def test_init_writes_map_dev_writes_everything():
    # with the altmap nothing is deduplicated: every vmemmap page is its own page of the
    # 2 MiB device block, and all 512 struct pages are written
    d = read_init(vmemlab.plan("4G", align="2M", map="dev"))
    assert d["written"] == 512
    assert [first for _, first in d["rows"]] == list(range(8))
