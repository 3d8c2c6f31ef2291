"""HVO before and after, in one layout (``Documentation/mm/vmemmap_dedup.rst``'s two diagrams).

Two machines are booted alike and given the same HugeTLB page; the second then runs
``hugetlb_vmemmap_optimize`` (:mod:`vmemlab.hugetlb_vmemmap`).  Both panels are read from the
page tables with :func:`vmemlab.viz.adapters.read_mapping` and drawn with
:func:`vmemlab.viz.mapping.draw_mapping`: left, the boot memmap's PMD leaf mapping the HugeTLB
page's vmemmap pages to consecutive pages of one 2 MiB block; right, the kept page(s) and the
read-only PTEs onto the reused page.  The footer carries the numbers of that run, including the
reference the kernel does *not* take: ``vmemmap_remap_pte`` writes the PTE without
``get_page`` (unlike device-dax's ``vmemmap_pte_populate``), so the reused page's
``page_count()`` stays 1 however many PTEs map it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..hugetlb_vmemmap import alloc_hugetlb_folio, hugetlb_vmemmap_optimize, vmemmap_page_count
from ..machine import Machine
from ..units import format_size, parse_size
from ._style import FONT, new_figure
from .adapters import hvo_span, pte_read_only, read_mapping
from .mapping import _items, _legend, draw_mapping


@dataclass
class HvoRun:
    """One HugeTLB page before and after HVO, with the numbers the figure prints."""

    before: tuple[Machine, Any]
    after: tuple[Machine, Any]
    report: Any
    numbers: dict[str, int]


def hvo_run(kernel: str = "6.6", size: int | str = "2M", arch: str = "x86_64",
            ram: int | str | None = None) -> HvoRun:
    """Boot two identical machines (``ram``: default 1 GiB, or twice the page), allocate one
    HugeTLB page of ``size`` in each and optimize the second.  ``numbers``:

    * ``vmemmap_pages``: vmemmap pages of the HugeTLB page's struct pages
    * ``frames_before`` / ``frames_after``: distinct physical pages they map
    * ``kept``: vmemmap pages keeping their own page (``folio.reserve``)
    * ``remapped_ro``: read-only PTEs after HVO
    * ``freed``: vmemmap data pages given back (``HvoReport.data_pages_freed``)
    * ``split_tables``: PTE tables ``vmemmap_split_pmd`` allocated
    * ``reused_maps``: PTEs that map the reused page after HVO
    * ``reused_page_count``: the kernel's ``page_count()`` of that page
      (:func:`vmemlab.hugetlb_vmemmap.vmemmap_page_count`)
    * ``ram_used_before`` / ``ram_used_after``: RAM pages in use
    """
    nbytes = parse_size(size, "size")
    ram_b = parse_size(ram, "ram") if ram is not None else max(1 << 30, 2 * nbytes)
    runs = []
    for optimize in (False, True):
        m = Machine(arch, kernel, ram=ram_b)
        folio = alloc_hugetlb_folio(m, nbytes)
        rep = hugetlb_vmemmap_optimize(m, folio) if optimize else None
        runs.append((m, folio, rep))
    (m0, f0, _), (m1, f1, rep) = runs
    _, _, v0 = hvo_span(m0, f0)
    _, _, v1 = hvo_span(m1, f1)
    fr0, sub0 = m0.pgtables.resolve(v0)
    fr1, sub1 = m1.pgtables.resolve(v1)
    ro = pte_read_only(m1, v1)
    reuse = int(f1.reuse_frame)
    numbers = {
        "vmemmap_pages": int(v1.size),
        "frames_before": len(set(zip(fr0.tolist(), sub0.tolist()))),
        "frames_after": len(set(zip(fr1.tolist(), sub1.tolist()))),
        "kept": int(f1.reserve),
        "remapped_ro": int(np.count_nonzero(ro)),
        "freed": int(rep.data_pages_freed),
        "split_tables": int(rep.split_pte_tables),
        "reused_maps": int(np.count_nonzero(fr1 == reuse)),
        "reused_page_count": int(vmemmap_page_count(m1, reuse)),
        "ram_used_before": int(m0.ram.used),
        "ram_used_after": int(m1.ram.used),
    }
    return HvoRun((m0, f0), (m1, f1), rep, numbers)


def hvo_before_after(run: HvoRun | None = None, *, max_rows: int = 10, **kw: Any) -> Figure:
    """The figure of :func:`hvo_run` (``run``, or a new run with ``kw``): before | after."""
    run = run if run is not None else hvo_run(**kw)
    n = run.numbers
    (m0, f0), (m1, f1) = run.before, run.after
    panels = []
    for m, f, ro, title in (
            (m0, f0, None, "before: the boot memmap, one PMD leaf"),
            (m1, f1, True, f"after hugetlb_vmemmap_optimize(): {n['kept']} kept, "
                           f"{n['remapped_ro']} read-only PTEs")):
        head, nr, vpns = hvo_span(m, f)
        mp = read_mapping(m, vpns)
        panels.append((m, mp, head * m.arch.struct_page_size, nr,
                       pte_read_only(m, vpns) if ro else None, title))
    rows = max(len(_items(p[1], max_rows)) for p in panels)
    fig = new_figure(16.0, 0.46 * rows + 3.2)
    gs = fig.add_gridspec(2, 2, height_ratios=[0.46 * rows + 1.5, 0.7])
    axes = [fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1])]
    note = fig.add_subplot(gs[1, :])
    note.set_axis_off()
    for ax, (m, mp, fb, nr, ro, title) in zip(axes, panels):
        draw_mapping(ax, mp, m, first_byte=fb, nr=nr, max_rows=max_rows, title=title, ro=ro)
    size = format_size(f1.nr_pages << m1.arch.page_shift)
    fig.suptitle(f"HVO of one {size} HugeTLB page · {m1.arch.name} · kernel {m1.kernel.name}",
                 fontsize=FONT + 2, weight="bold")
    note.text(0.5, 0.5,
             f"{n['vmemmap_pages']} vmemmap pages: {n['frames_before']} physical pages before, "
             f"{n['frames_after']} after; {n['freed']} freed, {n['split_tables']} PTE table(s) "
             f"for the PMD split; RAM pages in use {n['ram_used_before']} → "
             f"{n['ram_used_after']}.\nThe reused page is mapped by {n['reused_maps']} PTEs "
             f"but its page_count() is {n['reused_page_count']}: vmemmap_remap_pte() takes no "
             f"reference (device-dax's vmemmap_pte_populate() does get_page per PTE).",
             ha="center", va="center", fontsize=FONT + 1, transform=note.transAxes)
    _legend(fig, True)
    return fig
