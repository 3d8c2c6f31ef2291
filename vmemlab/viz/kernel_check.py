"""Predicted against measured: the planner beside a real kernel's readings (chapter 11)."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from ._style import C_DEVICE, C_OWN, C_REUSED, FONT, OKABE_ITO, new_figure


def kernel_check(rows: Sequence[dict], title: str = "") -> Figure:
    """Two panels from ``validation.compare.compare(results)`` rows (namespace steps only):
    RAM pages measured vs predicted (log-log, the y = x line and the noise band), and the
    ``nr_memmap_pages`` change measured vs predicted."""
    pts = [r for r in rows if r.get("kind") == "namespace" and r.get("predicted") is not None]
    fig = new_figure(10, 4.3)
    ax1, ax2 = fig.subplots(1, 2)
    lo = 0.5
    hi = max(max(r["predicted"], r["measured_vmemmap"]) for r in pts) * 2
    noise = max(r["noise"] for r in pts)
    xs = [lo, hi]
    ax1.plot(xs, xs, color=OKABE_ITO["grey"], lw=1, label="measured = predicted")
    ax1.fill_between(xs, [max(lo, x - noise) for x in xs], [x + noise for x in xs],
                     color=OKABE_ITO["grey"], alpha=0.15, label=f"± noise ({noise:g} pages)")
    for r in pts:
        c = C_DEVICE if r["map"] == "dev" else (C_REUSED if r["planner"]["optimised"] else C_OWN)
        ax1.plot(max(r["predicted"], lo), max(r["measured_vmemmap"], lo), "o", color=c,
                 mec="black", mew=0.5, ms=6)
    for c, lab in ((C_OWN, "map=mem, not deduplicated"), (C_REUSED, "map=mem, deduplicated"),
                   (C_DEVICE, "map=dev (struct pages on the device)")):
        ax1.plot([], [], "o", color=c, mec="black", mew=0.5, label=lab)
    ax1.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi),
            xlabel="predicted RAM pages (vmemmap data + page tables)",
            ylabel="measured RAM pages (extras removed)")
    ax1.set_title("RAM for the vmemmap", fontsize=FONT + 1)
    ax1.legend(fontsize=FONT - 1, loc="upper left")
    ax1.grid(True, which="both", lw=0.3, alpha=0.5)
    mm = [r for r in pts if r.get("nr_memmap_delta") is not None]
    top = max(max(r["nr_memmap_delta"], r["predicted_nr_memmap_delta"]) for r in mm) * 2
    ax2.plot([lo, top], [lo, top], color=OKABE_ITO["grey"], lw=1, label="measured = predicted")
    for r in mm:
        c = C_DEVICE if r["map"] == "dev" else (C_REUSED if r["planner"]["optimised"] else C_OWN)
        ax2.plot(max(r["predicted_nr_memmap_delta"], lo), max(r["nr_memmap_delta"], lo), "s",
                 color=c, mec="black", mew=0.5, ms=6)
    ax2.set(xscale="log", yscale="log", xlim=(lo, top), ylim=(lo, top),
            xlabel="predicted nr_memmap_pages change", ylabel="measured nr_memmap_pages change")
    ax2.set_title("/proc/vmstat nr_memmap_pages", fontsize=FONT + 1)
    ax2.grid(True, which="both", lw=0.3, alpha=0.5)
    fig.suptitle(title or "vmemlab.plan against a real kernel", fontsize=FONT + 2, weight="bold")
    return fig
