"""Diagram 3: where the memmap lives -- RAM or the device -- for ``map=mem`` vs ``map=dev``.

Two panels, both read from the model for each plan: the pages held by the namespace's frames by
home and kind (``m.frames.home`` / ``kind`` / ``order``, boot memmap excluded; the altmap's
alignment padding from ``altmap.align``), and the device's physical layout: the info block, the
memmap area whose pages the altmap hands out (spans of device frames from ``m.frames.pfn``),
padding, and the data the pgmap serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from ..errors import ParameterError
from ..frames import DEVICE, PAGETABLE, RAM, VMEMMAP
from ..memremap import pgmap_altmap
from ..nvdimm_pfn import nd_info_block_reserve
from ..units import format_size
from ._style import C_DEVICE, C_MUTED, C_OWN, C_TABLE, FONT, OKABE_ITO, fmt_bytes, new_figure, place
from .adapters import as_source, device_frame_spans, pages_by_home_kind

if TYPE_CHECKING:
    from ..plan import Plan

C_INFO = OKABE_ITO["purple"]
C_DATA = "#D9D9D9"
C_PAD = "white"
MIN_FRAC = 0.006  # segments narrower than this are drawn this wide (and say so)
CATEGORIES = [("RAM: struct pages", C_OWN, None), ("RAM: page tables", C_TABLE, None),
              ("device: struct pages", C_DEVICE, "//"), ("device: altmap padding", C_PAD, "..")]


def memmap_pages(p: Plan) -> dict[str, int]:
    """Pages of each :data:`CATEGORIES` entry for plan ``p``, read from its machine."""
    m, pg = as_source(p)
    pk = pages_by_home_kind(m)
    altmap = pgmap_altmap(pg)
    return {"RAM: struct pages": pk.get((RAM, VMEMMAP), 0),
            "RAM: page tables": pk.get((RAM, PAGETABLE), 0),
            "device: struct pages": pk.get((DEVICE, VMEMMAP), 0),
            "device: altmap padding": altmap.align if altmap else 0}


def _exact(n: int) -> str:
    """A size without rounding: ``16G``, ``16382M``; never ``16.00G`` for 16G - 2M."""
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return format_size(n)


def device_segments(p: Plan) -> list[tuple[str, int, int]]:
    """``(name, start, end)`` byte ranges of the device, namespace start to end."""
    m, pg = as_source(p)
    ps = m.arch.page_shift
    start = p.start
    end = start + p.size - p.namespace["end_trunc"]
    dataoff = p.namespace["dataoff"]
    info = nd_info_block_reserve(m.arch)
    segs: list[tuple[str, int, int]] = [("info block", start, start + info)]
    if pgmap_altmap(pg) is not None:
        cur = start + info
        for s, e in [(s << ps, e << ps) for s, e in device_frame_spans(m)]:
            if s > cur:
                segs.append(("memmap area, no frames", cur, s))
            segs.append(("memmap on device", s, e))
            cur = e
        if cur < start + dataoff:
            segs.append(("memmap area, no frames", cur, start + dataoff))
    else:
        segs.append(("padding to align", start + info, start + dataoff))
    segs.append(("data", start + dataoff, end))
    return [s for s in segs if s[2] > s[1]]


SEG_STYLE = {"info block": (C_INFO, None), "memmap on device": (C_DEVICE, "//"),
             "memmap area, no frames": (C_PAD, ".."), "padding to align": (C_PAD, ".."),
             "data": (C_DATA, None)}


def placement_view(*plans: Plan) -> Figure:
    """RAM vs device placement of the memmap for each :class:`~vmemlab.plan.Plan` (typically
    the same namespace with ``map="mem"`` and ``map="dev"``)."""
    if not plans:
        raise ParameterError("plans", (), "at least one vmemlab.Plan")
    n = len(plans)
    fig = new_figure(11.5, 1.1 * n + 2.6)
    ax_b, ax_l = fig.subplots(1, 2, width_ratios=[1.0, 1.15])
    # bars: one group of categories per plan
    labels, y, top = [], 0.0, 1
    for p in plans:
        ps = p.page_size
        pages = memmap_pages(p)
        for name, color, hatch in CATEGORIES:
            v = pages[name] * ps
            top = max(top, v)
            ax_b.barh(y, v, color=color, edgecolor="black", hatch=hatch, lw=0.7,
                      gid=f"bar:{p.map}:{name}")
            ax_b.text(v, y, f" {fmt_bytes(v)} ({pages[name]} pages)", va="center",
                      fontsize=FONT - 1)
            labels.append((y, f"map={p.map} · {name}"))
            y += 1
        y += 0.6
    ax_b.set_yticks([t for t, _ in labels], [s for _, s in labels], fontsize=FONT - 1)
    ax_b.invert_yaxis()
    step = 1 << max(0, (top // 4).bit_length() - 1)
    ax_b.set_xlim(0, top * 1.7)
    ax_b.set_xticks(list(range(0, int(top * 1.7), step))[:7])
    ax_b.xaxis.set_major_formatter(lambda v, _p: fmt_bytes(v) if v else "0")
    ax_b.tick_params(labelsize=FONT - 1)
    ax_b.set_xlabel("bytes held for the namespace's memmap", fontsize=FONT)
    ax_b.set_title("where the memmap's pages are", fontsize=FONT + 1)
    # device layout strips
    for i, p in enumerate(plans):
        segs = device_segments(p)
        total = segs[-1][2] - segs[0][1]
        x, y0 = 0.0, i * 1.6
        for name, s, e in segs:
            w = max((e - s) / total, MIN_FRAC)
            color, hatch = SEG_STYLE[name]
            place(ax_l, Rectangle((x, y0), w, 1, facecolor=color, edgecolor="black", lw=0.6,
                                     hatch=hatch, gid=f"seg:{p.map}:{name}"))
            x += w
        ax_l.text(0.98 * x, y0 + 0.5, "\n".join(f"{nm}: {_exact(e - s)}" for nm, s, e in segs),
                  ha="right", va="center", fontsize=FONT - 1,
                  bbox={"facecolor": "white", "edgecolor": C_MUTED, "alpha": 0.9, "pad": 2})
        ax_l.text(-0.01, y0 + 0.5, f"map={p.map}", ha="right", va="center", fontsize=FONT)
    ax_l.set_xlim(0, 1 + MIN_FRAC * 4)
    ax_l.set_ylim(n * 1.6 - 0.5, -0.1)
    ax_l.set_yticks([])
    ax_l.set_xticks([0, 1], ["namespace start", "end"], fontsize=FONT - 1)
    ax_l.set_xlabel(f"device physical address (segments under {MIN_FRAC:.1%} widened)",
                    fontsize=FONT)
    ax_l.set_title("device layout", fontsize=FONT + 1)
    p0 = plans[0]
    fig.suptitle(f"memmap placement: RAM (map=mem) or the device (map=dev, altmap) — "
                 f"{format_size(p0.size)} namespace, {format_size(p0.align)} pages, {p0.arch} · "
                 f"kernel {p0.kernel}", fontsize=FONT + 2, weight="bold")
    fig.legend(handles=[
        Patch(facecolor=C_OWN, edgecolor="black", label="struct pages in RAM"),
        Patch(facecolor=C_TABLE, edgecolor="black", label="page tables (always RAM)"),
        Patch(facecolor=C_DEVICE, edgecolor="black", hatch="//", label="struct pages on device"),
        Patch(facecolor=C_PAD, edgecolor="black", hatch="..", label="reserved / padding"),
        Patch(facecolor=C_INFO, edgecolor="black", label="info block"),
        Patch(facecolor=C_DATA, edgecolor=C_MUTED, label="data"),
    ], loc="outside lower center", ncols=6, fontsize=FONT - 1, frameon=False)
    return fig
