"""What one ``ndctl create-namespace --mode=devdax`` does, drawn from one model run.

Five stages, left to right, each box naming the kernel function and file and carrying the
numbers of that run, all read back from the :class:`~vmemlab.plan.Plan`, its machine and pgmap
(:func:`pipeline_stages`):

1. ``nd_pfn_init`` (drivers/nvdimm/pfn_devs.c): info block, memmap room (``--map=dev``), data
   offset, data pfns;
2. ``memremap_pages`` (mm/memremap.c): the ``dev_pagemap`` range, ``vmemmap_shift``, compound
   pages;
3. ``section_activate`` (mm/sparse.c): the memory sections the range touches, full or partial
   (``subsection_map``);
4. ``vmemmap_populate*`` (mm/sparse-vmemmap.c, arch/x86/mm/init_64.c): vmemmap pages mapped,
   the physical pages behind them, the frames allocated (RAM, device, page tables);
5. ``memmap_init_zone_device`` (mm/mm_init.c): struct pages written.

Which populate function ran is read off the result, not decided here: PMD leaves mean
``vmemmap_populate_hugepages``; PTEs sharing a page mean ``vmemmap_populate_compound_pages``;
other PTEs ``vmemmap_populate_basepages``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ..memremap import pgmap_altmap
from ..units import format_size
from ._style import C_DEVICE, C_OWN, C_REUSED, C_TABLE, C_VIRT, FONT, new_figure, place
from .adapters import as_source, read_mapping


@dataclass
class Stage:
    """One box of the pipeline: the kernel function, its file, text lines and raw numbers."""

    function: str
    file: str
    lines: list[str]
    numbers: dict[str, int] = field(default_factory=dict)
    color: str = C_VIRT


def pipeline_stages(p: Any) -> list[Stage]:
    """The five stages of :func:`vmemlab.plan` run ``p``, with its numbers (see module doc)."""
    m, pgmap = as_source(p)
    a = m.arch
    ps = a.page_shift
    s0, e0 = pgmap.ranges[0]
    pfn0, pfn1 = s0 >> ps, e0 >> ps
    ns = dict(p.namespace)
    altmap = pgmap_altmap(pgmap)
    stages: list[Stage] = []
    mode = "dev" if altmap is not None else "mem"
    info = {"size": int(p.size), "dataoff": int(ns["dataoff"]), "npfns": int(ns["npfns"]),
            "end_trunc": int(ns["end_trunc"])}
    lines = [f"--map={mode} --align={format_size(p.align)}",
             f"namespace {format_size(p.size)} at {p.start:#x}",
             f"data offset {format_size(ns['dataoff'])}"
             + (" (info block + memmap)" if mode == "dev" else " (info block, aligned)"),
             f"data pfns {ns['npfns']}"]
    stages.append(Stage("nd_pfn_init", "drivers/nvdimm/pfn_devs.c", lines, info))
    shift = int(pgmap.vmemmap_shift)
    comp = int(p.compound_pages)
    lines = [f"pfns {pfn0:#x}–{pfn1 - 1:#x}", f"({pfn1 - pfn0} pfns)",
             f"vmemmap_shift {shift}: {1 << shift} pages each",
             f"{comp} compound pages"]
    if altmap is not None:
        lines.append(f"altmap: {altmap.reserve} reserved + {altmap.free} free pfns")
    stages.append(Stage("memremap_pages", "mm/memremap.c", lines,
                        {"pfn_first": pfn0, "pfns": pfn1 - pfn0, "vmemmap_shift": shift,
                         "compound_pages": comp}))
    nrs = sorted({pfn >> a.PFN_SECTION_SHIFT for pfn in (pfn0, pfn1 - 1)})
    nrs = list(range(nrs[0], nrs[-1] + 1))
    full_map = (1 << a.SUBSECTIONS_PER_SECTION) - 1
    secs = [m.sparse.sections[n] for n in nrs if n in m.sparse.sections]
    full = sum(s.subsection_map == full_map for s in secs)
    subs = sum(bin(s.subsection_map).count("1") for s in secs)
    lines = [f"{len(secs)} section{'s' * (len(secs) != 1)} of "
             f"{format_size(1 << a.section_size_bits)}", f"{full} full, {len(secs) - full} partial",
             f"{subs} subsections of {format_size(a.PAGES_PER_SUBSECTION << ps)} set"]
    stages.append(Stage("section_activate", "mm/sparse.c", lines,
                        {"sections": len(secs), "full_sections": int(full),
                         "subsections": int(subs)}))
    lo = (pfn0 * a.struct_page_size) >> ps
    hi = -(-(pfn1 * a.struct_page_size) >> ps)
    mp = read_mapping(m, np.arange(lo, hi, dtype=np.int64))
    mapped = mp.frame >= 0
    physical = len(set(zip(mp.home[mapped].tolist(), mp.pfn[mapped].tolist())))
    leaves = int((mp.leaf & mapped).sum())
    how = []
    if leaves:
        how.append("vmemmap_populate_hugepages")
    if (mapped & ~mp.leaf).any():
        how.append("vmemmap_populate_compound_pages" if p.optimised
                   else "vmemmap_populate_basepages")
    ram_frames = int(p.ram_data_pages + p.ram_pagetable_pages)
    dev_frames = int(p.device_data_pages)
    lines = [" + ".join(how) if how else "nothing mapped",
             f"{int(mapped.sum())} vmemmap pages mapped",
             f"backed by {physical} physical pages",
             f"frames allocated: {p.ram_data_pages} RAM data",
             f"+ {p.ram_pagetable_pages} page tables + {dev_frames} on device"]
    stages.append(Stage("vmemmap_populate*", "mm/sparse-vmemmap.c", lines,
                        {"vmemmap_pages": int(mapped.sum()), "physical_pages": physical,
                         "pmd_leaf_pages": leaves, "ram_data_pages": int(p.ram_data_pages),
                         "pagetable_pages": int(p.ram_pagetable_pages),
                         "device_pages": dev_frames, "ram_frames": ram_frames},
                        C_REUSED if p.optimised else (C_DEVICE if dev_frames else C_OWN)))
    init = int(p.struct_pages_initialised)
    lines = [f"{init} struct pages written", f"of {p.struct_pages} in the range",
             f"({100 * init / max(p.struct_pages, 1):.1f}%)"]
    stages.append(Stage("memmap_init_zone_device", "mm/mm_init.c", lines,
                        {"struct_pages_initialised": init, "struct_pages": int(p.struct_pages)},
                        C_TABLE))
    return stages


def pipeline_view(p: Any, title: str | None = None) -> Figure:
    """Draw :func:`pipeline_stages` of ``p`` as five boxes joined by arrows."""
    stages = pipeline_stages(p)
    n = len(stages)
    fig = new_figure(17.0, 3.4)
    ax = fig.add_subplot()
    w, gap = 2.9, 0.55
    height = max(len(s.lines) for s in stages) * 0.34 + 0.9
    for i, s in enumerate(stages):
        x = i * (w + gap)
        place(ax, FancyBboxPatch((x, 0), w, height, boxstyle="round,pad=0.05",
                                    facecolor=s.color, alpha=0.18, edgecolor="black", lw=0.9,
                                    gid=f"stage:{s.function}"))
        ax.text(x + w / 2, height - 0.22, s.function, ha="center", va="top",
                fontsize=FONT + 1, weight="bold", family="monospace")
        ax.text(x + w / 2, height - 0.58, s.file, ha="center", va="top", fontsize=FONT - 1,
                style="italic")
        for j, line in enumerate(s.lines):
            ax.text(x + w / 2, height - 1.0 - 0.34 * j, line, ha="center", va="top",
                    fontsize=FONT)
        if i + 1 < n:
            place(ax, FancyArrowPatch((x + w + 0.06, height / 2),
                                         (x + w + gap - 0.06, height / 2),
                                         arrowstyle="-|>", mutation_scale=14, lw=1.4,
                                         color="black"))
    ax.set_xlim(-0.15, n * (w + gap) - gap + 0.15)
    ax.set_ylim(-0.15, height + 0.15)
    ax.set_axis_off()
    ax.set_title(title or f"ndctl create-namespace --mode=devdax --map={p.map} "
                 f"--align={format_size(p.align)}, {format_size(p.size)}: "
                 f"{p.arch} · kernel {p.kernel}", fontsize=FONT + 2)
    return fig
