"""Diagram 6: GUP-fast before/after -- counters and modelled time beside the cover letter.

Takes results of :mod:`vmemlab.gup` (``GupCounters`` per scenario) and draws, per scenario
(get/pin x RAM/altmap), the measured times quoted in the v3 cover letter next to the cost
model's prediction (:func:`vmemlab.gup.predict_ns`), and the counters that drive it: atomic
read-modify-writes, struct-page cache lines and struct pages touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

from .. import gup
from ._style import FONT, OKABE_ITO, new_figure

C_BEFORE, C_AFTER = OKABE_ITO["orange"], OKABE_ITO["blue"]


@dataclass
class GupRow:
    """One scenario: counters before and after, and the cover letter's times if it quotes any."""

    label: str
    before: Any  # vmemlab.gup.GupCounters
    after: Any
    measured_ms: tuple[float, float] | None = None
    kernels: tuple[str, str] = ("5.16", "v3")


def cover_letter_results(size: str = "16G", after: str = "v3", align: str = "2M",
                         before: str = "5.16") -> list[GupRow]:
    """The cover letter's scenarios of ``size`` run on the model: ``before`` vs ``after``
    kernels (``vmemlab.gup.scenario_counters``, cached by the gup module), with the measured
    rows attached when the configuration is the letter's own (2M, 5.16 -> v3)."""
    measured: dict[tuple[str, str], dict[str, float]] = {}
    for sz, fl, mp, when, ms, _ in gup.COVER_LETTER_ROWS:
        if sz == size:
            measured.setdefault((fl, mp), {})[when] = ms
    own = align == "2M" and before == "5.16" and after == "v3"
    rows = []
    for mp in ("mem", "dev"):
        for fl in ("get", "pin"):
            b = gup.scenario_counters(size, fl, mp, before, align)
            a = gup.scenario_counters(size, fl, mp, after, align)
            ms = measured.get((fl, mp))
            rows.append(GupRow(f"{fl} · {'RAM' if mp == 'mem' else 'altmap'}", b, a,
                               (ms["before"], ms["after"]) if own and ms else None,
                               (before, after)))
    return rows


def _ms(v: float) -> str:
    """``3950`` rather than ``3.95e+03``: bar labels stay short enough not to collide."""
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


def _plain_log(ax) -> None:
    """Log axis labelled ``1``, ``10``, ``1e+03`` (no mathtext: much faster to render)."""
    ax.yaxis.set_major_formatter(lambda v, _p: f"{v:g}")
    ax.yaxis.set_minor_locator(NullLocator())  # fewer tick artists: faster to draw


def gup_view(rows: Sequence[GupRow], *, title: str = "", params: Any = None) -> Figure:
    """Measured (cover letter) vs modelled GUP-fast time, and the counters behind the model,
    before and after, for each scenario in ``rows``."""
    fig = new_figure(11.5, 4.6)
    ax_t, ax_c = fig.subplots(1, 2, width_ratios=[1.0, 1.3])
    x = np.arange(len(rows))
    w = 0.2
    kb, ka = rows[0].kernels if rows else ("before", "after")
    for i, r in enumerate(rows):
        mb = gup.predict_ns(r.before, params) / 1e6
        ma = gup.predict_ns(r.after, params) / 1e6
        ax_t.bar(i - 1.5 * w, mb, w, color=C_BEFORE, edgecolor="black", gid=f"model:before:{i}")
        ax_t.bar(i + 0.5 * w, ma, w, color=C_AFTER, edgecolor="black", gid=f"model:after:{i}")
        ax_t.text(i - 0.5 * w, max(mb, (r.measured_ms or (0, 0))[0]) * 1.15,
                  f"{_ms(mb)}→\n{_ms(ma)}" + (f"\n({r.measured_ms[0]:g}→{r.measured_ms[1]:g})"
                                              if r.measured_ms else ""),
                  ha="center", va="bottom", fontsize=FONT - 2, linespacing=1.0)
        if r.measured_ms:
            ax_t.bar(i - 0.5 * w, r.measured_ms[0], w, color=C_BEFORE, edgecolor="black",
                     hatch="xx", alpha=0.55, gid=f"measured:before:{i}")
            ax_t.bar(i + 1.5 * w, r.measured_ms[1], w, color=C_AFTER, edgecolor="black",
                     hatch="xx", alpha=0.55, gid=f"measured:after:{i}")
    ax_t.set_yscale("log")
    _plain_log(ax_t)
    ax_t.set_xticks(x, [r.label for r in rows], fontsize=FONT - 1)
    ax_t.set_ylabel("GUP-fast call time (ms, log)", fontsize=FONT)
    ax_t.set_title("time: model (solid) vs cover letter (hatched)\nlabels: model ms before→after "
                   "(letter)", fontsize=FONT + 1)
    lo, hi = ax_t.get_ylim()
    ax_t.set_ylim(lo, hi * 30)
    metrics = [("atomics", "atomic RMWs"), ("cache_lines", "struct-page cache lines"),
               ("struct_pages_touched", "struct pages touched"),
               ("pages_entries", "pages[] entries")]
    wc = 0.8 / (2 * len(metrics))
    shades = [OKABE_ITO["vermillion"], OKABE_ITO["green"], OKABE_ITO["purple"], OKABE_ITO["sky"]]
    for j, (attr, _lab) in enumerate(metrics):
        for i, r in enumerate(rows):
            for k, (c, hatch) in enumerate(((r.before, None), (r.after, "//"))):
                v = max(int(getattr(c, attr)), 1)
                pos = i - 0.4 + (2 * j + k + 0.5) * wc
                ax_c.bar(pos, v, wc, color=shades[j], edgecolor="black", hatch=hatch, lw=0.6,
                         gid=f"counter:{attr}:{'before' if k == 0 else 'after'}:{i}")
    ax_c.set_yscale("log")
    _plain_log(ax_c)
    ax_c.set_xticks(x, [r.label for r in rows], fontsize=FONT - 1)
    ax_c.set_ylabel("count per call (log)", fontsize=FONT)
    ax_c.set_title(f"counters: kernel {kb} (plain) vs {ka} (hatched)", fontsize=FONT + 1)
    ax_c.legend(handles=[Patch(facecolor=s, edgecolor="black", label=lab)
                         for s, (_a, lab) in zip(shades, metrics)], fontsize=FONT - 1,
                loc="upper center", bbox_to_anchor=(0.5, -0.08), ncols=4, frameon=False)
    ax_t.legend(handles=[
        Patch(facecolor=C_BEFORE, edgecolor="black", label=f"model, kernel {kb}"),
        Patch(facecolor=C_AFTER, edgecolor="black", label=f"model, kernel {ka}"),
        Patch(facecolor="white", edgecolor="black", hatch="xx", label="cover letter (measured)"),
    ], fontsize=FONT - 1, loc="upper left", framealpha=0.9, ncols=2)
    fig.suptitle(title or "GUP-fast over a device-dax mapping: before/after", fontsize=FONT + 2,
                 weight="bold")
    return fig
