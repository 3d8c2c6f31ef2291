"""Diagram 1: one compound page's vmemmap pages and the physical pages they map.

In the spirit of the pictures in ``Documentation/mm/vmemmap_dedup.rst``: the compound page's
virtual vmemmap pages on the left, the frames they map on the right, one arrow per mapping read
from the page tables (``m.pgtables.resolve``).  A page several vmemmap pages map (the reused
tail page of device-dax, the head page of HVO) is highlighted.  Long runs are elided with a
single arrow labelled with the number of PTEs it stands for, so a 1 GiB compound page (4096
vmemmap pages on x86_64) stays readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Patch, Rectangle

from ..hugetlb_vmemmap import vmemmap_page_count
from ..memremap import pgmap_vmemmap_nr
from ..units import format_size
from ._style import C_DEVICE, C_MUTED, C_OWN, C_REUSED, C_VIRT, FONT, new_figure, place
from .adapters import (
    Mapping,
    Source,
    as_source,
    compound_vpns,
    frame_label,
    hvo_span,
    pte_read_only,
    read_mapping,
    source_label,
)

if TYPE_CHECKING:
    from ..machine import Machine

DEVICE_HOME = 1
X_L0, X_L1, X_R0, X_R1 = 0.0, 2.7, 4.6, 8.4


@dataclass
class _Item:
    """One row of the left column: a single vmemmap page or an elided run ``[lo, hi)``."""

    lo: int
    hi: int

    @property
    def elided(self) -> bool:
        return self.hi - self.lo > 1


def _runs(mp: Mapping) -> list[tuple[int, int]]:
    """Maximal runs of rows that map the same physical page, or consecutive pages of one frame."""
    f, s = mp.frame.tolist(), mp.sub.tolist()
    runs: list[tuple[int, int]] = []
    lo, step = 0, None
    for i in range(1, len(f)):
        st = None
        if f[i] == f[i - 1]:
            st = "same" if s[i] == s[i - 1] else ("next" if s[i] == s[i - 1] + 1 else None)
        if st is None or (step is not None and st != step):
            runs.append((lo, i))
            lo, step = i, None
        else:
            step = st
    runs.append((lo, len(f)))
    return runs


def _items(mp: Mapping, max_rows: int) -> list[_Item]:
    """Rows to draw: everything when it fits, else each long run as first two / "…" / last."""
    n = mp.vpns.size
    if n <= max_rows:
        return [_Item(i, i + 1) for i in range(n)]
    per_run: list[list[_Item]] = []
    for lo, hi in _runs(mp):
        if hi - lo <= 4:
            per_run.append([_Item(i, i + 1) for i in range(lo, hi)])
        else:
            per_run.append([_Item(lo, lo + 1), _Item(lo + 1, lo + 2), _Item(lo + 2, hi - 1),
                            _Item(hi - 1, hi)])
    items = [it for run in per_run for it in run]
    if len(items) > max_rows and len(per_run) > 3:
        head = [it for run in per_run[:2] for it in run]
        mid_lo = per_run[2][0].lo
        mid_hi = per_run[-1][0].lo
        items = head + [_Item(mid_lo, mid_hi)] + per_run[-1]
    return items


def _struct_range(mp: Mapping, row: int, first_byte: int, nr: int, sps: int,
                  page: int) -> tuple[int, int]:
    """Struct-page indices (inside the compound page) that vmemmap page ``row`` holds."""
    b0 = int(mp.vpns[row]) * page
    lo = max(0, (b0 - first_byte) // sps)
    hi = min(nr, (b0 + page - first_byte) // sps)
    return lo, hi - 1


def draw_mapping(ax: Axes, mp: Mapping, m: Machine, *, first_byte: int, nr: int, max_rows: int = 14,
                 title: str = "", reuse_word: str = "reused",
                 ro: np.ndarray | None = None) -> dict[str, int]:
    """Draw ``mp`` (from :func:`~vmemlab.viz.adapters.read_mapping`) on ``ax``.

    Returns counts of what was drawn: ``rows``, ``arrows`` (single-PTE arrows), ``elided``
    (arrows standing for several PTEs) and ``frames``.  Artists carry gids:
    ``pte:<vpn>:<frame>:<own|reuse>``, ``elided:<count>:<frame>``, ``frame:<id>``,
    ``vpage:<vpn>``.
    """
    a = m.arch
    items = _items(mp, max_rows)
    ypos = {id(it): r for r, it in enumerate(items)}
    # right column: one box per frame (an order-0 page at its first row; a block spans its rows)
    frames: dict[int, list[float]] = {}
    group_rows: list[tuple[float, _Item]] = []
    for it in items:
        y = ypos[id(it)]
        fr = np.unique(mp.frame[it.lo:it.hi])
        if fr.size == 1:
            frames.setdefault(int(fr[0]), []).append(y)
        else:
            group_rows.append((y, it))
    counts = {"rows": len(items), "arrows": 0, "elided": 0, "frames": 0}
    reuse_frames = set(mp.frame[mp.reused].tolist())
    box: dict[int, tuple[float, float]] = {}
    for fid, ys in frames.items():
        if fid < 0:
            continue
        block = int(m.frames.order[fid]) > 0
        y0, y1 = (min(ys), max(ys)) if block else (ys[0], ys[0])
        box[fid] = (y0, y1)
        dev = int(m.frames.home[fid]) == DEVICE_HOME
        color = C_REUSED if fid in reuse_frames else (C_DEVICE if dev else C_OWN)
        rect = Rectangle((X_R0, y0 - 0.38), X_R1 - X_R0, y1 - y0 + 0.76, facecolor=color,
                         edgecolor="black", lw=0.8, alpha=0.9, hatch="//" if dev else None,
                         gid=f"frame:{fid}")
        place(ax, rect)
        sel = mp.frame == fid
        nmaps = int(sel.sum())
        rc = vmemmap_page_count(m, fid)  # HVO's remapped PTEs hold no reference
        if block:
            subs = mp.sub[sel]
            how = "PMD leaf" if mp.leaf[sel].all() else "PTEs"
            extra = f"its pages {int(subs.min())}–{int(subs.max())} mapped here ({how})"
        else:
            extra = f"refcount {rc} · mapped by {nmaps} vmemmap page{'s' * (nmaps != 1)}"
            if rc < nmaps:  # HVO: vmemmap_remap_pte maps without get_page
                extra += "\n(HVO remaps without taking references)"
        ax.text((X_R0 + X_R1) / 2, (y0 + y1) / 2, f"{frame_label(m, fid)}\n{extra}",
                ha="center", va="center", fontsize=FONT - 1,
                color="white" if color in (C_OWN, C_REUSED) else "black",
                bbox=None if color in (C_OWN, C_REUSED) else
                {"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.5})
        counts["frames"] += 1
    for y, it in group_rows:
        nfr = np.unique(mp.frame[it.lo:it.hi]).size
        place(ax, Rectangle((X_R0, y - 0.38), X_R1 - X_R0, 0.76, facecolor="white",
                               edgecolor=C_MUTED, ls="--", lw=0.8, gid=f"group:{nfr}"))
        ax.text((X_R0 + X_R1) / 2, y, f"… {nfr} more frames", ha="center", va="center",
                fontsize=FONT - 1, color="black")
    # left column and arrows
    page = a.PAGE_SIZE
    for it in items:
        y = ypos[id(it)]
        if it.elided:
            n = it.hi - it.lo
            fr = np.unique(mp.frame[it.lo:it.hi])
            fid = int(fr[0]) if fr.size == 1 else -2
            ty = y if fid not in box else (box[fid][0] if box[fid][0] == box[fid][1] else y)
            reused = bool(mp.reused[it.lo:it.hi].all())
            word = "PMD-mapped pages" if mp.leaf[it.lo:it.hi].all() else "PTEs"
            target = f"frame #{fid}" if fid >= 0 else f"{fr.size} frames"
            place(ax, Rectangle((X_L0, y - 0.38), X_L1 - X_L0, 0.76, facecolor="white",
                                   edgecolor=C_MUTED, ls="--", lw=0.8))
            ax.text((X_L0 + X_L1) / 2, y, f"… {n} more vmemmap pages\n{n} more {word} → {target}",
                    ha="center", va="center", fontsize=FONT - 1, style="italic",
                    color=C_REUSED if reused else "black")
            arr = FancyArrowPatch((X_L1, y), (X_R0, ty), arrowstyle="-|>", mutation_scale=10,
                                  color=C_REUSED if reused else C_MUTED, lw=1.6, ls="--",
                                  gid=f"elided:{n}:{fid}")
            place(ax, arr)
            counts["elided"] += 1
            continue
        r = it.lo
        vpn = int(mp.vpns[r])
        s0, s1 = _struct_range(mp, r, first_byte, nr, a.struct_page_size, page)
        what = f"struct pages {s0}–{s1}" if s1 > s0 else f"struct page {s0}"
        if s0 == 0:
            what += " (head)"
        place(ax, Rectangle((X_L0, y - 0.38), X_L1 - X_L0, 0.76, facecolor=C_VIRT,
                               edgecolor="black", lw=0.8, gid=f"vpage:{vpn}"))
        ax.text((X_L0 + X_L1) / 2, y, f"vmemmap page {vpn - int(mp.vpns[0])}\n{what}",
                ha="center", va="center", fontsize=FONT - 1)
        fid = int(mp.frame[r])
        if fid < 0:
            ax.text(X_L1 + 0.2, y, "not mapped", va="center", fontsize=FONT - 1, color=C_MUTED)
            continue
        y0, y1 = box[fid]
        ty = y0 if y0 == y1 else y
        reused = bool(mp.reused[r])
        rdonly = ro is not None and bool(ro[r])
        arr = FancyArrowPatch((X_L1, y), (X_R0, ty), arrowstyle="-|>", mutation_scale=10,
                              color=C_REUSED if reused else "black", lw=1.4 if reused else 1.0,
                              ls=(0, (5, 2)) if rdonly else "-",
                              gid=f"pte:{vpn}:{fid}:{'reuse' if reused else 'own'}"
                                  + (":ro" if rdonly else ""))
        place(ax, arr)
        counts["arrows"] += 1
    ax.set_xlim(-0.1, X_R1 + 0.1)
    ax.set_ylim(len(items) - 0.4, -1.1)
    ax.text((X_L0 + X_L1) / 2, -0.8, "virtual: vmemmap pages", ha="center", fontsize=FONT,
            weight="bold")
    ax.text((X_R0 + X_R1) / 2, -0.8, "physical: frames they map", ha="center", fontsize=FONT,
            weight="bold")
    ax.set_axis_off()
    n_reused = int(mp.reused.sum())
    uniq = int(np.unique(mp.frame * (1 << 40) + mp.sub).size)
    ax.set_title(f"{title}\n{mp.vpns.size} vmemmap pages → {uniq} physical pages "
                 f"({n_reused} {reuse_word} mappings)", fontsize=FONT + 1)
    return counts


def _legend(fig: Figure, ro: bool = False) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Patch(facecolor=C_VIRT, edgecolor="black", label="virtual vmemmap page"),
        Patch(facecolor=C_OWN, edgecolor="black", label="page in RAM, mapped once"),
        Patch(facecolor=C_REUSED, edgecolor="black", label="page mapped by several PTEs (reused)"),
        Patch(facecolor=C_DEVICE, edgecolor="black", hatch="//", label="on the device (altmap)"),
    ]
    if ro:
        handles.append(Line2D([], [], color=C_REUSED, ls=(0, (5, 2)),
                              label="read-only PTE (HVO remap)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=3 if ro else 2,
               fontsize=FONT - 1, frameon=False)


def _reused_page_index(mp: Mapping) -> int | None:
    """Index (in the compound page) of the vmemmap page the reused mappings point at."""
    if not mp.reused.any():
        return None
    fid = int(mp.frame[np.flatnonzero(mp.reused)[0]])
    return int(np.flatnonzero(mp.frame == fid)[0])


def vmemmap_mapping(src: Source, index: int = 0, *, max_rows: int = 14,
                    hvo: tuple | None = None) -> Figure:
    """One compound page's vmemmap pages and the frames they map, read from the page tables.

    :param src: a :class:`~vmemlab.plan.Plan` or ``(machine, pgmap)`` (device-dax)
    :param index: which compound page of the pgmap's first range
    :param max_rows: draw every vmemmap page up to this many, else elide long runs
    :param hvo: ``(machine, HugetlbFolio)`` of an HVO-optimized HugeTLB page
        (:mod:`vmemlab.hugetlb_vmemmap`), drawn beside the device-dax panel
    """
    panels = []
    m, pgmap = as_source(src)
    vpns = compound_vpns(m, pgmap, index)
    nr = pgmap_vmemmap_nr(pgmap)
    first_byte = ((pgmap.ranges[0][0] >> m.arch.page_shift) + index * nr) * \
        m.arch.struct_page_size
    mp = read_mapping(m, vpns)
    k = _reused_page_index(mp)
    how = f"vmemmap page {k} reused" if k is not None else "no page reused"
    panels.append((m, mp, first_byte, nr, None,
                   f"device-dax compound page #{index} "
                   f"({format_size(nr << m.arch.page_shift)}): {how}\n{source_label(m, pgmap)}"))
    if hvo is not None:
        hm, folio = hvo
        head, hnr, hv = hvo_span(hm, folio)
        hmp = read_mapping(hm, hv)
        k = _reused_page_index(hmp)
        how = f"vmemmap page {k} reused" if k is not None else "no page reused"
        panels.append((hm, hmp, head * hm.arch.struct_page_size, hnr, pte_read_only(hm, hv),
                       f"HugeTLB page, HVO ({format_size(hnr << hm.arch.page_shift)}): {how}\n"
                       f"{hm.arch.name} · kernel {hm.kernel.name} · boot RAM memmap"))
    rows = max(len(_items(p[1], max_rows)) for p in panels)
    fig = new_figure(9.0 * len(panels), 0.46 * rows + 2.0)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    any_ro = False
    for ax, (pm, pmp, fb, pnr, ro, title) in zip(axes, panels):
        draw_mapping(ax, pmp, pm, first_byte=fb, nr=pnr, max_rows=max_rows, title=title, ro=ro)
        any_ro |= ro is not None and bool(np.any(ro))
    _legend(fig, any_ro)
    return fig
