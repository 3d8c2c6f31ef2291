"""Shared look of every vmemlab figure: the Okabe-Ito palette, figure creation, PNG export.

Figures are built with :class:`matplotlib.figure.Figure` directly (never ``pyplot``), so building
one has no global side effects, needs no GUI backend and renders identically with Agg.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.transforms import Bbox

#: held while a figure is rendered (and by :mod:`vmemlab.widgets` around compute + render): the
#: rcParams overrides below are process-global, and the model's lazily filled caches and
#: matplotlib's figures are not safe to use from two threads at once
RENDER_LOCK = threading.RLock()

#: scale of every raster (PNG) figure: rendered at this many device pixels per CSS pixel and
#: shown at 1/HIDPI of its pixel size, so figures stay sharp on 2x (HiDPI) displays
HIDPI = 2

#: Okabe & Ito (2008) colour-blind-safe palette
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "grey": "#999999",
}

#: roles used across the diagrams
C_OWN = OKABE_ITO["blue"]  # a page mapped by exactly one PTE
C_REUSED = OKABE_ITO["vermillion"]  # a page several PTEs map (the deduplicated one)
C_DEVICE = OKABE_ITO["green"]  # on the device (altmap)
C_TABLE = OKABE_ITO["orange"]  # page-table pages
C_VIRT = "#E8E8E8"  # virtual vmemmap pages
C_MUTED = OKABE_ITO["grey"]

#: one (colour, line style, marker) per kernel variant, so overlapping curves stay readable
KERNEL_STYLE = {
    "5.17": (OKABE_ITO["black"], "-", "o"),
    "5.19": (OKABE_ITO["sky"], "--", "s"),
    "6.6": (OKABE_ITO["blue"], "-", "^"),
    "v3": (OKABE_ITO["vermillion"], ":", "D"),
    "mm-2026": (OKABE_ITO["green"], "-.", "v"),
}
#: kernels drawn with large hollow markers so a curve hidden under another stays visible
HOLLOW = {"5.19"}

FONT = 9


class ShownFigure(Figure):
    """A :class:`~matplotlib.figure.Figure` that shows itself as a PNG in Jupyter, Voilà and
    nbconvert without ``pyplot`` (whose import would pick a GUI backend and register global
    hooks).  Its text form stays matplotlib's ``<Figure size WxH with N Axes>``.

    The PNG is rendered at :data:`HIDPI` times the figure's dpi and carries ``width`` /
    ``height`` display metadata of the 1x size, so it is crisp on a 2x display."""

    def _repr_png_(self) -> tuple[bytes, dict[str, int]]:
        w, h = self.get_size_inches() * self.dpi
        return to_png(self, dpi=self.dpi * HIDPI), {"width": round(w), "height": round(h)}

    def _repr_mimebundle_(self, include=None, exclude=None) -> tuple[dict, dict]:
        """The PNG at :attr:`HIDPI` times the figure's dpi, with its CSS size in the output
        metadata (IPython's "retina" convention: JupyterLab and the book draw it at that size,
        so it stays sharp on HiDPI screens).  The text form is filled in by IPython."""
        w, h = (round(v * self.dpi) for v in self.get_size_inches())
        png = to_png(self, dpi=self.dpi * HIDPI)
        return {"image/png": png}, {"image/png": {"width": w, "height": h}}

    def __repr__(self) -> str:
        return super().__repr__().replace(type(self).__name__, "Figure", 1)


def new_figure(width: float, height: float) -> Figure:
    """A fresh constrained-layout figure (inches) with the house font size."""
    fig = ShownFigure(figsize=(width, height), layout="constrained")
    fig.set_dpi(100)
    return fig


def place(ax: Any, patch: Patch) -> Patch:
    """``ax.add_patch(patch)`` without growing the data limits: every diagram here sets both
    axis limits itself, and ``Axes._update_patch_limits`` walks each patch's path (an arrow's
    in display coordinates) for nothing -- about 1 ms a patch, a quarter of building a
    mapping diagram.  Drawn the same (``add_artist``: same clip, same z-order, same SVG)."""
    ax.add_artist(patch)
    return patch


#: text extents measured by earlier renders: (renderer class, text, font, ismath, dpi, hinting)
_TEXT_METRICS: dict[tuple, tuple[float, float, float]] = {}


class _SharedTextMetrics:
    """While rendering, let every renderer of a class reuse the text extents earlier renderers
    measured.  Matplotlib caches them per renderer *instance*, and each ``savefig`` (plus the
    constrained-layout pass before it) starts a new one, so the same tick labels and titles
    were measured anew on every redraw -- about half the time of a widget update.  The extents
    depend only on the text, the font properties, the dpi and the hinting rcParams, all in the
    key.  Wraps the private ``matplotlib.text._get_text_metrics_with_cache`` (3.x); without it
    this does nothing."""

    def __enter__(self) -> None:
        import matplotlib.text as mtext

        self._mod = mtext
        self._orig = getattr(mtext, "_get_text_metrics_with_cache", None)
        if self._orig is None:
            return
        hint = (matplotlib.rcParams["text.hinting"], matplotlib.rcParams["text.hinting_factor"])

        def metrics(renderer: object, text: str, fontprop: object, ismath: object,
                    dpi: float) -> tuple[float, float, float]:
            key = (type(renderer).__name__, text, hash(fontprop), ismath, dpi, hint)
            hit = _TEXT_METRICS.get(key)
            if hit is None:
                if len(_TEXT_METRICS) > 50_000:
                    _TEXT_METRICS.clear()
                hit = _TEXT_METRICS[key] = self._orig(renderer, text, fontprop, ismath, dpi)
            return hit

        mtext._get_text_metrics_with_cache = metrics
        self._orig_layout = getattr(mtext.Text, "_get_layout", None)
        if self._orig_layout is not None:
            mtext.Text._get_layout = _cached_layout(self._orig_layout, hint)

    def __exit__(self, *exc: object) -> None:
        if self._orig is not None:
            self._mod._get_text_metrics_with_cache = self._orig
        if getattr(self, "_orig_layout", None) is not None:
            self._mod.Text._get_layout = self._orig_layout


#: text layouts computed by earlier renders (see :func:`_cached_layout`)
_TEXT_LAYOUTS: dict[tuple, tuple] = {}


def _cached_layout(orig: object, hint: tuple) -> object:
    """``Text._get_layout`` (3.x, private) remembered across renderers: a text's layout -- its
    lines' extents, their offsets and the aligned bounding box, all relative to the text's
    anchor -- depends only on what the key holds (the text as wrapped, font, dpi, rotation,
    alignments, line spacing, math parsing, hinting, renderer class), not on where the text
    is; the same tick labels, titles and box labels are laid out again on every redraw (a
    quarter of drawing a diagram).  Returns fresh objects each time (the Bbox is mutable)."""

    def layout(self: object, renderer: object) -> tuple:
        try:
            key = (type(renderer).__name__, self._get_wrapped_text(),
                   hash(self._fontproperties), self.get_usetex(),
                   self.get_figure(root=True).dpi, self.get_rotation(),
                   self.get_rotation_mode(), self._horizontalalignment,
                   self._verticalalignment, self._get_multialignment(), self._linespacing,
                   self.get_parse_math(), hint)
        except Exception:  # noqa: BLE001 - an unexpected Text: lay it out as matplotlib does
            return orig(self, renderer)
        hit = _TEXT_LAYOUTS.get(key)
        if hit is None:
            bbox, lines, corner = orig(self, renderer)
            if len(_TEXT_LAYOUTS) > 50_000:
                _TEXT_LAYOUTS.clear()
            hit = _TEXT_LAYOUTS[key] = (bbox.get_points().copy(), tuple(lines), corner)
        points, lines, corner = hit
        return Bbox(points.copy()), list(lines), corner

    return layout


def to_png(fig: Figure, dpi: int = 80) -> bytes:
    """Render ``fig`` with Agg to PNG bytes (what the widgets show).

    Glyph hinting is off here (``text.hinting: none``): the text-heavy diagrams rasterise about
    a third faster, and at screen resolution the text reads the same."""
    buf = io.BytesIO()
    with RENDER_LOCK, matplotlib.rc_context({"text.hinting": "none"}), _SharedTextMetrics():
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def to_svg(fig: Figure) -> bytes:
    """Render ``fig`` to SVG bytes with its text kept as text (``svg.fonttype: none``).

    What the live widgets show: sharp at any device pixel ratio (HiDPI), smaller than a 2x PNG
    and, with little to rasterise, faster to produce (``benchmarks/bench_widgets.py``).  The
    browser sets the text in the font matplotlib laid it out with (DejaVu Sans, named in the
    SVG).  Deterministic: fixed hash salt, no date."""
    buf = io.BytesIO()
    with RENDER_LOCK, matplotlib.rc_context({"svg.fonttype": "none",
                                             "svg.hashsalt": "vmemlab"}), _SharedTextMetrics():
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return buf.getvalue()


def fmt_bytes(n: float) -> str:
    """``40960`` -> ``'40 KiB'``; binary units, at most 3 significant digits."""
    n = float(n)
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if abs(n) >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.0f} {unit}" if v == int(v) or v >= 100 else f"{v:.3g} {unit}"
    return f"{n:.0f} B"
