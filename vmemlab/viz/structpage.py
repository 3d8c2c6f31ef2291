"""Diagram 4: struct pages of one compound page, field by field, read from the model.

Columns are the head, the first and second tail pages (which carry the compound metadata in
the kernel's union), a tail in the first reused vmemmap page and the last tail; rows are their
fields, read with :func:`vmemlab.page.read_field` -- i.e. through the vmemmap, so an aliased
tail shows exactly what the page it shares a physical page with holds.  The last row says which
physical page and slot each struct page was read from (``m.pgtables.resolve_pfn``).
"""

from __future__ import annotations

import numpy as np
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .. import page as P
from ..memremap import pgmap_vmemmap_nr
from ._style import C_REUSED, C_VIRT, FONT, OKABE_ITO, ShownFigure
from .adapters import Source, as_source, is_hvo_source, read_mapping, source_label

#: fields shown per role and ``vmemlab.page.layout_key``; names are page.py's dtype names
ROLE_FIELDS: dict[str, dict[str, list[str]]] = {
    "head": {"*": ["flags", "pgmap", "mapping", "index", "_mapcount", "_refcount"]},
    "tail1": {
        "folio": ["_flags_1", "_head_1", "_entire_mapcount", "_nr_pages_mapped", "_pincount",
                  "_folio_nr_pages"],
        "5.18": ["flags", "compound_head", "compound_dtor", "compound_order",
                 "compound_mapcount", "compound_pincount", "compound_nr"],
        "5.17": ["flags", "compound_head", "compound_dtor", "compound_order",
                 "compound_mapcount", "compound_nr"],
    },
    "tail2": {
        "folio": ["_flags_2", "_head_2", "_deferred_list_next", "_deferred_list_prev"],
        "5.18": ["flags", "compound_head", "deferred_list_next", "deferred_list_prev"],
        "5.17": ["flags", "compound_head", "hpage_pinned_refcount", "deferred_list_next"],
    },
    "tail": {"*": ["flags", "compound_head", "mapping", "_mapcount", "_refcount"]},
}

#: a HugeTLB page is not ZONE_DEVICE: word 1 of its head is ``lru.next`` (``pgmap`` is the
#: device-page member of that union) and its page 2 holds the HugeTLB members of the union --
#: 6.2-6.11 ``_hugetlb_subpool`` .. ``_hugetlb_hwpoison`` (dad6a5eb5556); <= 6.1 page[2].private
#: is the cgroup (``SUBPAGE_INDEX_CGROUP``); 6.12 moved them to page[3], so page 2 shows
#: ``_deferred_list``.  The HugeTLB mark is the head's ``page_type`` from 6.6.y.
HUGETLB_ROLE_FIELDS: dict[str, dict[str, list[str]]] = {
    "head": {"folio": ["flags", "lru_next", "mapping", "index", "page_type", "_refcount"],
             "*": ["flags", "lru_next", "mapping", "index", "_mapcount", "_refcount"]},
    "tail2": {"folio": ["_flags_2", "_head_2", "_hugetlb_subpool", "_hugetlb_cgroup",
                        "_hugetlb_cgroup_rsvd", "_hugetlb_hwpoison"],
              "6.12": ["_flags_2", "_head_2", "_deferred_list_next", "_deferred_list_prev"],
              "5.18": ["flags", "compound_head", "private"],
              "5.17": ["flags", "compound_head", "private"]},
}

SIGNED = {"_mapcount", "_refcount", "_entire_mapcount", "_nr_pages_mapped", "_pincount",
          "compound_mapcount", "compound_pincount", "hpage_pinned_refcount"}


def _fmt(name: str, v: int) -> str:
    v = int(v)
    if name in SIGNED or name.endswith(("order", "dtor", "nr", "nr_pages")):
        return str(v)
    return f"{v:#x}"


def struct_page_columns(head: int, nr: int, per: int) -> list[tuple[str, int, str]]:
    """``(label, pfn, role)`` of the struct pages shown for the compound page at ``head`` with
    ``nr`` pages, ``per`` struct pages per vmemmap page."""
    cols = [("head\n(page 0)", head, "head")]
    if nr > 1:
        cols.append(("page 1\n(first tail)", head + 1, "tail1"))
    if nr > 2:
        cols.append(("page 2\n(second tail)", head + 2, "tail2"))
    for k in (1, 2):
        if nr > k * per and k * per > 2:
            cols.append((f"page {k * per}\n(vmemmap page {k}, slot 0)", head + k * per, "tail"))
    if nr - 1 > max(2, 2 * per):
        cols.append((f"page {nr - 1}\n(last tail)", head + nr - 1, "tail"))
    return cols


