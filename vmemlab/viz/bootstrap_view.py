"""Chapter 06's picture: which struct pages of one compound page initialisation writes.

One row per vmemmap page of the compound page's memmap, one cell per struct page in it.  Read
from the model: the count ``memmap_init_compound`` wrote for this pgmap
(``pgmap.init_stats[...].struct_pages_per_compound``, i.e. ``compound_nr_pages``), and the
physical page behind each vmemmap page (``m.pgtables.resolve``): struct pages past the written
ones that sit in a vmemmap page mapped to an already written page read as initialised without
being written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from ._style import C_MUTED, C_OWN, C_REUSED, C_VIRT, FONT, new_figure, place
from .adapters import as_source

if TYPE_CHECKING:
    from ..plan import Plan

_COLOURS = {"head": "#000000", "written": C_OWN, "shared": C_REUSED, "unwritten": C_VIRT}
_LABELS = {"head": "head (written)", "written": "tail, written",
           "shared": "tail, not written: read through the shared page", "unwritten": "not written"}


def read_init(p: Plan, compound: int = 0) -> dict:
    """For compound page ``compound`` of plan ``p``: ``per_page`` (struct pages per vmemmap
    page), ``written`` (struct pages ``memmap_init_compound`` writes), ``total`` (struct pages
    of the compound page) and ``rows``: per vmemmap page ``(frame, first vmemmap page mapping
    the same physical page)`` (a PMD block is one frame of many pages: its pages differ)."""
    m, pg = as_source(p)
    a = m.arch
    st = pg.init_stats[0]
    nr = 1 << pg.vmemmap_shift
    per_page = a.PAGE_SIZE // a.struct_page_size
    head_pfn = (pg.ranges[0][0] >> a.page_shift) + compound * nr
    v0 = head_pfn * a.struct_page_size >> a.page_shift
    nv = max(1, nr * a.struct_page_size // a.PAGE_SIZE)
    frames, sub = m.pgtables.resolve(np.arange(v0, v0 + nv, dtype=np.int64))
    first: dict[tuple[int, int], int] = {}
    rows = []
    for i, key in enumerate(zip(frames.tolist(), sub.tolist())):  # a page inside a frame
        first.setdefault(key, i)
        rows.append((key[0], first[key]))
    return {"per_page": per_page, "written": int(st.struct_pages_per_compound), "total": nr,
            "rows": rows}


def init_writes_view(p: Plan, compound: int = 0, max_rows: int = 12) -> Figure:
    """Draw compound page ``compound``'s struct pages by vmemmap page: written by
    ``memmap_init_compound`` (head, tails), or not written and read through a vmemmap page
    that maps an already written page.  Long memmaps show their first ``max_rows - 1`` vmemmap
    pages and the last."""
    d = read_init(p, compound)
    per, written, rows = d["per_page"], d["written"], d["rows"]
    idx: list[int | None] = list(range(len(rows)))
    if len(idx) > max_rows:
        idx = idx[: max_rows - 2] + [None, len(rows) - 1]
    fig = new_figure(9.5, 0.34 * len(idx) + 1.5)
    ax = fig.add_subplot()
    ax.set_axis_off()
    cell = 8.0 / per
    seen: set[str] = set()
    for y, i in enumerate(idx):
        yy = len(idx) - 1 - y
        if i is None:
            ax.text(4.0, yy + 0.4, f"... {len(rows) - max_rows + 1} more vmemmap pages like the "
                    f"next one ...", ha="center", va="center", fontsize=FONT - 1, color=C_MUTED)
            continue
        frame, first = rows[i]
        for j in range(per):
            sp = i * per + j
            if sp == 0:
                kind = "head"
            elif sp < written:
                kind = "written"
            elif first != i:
                kind = "shared"
            else:
                kind = "unwritten"
            seen.add(kind)
            place(ax, Rectangle((j * cell, yy), cell, 0.8, fc=_COLOURS[kind], ec="white",
                                   lw=0.2))
        where = "own page" if first == i else f"maps vmemmap page {first}'s page"
        ax.text(-0.1, yy + 0.4, f"vmemmap page {i}", ha="right", va="center", fontsize=FONT - 1)
        ax.text(8.1, yy + 0.4, where, ha="left", va="center", fontsize=FONT - 1)
    ax.set_xlim(-2.2, 10.6)
    ax.set_ylim(-1.2, len(idx) + 0.2)
    ax.set_title(f"one compound page of {d['total']} struct pages: memmap_init_compound writes "
                 f"{written}", fontsize=FONT + 1)
    ax.legend(handles=[Patch(fc=_COLOURS[k], ec=C_MUTED if k == "unwritten" else None,
                             label=_LABELS[k]) for k in _COLOURS if k in seen],
              loc="lower center", bbox_to_anchor=(0.5, -0.02), ncol=4, fontsize=FONT - 1,
              frameon=False)
    return fig
