"""Diagram 2: the page tables behind one compound page's vmemmap.

Three columns read from ``init_mm``'s tables in the model: the PMD entries covering the compound
page's vmemmap, the PTE tables they point at (``m.pgtables.pmd_entry`` / ``m.pgtables.pte``) and
the data frames those PTEs map.  For a 1 GiB compound page on x86_64 this shows mainline
5.19+ (one PTE table per section, eight tables) next to the v3 series' PMD-level reuse
(PMD entries 2..7 share one table).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Patch, Rectangle

from ..errors import ParameterError
from ..memremap import pgmap_vmemmap_nr
from ..units import format_size
from ._style import C_DEVICE, C_OWN, C_REUSED, C_TABLE, C_VIRT, FONT, fmt_bytes, new_figure, place
from .adapters import Source, as_source, compound_vpns, frame_label, source_label

if TYPE_CHECKING:
    from ..machine import Machine
    from ..memremap import DevPagemap

XP, XT, XF, W, WF = 0.0, 3.0, 6.5, 2.6, 3.0


def read_tables(m: Machine, vpns: np.ndarray) -> dict:
    """The PMD entries, PTE tables and data frames behind ``vpns`` (engine lookups only).

    Returns ``{"pmds": [(k, kind, target)], "tables": {fid: {"pmds": [...], "counts":
    {frame: n}, "refcount": r}}, "frames": {fid: n_entries}}``; ``counts`` are PTE entries of
    the table (inside ``vpns``) that map each frame, ``frames`` are entries (or leaf pages) per
    data frame across distinct tables.
    """
    pt = m.pgtables
    bits, mask = pt.pte_bits, pt.pte_mask
    ks = vpns >> bits
    pmds, tables, frames = [], {}, {}
    for k in np.unique(ks).tolist():
        e = pt.pmd_entry(k)
        if e is None:
            pmds.append((k, "none", -1))
            continue
        pmds.append((k, e[0], e[1]))
        if e[0] == "leaf":
            frames[e[1]] = frames.get(e[1], 0) + int((ks == k).sum())
            continue
        t = tables.setdefault(e[1], {"pmds": [], "subs": set(),
                                     "refcount": int(m.frames.refcount[e[1]])})
        t["pmds"].append(k)
        t["subs"].update((vpns[ks == k] & mask).tolist())
    for fid, t in tables.items():
        subs = np.array(sorted(t.pop("subs")), np.int64)
        ent = pt.pte[fid][subs]
        u, c = np.unique(ent[ent >= 0], return_counts=True)
        t["counts"] = dict(zip(u.tolist(), c.tolist()))
        t["other"] = int((pt.pte[fid] >= 0).sum()) - int((ent >= 0).sum())
        for f, n in t["counts"].items():
            frames[f] = frames.get(f, 0) + n
    return {"pmds": pmds, "tables": tables, "frames": frames}


def _n(k: int, one: str, many: str | None = None) -> str:
    return f"{k} {one if k == 1 else (many or one + 's')}"


def _spread(want: list[float], lo: float = 0.0) -> list[float]:
    """Positions near ``want`` (kept in order) at least 1 apart."""
    out: list[float] = []
    for w in want:
        out.append(max(w, (out[-1] + 1.0) if out else lo))
    return out


def _box(ax: Axes, x: float, y: float, text: str, color: str, gid: str, hatch=None,
         light: bool = False, w: float = W) -> None:
    place(ax, Rectangle((x, y - 0.42), w, 0.84, facecolor=color, edgecolor="black", lw=0.8,
                           hatch=hatch, gid=gid))
    ax.text(x + w / 2, y, text, ha="center", va="center", fontsize=FONT - 1,
            color="black" if light or hatch else "white",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1}
            if hatch else None)


def _arrow(ax: Axes, p0, p1, color: str, gid: str, label: str | None = None,
           ls: str = "-") -> None:
    place(ax, FancyArrowPatch(p0, p1, arrowstyle="-|>", mutation_scale=10, color=color,
                                 lw=1.2, ls=ls, gid=gid, shrinkA=0, shrinkB=0))
    if label:
        t = 0.35  # far enough along that labels of arrows to adjacent frames do not touch
        ax.text(p0[0] + 0.1 + t * (p1[0] - p0[0] - 0.2), p0[1] + t * (p1[1] - p0[1]), label,
                fontsize=FONT - 2, ha="center", va="center", color=color,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.6})


def draw_tables(ax: Axes, m: Machine, pgmap: DevPagemap, index: int = 0) -> dict[str, int]:
    """Draw the PMD → PTE table → frame graph of compound page ``index`` on ``ax``; returns
    ``{"pmd_entries", "pte_tables", "data_frames", "pmd_leaves"}`` as read from the model."""
    vpns = compound_vpns(m, pgmap, index)
    g = read_tables(m, vpns)
    pmds, tables, frames = g["pmds"], g["tables"], g["frames"]
    k0 = pmds[0][0]
    ypmd = {k: float(i) for i, (k, _, _) in enumerate(pmds)}
    tids = list(tables)
    ytab = dict(zip(tids, _spread([float(np.mean([ypmd[k] for k in tables[t]["pmds"]]))
                                   for t in tids])))
    fids = list(frames)
    want = []
    for f in fids:
        ys = [ytab[t] for t in tids if f in tables[t]["counts"]]
        ys += [ypmd[k] for k, kind, tg in pmds if kind == "leaf" and tg == f]
        want.append(min(ys))
    order = np.argsort(want, kind="stable")
    fids = [fids[i] for i in order]
    yfr = dict(zip(fids, _spread(sorted(want))))
    for k, kind, target in pmds:
        y = ypmd[k]
        _box(ax, XP, y, f"PMD entry {k - k0}" + (" (leaf)" if kind == "leaf" else "")
             + (" (none)" if kind == "none" else ""), C_VIRT, f"pmd:{k}:{kind}", light=True)
        if kind == "table":
            shared = tables[target]["refcount"] > 1
            _arrow(ax, (XP + W, y), (XT, ytab[target]), C_REUSED if shared else "black",
                   f"pmd->table:{k}:{target}")
        elif kind == "leaf":
            _arrow(ax, (XP + W, y), (XF, yfr[target]), "black", f"pmd->leaf:{k}:{target}",
                   "PMD leaf", ls="--")
    for t in tids:
        info = tables[t]
        shared = info["refcount"] > 1
        other = f"\n(+{info['other']} PTEs of other pages)" if info["other"] else ""
        _box(ax, XT, ytab[t], f"PTE table #{t} · refcount {info['refcount']}\n"
             f"{len(info['pmds'])} PMD entr{'ies' if len(info['pmds']) > 1 else 'y'}{other}",
             C_REUSED if shared else C_TABLE, f"table:{t}", light=not shared)
        for f, n in info["counts"].items():
            _arrow(ax, (XT + W, ytab[t]), (XF, yfr[f]), C_REUSED if n > 1 else "black",
                   f"table->frame:{t}:{f}:{n}", f"{n} PTE{'s' * (n > 1)}")
    for f in fids:
        dev = int(m.frames.home[f]) == 1
        many = frames[f] > 1 and int(m.frames.order[f]) == 0
        color = C_REUSED if many else (C_DEVICE if dev else C_OWN)
        size, where = frame_label(m, f).split(" · ")
        _box(ax, XF, yfr[f], f"{size} · refcount {int(m.frames.refcount[f])}\n{where}",
             color, f"frame:{f}", hatch="//" if dev else None, w=WF)
    n = max(len(pmds), max(ytab.values(), default=0) + 1, max(yfr.values(), default=0) + 1)
    for x, head in ((XP, "PMD entries"), (XT, "PTE tables"), (XF + (WF - W) / 2, "data frames")):
        ax.text(x + W / 2, -0.9, head, ha="center", fontsize=FONT, weight="bold")
    ax.set_xlim(-0.1, XF + WF + 0.1)
    ax.set_ylim(n - 0.4, -1.3)
    ax.set_axis_off()
    # pages of data frames this compound page's memmap uses (a PMD block also serves others)
    data_pages = sum(1 if int(m.frames.order[f]) == 0 else frames[f] for f in fids)
    ps = m.arch.PAGE_SIZE
    nr = pgmap_vmemmap_nr(pgmap)
    counts = {"pmd_entries": len(pmds), "pte_tables": len(tids), "data_frames": len(fids),
              "pmd_leaves": sum(kind == "leaf" for _, kind, _ in pmds)}
    ax.set_title(f"{source_label(m, pgmap)}\ncompound page #{index} "
                 f"({format_size(nr << m.arch.page_shift)}): "
                 f"{_n(counts['pmd_entries'], 'PMD entry', 'PMD entries')} → "
                 f"{_n(counts['pte_tables'], 'PTE table')} → {_n(data_pages, 'data page')}\n"
                 f"tables + data = {fmt_bytes((len(tids) + data_pages) * ps)}",
                 fontsize=FONT + 1)
    return counts


def pagetable_view(*sources: Source, index: int = 0) -> Figure:
    """Side-by-side page-table views of compound page ``index`` for each source
    (:class:`~vmemlab.plan.Plan` or ``(machine, pgmap)``), e.g. kernel 5.19 vs v3 at 1 GiB."""
    if not sources:
        raise ParameterError("sources", (), "at least one Plan or (machine, pgmap)")
    pairs = [as_source(s) for s in sources]
    rows = max(len(np.unique(compound_vpns(m, pg, index) >> m.pgtables.pte_bits))
               for m, pg in pairs)
    fig = new_figure(6.2 * len(pairs), 0.55 * max(rows, 2) + 2.3)
    axes = fig.subplots(1, len(pairs), squeeze=False)[0]
    for ax, (m, pg) in zip(axes, pairs):
        draw_tables(ax, m, pg, index)
    fig.suptitle("vmemmap page tables of one compound page", fontsize=FONT + 2, weight="bold")
    fig.legend(handles=[
        Patch(facecolor=C_TABLE, edgecolor="black", label="PTE table (one PMD entry)"),
        Patch(facecolor=C_REUSED, edgecolor="black",
              label="shared: several PMD entries / PTEs point at it"),
        Patch(facecolor=C_OWN, edgecolor="black", label="data page in RAM"),
        Patch(facecolor=C_DEVICE, edgecolor="black", hatch="//", label="on the device"),
    ], loc="outside lower center", ncols=4 if len(pairs) > 1 else 2, fontsize=FONT - 1,
        frameon=False)
    return fig