def struct_page_view(src: Source, index: int = 0) -> Figure:
    """Field values of the head, first/second tails and later tails of one compound page,
    read through the vmemmap (needs :mod:`vmemlab.page`).

    :param src: a :class:`~vmemlab.plan.Plan` / ``(machine, pgmap)`` (device-dax compound page
        ``index``) or ``(machine, HugetlbFolio)`` (a HugeTLB page, e.g. after HVO: the first
        struct page of each remapped vmemmap page then shows as a *fake head*)
    """
    if is_hvo_source(src):
        m, folio = src
        head, nr = int(folio.head_pfn), int(folio.nr_pages)
        what = (f"HugeTLB page at pfn {head:#x}{' (HVO)' if folio.optimized else ''}\n"
                f"{m.arch.name} · kernel {m.kernel.name}")
    else:
        m, pgmap = as_source(src)
        nr = pgmap_vmemmap_nr(pgmap)
        head = (pgmap.ranges[0][0] >> m.arch.page_shift) + index * nr
        what = f"device-dax compound page #{index}\n{source_label(m, pgmap)}"
    cols = struct_page_columns(head, nr, m.arch.STRUCT_PAGES_PER_PAGE)
    layout = P.layout_key(m.kernel)
    exact = P.struct_layout_name(m.kernel)
    hugetlb = is_hvo_source(src)

    def role_fields(role: str) -> list[str]:
        table = ROLE_FIELDS[role]
        if hugetlb and role in HUGETLB_ROLE_FIELDS:
            table = HUGETLB_ROLE_FIELDS[role]
        for key in (exact, layout, "*"):
            if key in table:
                return table[key]
        return []

    names: list[str] = []
    for _, _, role in cols:
        for f in role_fields(role):
            if f not in names:
                names.append(f)
    st = P.struct_pages(m)
    names = [n for n in names if n in st.dtype.names]
    cells: list[list[str]] = []
    colours: list[list[str]] = []
    for n in names:
        row, crow = [], []
        for _, pfn, role in cols:
            shown = n in role_fields(role)
            row.append(_fmt(n, P.read_field(m, pfn, n)[0]) if shown else "")
            crow.append("white" if shown else "#F4F4F4")
        cells.append(row)
        colours.append(crow)
    # where each struct page physically is
    sps, ps = m.arch.struct_page_size, m.arch.page_shift
    pfns = np.array([pfn for _, pfn, _ in cols], np.int64)
    vpns = (pfns * sps) >> ps
    mp = read_mapping(m, vpns)
    where, wcol = [], []
    first_vpn = int((pfns[0] * sps) >> ps)
    for i, pfn in enumerate(pfns.tolist()):
        slot = (pfn * sps % (1 << ps)) // sps
        fid = int(mp.frame[i])
        where.append(f"vmemmap page {int(vpns[i]) - first_vpn}\n→ frame #{fid} "
                     f"slot {slot}")
        rc = int(m.frames.refcount[fid]) if fid >= 0 else 0
        wcol.append(C_REUSED if rc > 1 and int(m.frames.order[fid]) == 0 else C_VIRT)
    flags = []
    for _, pfn, _ in cols:
        pg = P.pfn_to_page(m, pfn)
        kind = "PageHead" if P.PageHead(pg) else "PageTail" if P.PageTail(pg) else "-"
        if P.page_is_fake_head(pg):
            kind += " (fake head)"
        flags.append(f"{kind}\ncompound_head: page {P.compound_head(pg).pfn - pfns[0]:+d}")
    cells = [flags] + cells + [where]
    colours = [["#EAF2FA"] * len(cols)] + colours + [wcol]
    rows = ["PageHead / compound_head()"] + names + ["read through"]
    header = ["field"] + [c[0] for c in cols]
    grid_text = [header] + [[r] + c for r, c in zip(rows, cells)]
    grid_col = [[OKABE_ITO["sky"]] * len(header)] + [["#EEEEEE"] + c for c in colours]
    nrow, ncol = len(grid_text), len(header)
    widths = np.array([1.3] + [1.0] * len(cols))
    xs = np.concatenate(([0.0], np.cumsum(widths)))
    heights = np.array([1.4 if "\n" in "".join(r) else 1.0 for r in grid_text])
    ys = np.concatenate(([0.0], np.cumsum(heights)))
    # wide enough for the two-line title and the three-line caption even with few columns
    fig_h = 0.3 * ys[-1] + 1.35
    fig = ShownFigure(figsize=(max(1.9 * len(cols) + 2.4, 6.6), fig_h))
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.005, top=1 - 1.2 / fig_h)
    ax = fig.add_subplot()
    ax.set_axis_off()
    # one artist for all cell backgrounds and borders, texts only where there is something
    rects = [Rectangle((xs[c], ys[r]), widths[c], heights[r]) for r in range(nrow)
             for c in range(ncol)]
    ax.add_collection(PatchCollection(rects, facecolors=[grid_col[r][c] for r in range(nrow)
                                                         for c in range(ncol)],
                                      edgecolors="black", linewidths=0.6, gid="cells"))
    for r in range(nrow):
        for c in range(ncol):
            t = grid_text[r][c]
            if not t:
                continue
            ax.text(xs[c] + (0.08 if c == 0 and r else widths[c] / 2), (ys[r] + ys[r + 1]) / 2,
                    t, ha="left" if c == 0 and r else "center", va="center",
                    fontsize=FONT - 1, family="monospace" if c == 0 and r else None,
                    weight="bold" if r == 0 else None, gid=f"cell:{r}:{c}")
    ax.set_xlim(-0.02, xs[-1] + 0.02)
    ax.set_ylim(ys[-1] + 0.05, -0.05)
    fig.suptitle(f"struct pages of {what}", fontsize=FONT + 2, weight="bold",
                 y=1 - 0.08 / fig.get_figheight(), va="top")
    fig.text(0.5, 1 - 0.47 / fig.get_figheight(),
             f"layout {layout!r}, read through the vmemmap with vmemlab.page.read_field\n"
             "grey: field not meaningful for that page\nvermillion: read through a vmemmap page "
             "several PTEs share", ha="center", va="top", fontsize=FONT)
    return fig
