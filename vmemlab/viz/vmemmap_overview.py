"""The vmemmap itself: physical memory by section, the virtual struct-page array, the pages
that back it (chapter 01's picture).

Three rows read from a :class:`~vmemlab.machine.Machine`: the present memory sections
(``m.sparse.sections``, with each section's ``subsection_map``), the slice of the virtual
``vmemmap`` array that holds each section's struct pages (``pfn_to_page`` arithmetic), and what
the kernel page tables map there (``m.pgtables.pmd_entry`` for the PMD entries covering the
slice: a 2 MiB block, or a PTE table whose entries map 4 KiB pages, read with
``m.pgtables.resolve``).  Absent address ranges are drawn as gaps: they have no struct pages and
nothing backs their part of the vmemmap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Patch, Rectangle

from ..frames import DEVICE
from ..units import format_size
from ._style import C_DEVICE, C_MUTED, C_OWN, C_TABLE, C_VIRT, FONT, new_figure, place
from .adapters import frame_label

if TYPE_CHECKING:
    from ..machine import Machine

C_RAM_MEM = "#CFE3F3"  # System RAM (physical)
C_DEV_MEM = "#CDEBDD"  # device memory (physical)
Y_PHYS, Y_VIRT, Y_BACK, H = 3.2, 1.75, 0.0, 0.8
W_SEC, W_GAP = 1.0, 0.7


def read_sections(m: Machine, max_sections: int = 6) -> list[dict]:
    """What the figure draws for each present section (and ``{"gap": n}`` between runs).

    Each section: ``nr``, ``device`` (``zone_device``), ``subsections`` present of
    ``SUBSECTIONS_PER_SECTION``, the vmemmap byte range of its memmap, and ``backing``: a list
    of ``{"kind", "frame", "pages", "home"}`` per PMD entry covering that range: ``"block"``
    (a PMD leaf on block ``frame`` of ``pages`` pages) or ``"ptes"`` (PTE table ``frame`` whose
    entries map ``pages`` distinct base pages); ``home`` is where those pages are (RAM/device).  With more
    than ``max_sections`` sections the middle ones are left out (a gap says how many).
    """
    a, pt = m.arch, m.pgtables
    secs = sorted(m.sparse.sections)
    if len(secs) > max_sections:
        keep = secs[: max_sections // 2] + secs[-(max_sections - max_sections // 2):]
    else:
        keep = secs
    out: list[dict] = []
    prev = None
    for nr in keep:
        if prev is not None and nr != prev + 1:
            out.append({"gap": nr - prev - 1, "left_out": sum(1 for s in secs if prev < s < nr)})
        prev = nr
        ms = m.sparse.sections[nr]
        sub_pages = a.PAGES_PER_SUBSECTION
        bits = [i for i in range(a.SUBSECTIONS_PER_SECTION) if ms.subsection_map >> i & 1]
        pfn0 = nr * a.PAGES_PER_SECTION
        lo = (pfn0 + bits[0] * sub_pages) * a.struct_page_size if bits else pfn0 * 64
        hi = (pfn0 + (bits[-1] + 1) * sub_pages) * a.struct_page_size if bits else lo
        v0, v1 = lo >> a.page_shift, -(-hi >> a.page_shift)
        backing = []
        for k in range(v0 >> pt.pte_bits, ((v1 - 1) >> pt.pte_bits) + 1) if v1 > v0 else []:
            e = pt.pmd_entry(k)
            if e is None:
                continue
            kind, fid = e
            if kind == "leaf":
                backing.append({"kind": "block", "frame": fid, "home": int(m.frames.home[fid]),
                                "pages": 1 << int(m.frames.order[fid])})
            else:
                vpns = np.arange(max(v0, k << pt.pte_bits), min(v1, (k + 1) << pt.pte_bits))
                frames, _ = pt.resolve(vpns)
                frames = frames[frames >= 0]
                backing.append({"kind": "ptes", "frame": fid, "pages": len(set(frames.tolist())),
                                "home": int(m.frames.home[frames[0]]) if frames.size else 0})
        out.append({"nr": nr, "device": ms.zone_device, "subsections": len(bits),
                    "of": a.SUBSECTIONS_PER_SECTION, "vmemmap": (lo, hi), "backing": backing,
                    "early": ms.early})
    return out


def vmemmap_overview(m: Machine, title: str | None = None, max_sections: int = 6) -> Figure:
    """Draw physical memory by section, the vmemmap slices of their struct pages, and the
    pages backing those slices (PMD blocks or PTE tables and 4 KiB pages), from machine ``m``."""
    a = m.arch
    items = read_sections(m, max_sections)
    xs, x = [], 0.0
    for it in items:
        xs.append(x)
        x += (W_GAP if "gap" in it else W_SEC) + 0.12
    width = x
    fig = new_figure(min(2.4 + 0.9 * width, 10.0), 4.2)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_xlim(-1.9, width + 0.1)
    ax.set_ylim(-0.45, Y_PHYS + H + 0.2)
    for y, text in ((Y_PHYS, "physical memory\n(page frames,\nby section)"),
                    (Y_VIRT, "vmemmap\n(virtual array\nof struct pages)"),
                    (Y_BACK, "backing pages\n(kernel page\ntables)")):
        ax.text(-1.85, y + H / 2, text, ha="left", va="center", fontsize=FONT)
    sec = format_size(1 << a.section_size_bits)
    memmap = format_size(a.PAGES_PER_SECTION * a.struct_page_size)
    for it, x0 in zip(items, xs):
        if "gap" in it:
            for y in (Y_PHYS, Y_VIRT):
                place(ax, Rectangle((x0, y), W_GAP, H, fc="white", ec=C_MUTED, ls=":"))
            absent, skipped = it["gap"] - it["left_out"], it["left_out"]
            phys = "\n".join(([f"{absent} absent\nsections"] if absent else [])
                             + ([f"{skipped} present,\nnot drawn"] if skipped else []))
            virt = "not\nmapped" if not skipped else "not drawn" if not absent else "..."
            ax.text(x0 + W_GAP / 2, Y_PHYS + H / 2, phys, ha="center", va="center",
                    fontsize=FONT - 2, color=C_MUTED)
            ax.text(x0 + W_GAP / 2, Y_VIRT + H / 2, virt, ha="center", va="center",
                    fontsize=FONT - 2, color=C_MUTED)
            continue
        fill = C_DEV_MEM if it["device"] else C_RAM_MEM
        place(ax, Rectangle((x0, Y_PHYS), W_SEC, H, fc="white", ec="black", lw=0.8))
        frac = it["subsections"] / it["of"]
        place(ax, Rectangle((x0, Y_PHYS), W_SEC * frac, H, fc=fill, ec="none"))
        what = "device" if it["device"] else "RAM"
        part = "" if frac == 1 else f"\n{it['subsections']}/{it['of']} subsections"
        at = format_size(it["nr"] << a.section_size_bits) if it["nr"] else "0"
        ax.text(x0 + W_SEC / 2, Y_PHYS + H / 2, f"section {it['nr']}\n{what} @ {at}{part}",
                ha="center", va="center", fontsize=FONT - 2)
        lo, hi = it["vmemmap"]
        place(ax, Rectangle((x0, Y_VIRT), W_SEC, H, fc="white", ec="black", lw=0.8))
        place(ax, Rectangle((x0, Y_VIRT), W_SEC * frac, H, fc=C_VIRT, ec="none"))
        ax.text(x0 + W_SEC / 2, Y_VIRT + H / 2,
                f"+{lo:#x}\n{format_size(hi - lo)} of\nstruct pages", ha="center",
                va="center", fontsize=FONT - 2)
        place(ax, FancyArrowPatch((x0 + W_SEC / 2, Y_PHYS), (x0 + W_SEC / 2, Y_VIRT + H),
                                     arrowstyle="-|>", mutation_scale=8, color=C_MUTED,
                                     ls="--", lw=0.8))
        for j, b in enumerate(it["backing"]):
            n = len(it["backing"])
            bw, bx = W_SEC / n, x0 + j * W_SEC / n
            colour = C_DEVICE if b["home"] == DEVICE else C_OWN
            if b["kind"] == "block":
                label = frame_label(m, b["frame"]).split(" · ")[1].replace(" pfn ", "\npfn ")
                place(ax, Rectangle((bx, Y_BACK), bw, H, fc=colour, ec="black", lw=0.8))
                ax.text(bx + bw / 2, Y_BACK + H / 2,
                        f"{format_size(b['pages'] << a.page_shift)}\nblock\n{label}", ha="center",
                        va="center", fontsize=FONT - 2, color="white")
                how = "PMD leaf"
            else:
                place(ax, Rectangle((bx, Y_BACK + H * 0.55), bw, H * 0.45, fc=C_TABLE,
                                       ec="black", lw=0.8))
                ax.text(bx + bw / 2, Y_BACK + H * 0.775, "PTE table", ha="center",
                        va="center", fontsize=FONT - 2)
                place(ax, Rectangle((bx, Y_BACK), bw, H * 0.5, fc=colour, ec="black",
                                       lw=0.8))
                ax.text(bx + bw / 2, Y_BACK + H * 0.25,
                        f"{b['pages']} x {format_size(a.PAGE_SIZE)}", ha="center", va="center",
                        fontsize=FONT - 2, color="white")
                how = "PMD -> PTEs"
            place(ax, FancyArrowPatch((bx + bw / 2, Y_VIRT), (bx + bw / 2, Y_BACK + H),
                                         arrowstyle="-|>", mutation_scale=8, color="black",
                                         lw=0.8))
            ax.text(bx + bw / 2 + 0.03, (Y_VIRT + Y_BACK + H) / 2, how, ha="left",
                    va="center", fontsize=FONT - 3, rotation=90)
    ax.set_title(title or f"{a.name}: {sec} sections, {memmap} of struct pages each, "
                 f"vmemmap at {a.vmemmap_start:#x}", fontsize=FONT + 1)
    ax.legend(handles=[Patch(fc=C_RAM_MEM, ec="black", label="RAM (physical)"),
                       Patch(fc=C_DEV_MEM, ec="black", label="device memory"),
                       Patch(fc=C_VIRT, ec="black", label="vmemmap (virtual)"),
                       Patch(fc=C_OWN, label="backing page in RAM"),
                       Patch(fc=C_DEVICE, label="backing page on the device"),
                       Patch(fc=C_TABLE, ec="black", label="PTE table")],
              loc="lower center", bbox_to_anchor=(0.5, -0.1), ncol=6, fontsize=FONT - 1,
              frameon=False)
    return fig
