"""Diagram 5: struct-page RAM per TiB of device memory against compound order.

Each point comes from two :func:`vmemlab.plan` runs, of ``chunk`` and ``2 * chunk`` bytes (a
power of two holding whole compound pages, whole sections and whole PTE tables, placed at a
multiple of itself): ``cost(1 TiB) = cost(chunk) + (n - 1) * (cost(2 chunk) - cost(chunk))`` with
``n = 1 TiB / chunk``.  At such sizes the vmemmap data pages and PTE-table pages in RAM grow by
the same amount per chunk; the one-off part (5.19 with compound memmaps under two pages
populates one page past the end) is kept once.  ``tests/test_viz.py`` checks the extrapolated
values against direct 1 TiB plans, including that case.  PMD- and PUD-level tables (a few
pages per TiB, fixed by placement) are left out of the curves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from ..arch import ARCHES, Arch, get_arch
from ..errors import VmemlabError
from ..kernels import KERNELS
from ..plan import plan
from ..units import GiB, TiB, format_size
from ._style import C_REUSED, FONT, HOLLOW, KERNEL_STYLE, fmt_bytes, new_figure

ONE_GIB_ORDER_CAP = 30  # explore up to PUD_SIZE when PUD_SIZE <= 1 GiB


def explorable_orders(arch: str | Arch) -> list[int]:
    """Compound orders worth exploring on ``arch`` (a name or an Arch): 0 up to the largest
    device-dax alignment, or ``PUD_SIZE`` when the arch has a PUD level of at most 1 GiB."""
    return list(range(0, _top_order(get_arch(arch)) + 1))


@cache
def _top_order(a: Arch) -> int:
    top = max(a.dax_align_orders())
    if a.PUD_SHIFT is not None and a.PUD_SHIFT <= ONE_GIB_ORDER_CAP:
        top = max(top, a.PUD_SHIFT - a.page_shift)
    return top


def chunk_size(arch: str, order: int) -> int:
    """The namespace size a point is planned at: at least two compound pages, one section and
    the memory whose memmap one PTE table maps (all powers of two, so the largest wins)."""
    a = get_arch(arch)
    pte_cover = a.PTRS_PER_PTE * a.STRUCT_PAGES_PER_PAGE << a.page_shift
    return max(2 << (order + a.page_shift), 1 << a.section_size_bits, pte_cover)


@dataclass(frozen=True)
class SavingsPoint:
    """One point of a savings curve (per TiB of namespace)."""

    arch: str
    kernel: str
    order: int
    map: str
    chunk: int
    start: int
    optimised: bool
    ram_data_pages: int
    pte_table_pages: int
    struct_pages_initialised: int
    page_size: int

    @property
    def bytes_per_tib(self) -> int:
        return (self.ram_data_pages + self.pte_table_pages) * self.page_size


#: every point computed (or handed over by :func:`remember_points`) in this process, by
#: ``(arch, kernel, order, map)``: at most arches x kernels x orders x maps, about 1500
_POINTS: dict[tuple[str, str, int, str], SavingsPoint] = {}


def savings_point(arch: str, kernel: str, order: int, map: str = "mem") -> SavingsPoint:
    """Plan ``chunk_size(arch, order)`` and twice that (``strict=False``); extrapolate to 1 TiB.  Cached:
    the model is deterministic, so the same arguments always give the same point (a refusal,
    :class:`~vmemlab.VmemlabError`, is raised again each time)."""
    key = (arch, kernel, order, map)
    pt = _POINTS.get(key)
    if pt is None:
        pt = _POINTS[key] = _savings_point(arch, kernel, order, map)
    return pt


def known_points(arch: str, map: str) -> list[SavingsPoint]:
    """The points of ``arch`` and ``map`` this process has computed so far."""
    return [p for (a, _k, _o, m), p in _POINTS.items() if a == arch and m == map]


def remember_points(points: Iterable[SavingsPoint]) -> None:
    """Take ``points`` computed elsewhere (the explorers' look-ahead process: the same model,
    so the same values) as if computed here."""
    for p in points:
        _POINTS.setdefault((p.arch, p.kernel, p.order, p.map), p)


def _savings_point(arch: str, kernel: str, order: int, map: str) -> SavingsPoint:
    a = get_arch(arch)
    chunk = chunk_size(arch, order)
    start = max(64 * GiB, chunk)
    align = 1 << (order + a.page_shift)
    n = TiB // chunk
    p2 = plan(2 * chunk, align=align, map=map, arch=arch, kernel=kernel, start=start,
              strict=False)
    # with n == 2 the 2-chunk plan is the 1 TiB plan itself
    p1 = p2 if n == 2 else plan(chunk, align=align, map=map, arch=arch, kernel=kernel,
                                start=start, strict=False)

    def ext(v1: int, v2: int) -> int:
        return v2 if n == 2 else v1 + (n - 1) * (v2 - v1)

    return SavingsPoint(arch, kernel, order, map, chunk, start, p1.optimised,
                        ext(p1.ram_data_pages, p2.ram_data_pages),
                        _pte_table_pages(a, ext(p1.pagetables.get("pte", 0),
                                                p2.pagetables.get("pte", 0))),
                        ext(p1.struct_pages_initialised, p2.struct_pages_initialised),
                        a.PAGE_SIZE)


def _pte_table_pages(a, n_tables: int) -> int:
    """Pages that ``n_tables`` PTE tables occupy: one each, except where a table is smaller
    than a page (ppc64 radix 64K: 256-byte tables carved from shared pages by
    ``pte_fragment_alloc``, PAGE_SIZE / 256 per page)."""
    per_page = max(1, a.PAGE_SIZE // (a.levels[0].ptrs * 8))
    return -(-n_tables // per_page)


def _bytes_or_gap(arch: str, kernel: str, order: int, map: str) -> float:
    """A curve point, or NaN (a gap in the line) where the kernel refuses the configuration
    (e.g. ppc64's 1 GiB compound pages with the generic pre-6.6 populate code)."""
    try:
        return max(savings_point(arch, kernel, order, map).bytes_per_tib, 1)
    except VmemlabError:
        return float("nan")


def savings_curves(arches: Sequence[str] | None = None, kernels: Sequence[str] | None = None,
                   *, map: str = "mem", current: dict | None = None) -> Figure:
    """RAM for struct pages (+ PTE tables) per TiB against compound order, one panel per arch,
    one curve per kernel variant.

    :param arches: names from :data:`vmemlab.ARCHES` (default: all)
    :param kernels: names from :data:`vmemlab.KERNELS` (default: all)
    :param map: ``"mem"`` or ``"dev"`` (with ``dev`` only page tables stay in RAM)
    :param current: ``{"arch", "kernel", "order"}`` of the configuration to mark
    """
    arches = list(arches or ARCHES)
    kernels = list(kernels or KERNELS)
    ncol = min(3, len(arches))
    nrow = -(-len(arches) // ncol)
    # one panel alone is widened for its legend and title; its legend stacks in one column
    legend_cols = 2 if ncol > 1 else 1
    n_handles = len(kernels) + bool(current)
    fig = new_figure(max(4.3 * ncol, 6.2),
                     3.3 * nrow + 0.9 + (0.17 * n_handles if legend_cols == 1 else 0))
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False).ravel())
    for ax in axes[len(arches):]:
        ax.set_axis_off()
    for ax, arch in zip(axes, arches):
        a = get_arch(arch)
        orders = explorable_orders(a)
        for kname in kernels:
            y = [_bytes_or_gap(arch, kname, o, map) for o in orders]
            color, ls, mk = KERNEL_STYLE.get(kname, ("black", "-", "o"))
            hollow = kname in HOLLOW
            ax.plot(orders, y, color=color, ls=ls, marker=mk, ms=7 if hollow else 3.5,
                    mfc="none" if hollow else color, lw=1.4, zorder=4 if hollow else 3,
                    label=f"kernel {kname}", gid=f"curve:{arch}:{kname}")
        for o in a.dax_align_orders():
            ax.axvline(o, color="0.8", lw=0.8, zorder=0)
            ax.text(o, 1.0, format_size(1 << (o + a.page_shift)), transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=FONT - 2, color="0.35")
        if current and current.get("arch") == arch:
            p = savings_point(arch, current["kernel"], int(current["order"]), map)
            ax.plot([p.order], [max(p.bytes_per_tib, 1)], marker="*", ms=14, color=C_REUSED,
                    mec="black", ls="none", zorder=5, gid="current")
            # beside the star, on the side with more room: never up into the alignment labels
            right = p.order <= (orders[0] + orders[-1]) / 2
            ax.annotate(f"{fmt_bytes(p.bytes_per_tib)}/TiB", (p.order, max(p.bytes_per_tib, 1)),
                        xytext=(9 if right else -9, 0), textcoords="offset points",
                        ha="left" if right else "right", va="center", fontsize=FONT - 1,
                        color="black", weight="bold")
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(lambda v, _pos: fmt_bytes(v))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("compound order (vmemmap_shift)", fontsize=FONT)
        ax.set_ylabel(f"RAM per TiB (map={map})", fontsize=FONT)
        ax.set_title(f"{arch} ({a.PAGE_SIZE >> 10}K pages)", fontsize=FONT + 1, pad=12)
        ax.tick_params(labelsize=FONT - 1)
        ax.grid(True, which="major", axis="y", color="0.9")
        ax.set_xticks(orders[:: max(1, len(orders) // 9)])
    handles = [Line2D([], [], color=KERNEL_STYLE[k][0], ls=KERNEL_STYLE[k][1],
                      marker=KERNEL_STYLE[k][2], mfc="none" if k in HOLLOW else None,
                      label=f"kernel {k}: {KERNELS[k].summary}")
               for k in kernels if k in KERNEL_STYLE]
    if current:
        handles.append(Line2D([], [], color=C_REUSED, marker="*", ms=12, mec="black", ls="none",
                              label=f"current: {current['arch']} · {current['kernel']} · "
                                    f"order {current['order']}"))
    fig.legend(handles=handles, loc="outside lower center", ncols=legend_cols,
               fontsize=FONT - 1, frameon=False)
    fig.suptitle("vmemmap RAM (struct-page pages + PTE tables) per TiB of device memory\n"
                 "grey lines: device-dax alignments", fontsize=FONT + 2)
    return fig
