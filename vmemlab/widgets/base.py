"""The explorer machinery: controls -> engine -> figures + numbers, live or static.

An :class:`Explorer` owns a *state* (a dict of control values).  :meth:`Explorer.render_static`
computes the view of a state without any front-end (what notebooks print and nbval checks);
:meth:`Explorer.update` does the same from the live controls and pushes the result into the
widget (PNG images, an HTML summary).  Every :class:`~vmemlab.VmemlabError` the engine raises
becomes a message in the widget, never a traceback.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from matplotlib.figure import Figure

from ..arch import ARCHES, get_arch
from ..errors import ParameterError, VmemlabError
from ..kernels import KERNELS
from ..plan import Plan, plan
from ..units import format_size
from ..viz._style import to_png
from ..viz.savings import explorable_orders

SIZES = ("2M", "4M", "16M", "128M", "1G", "2G", "4G", "16G")
MAPS = ("mem", "dev")


@dataclass
class View:
    """One rendered state: figures, key numbers, a text summary, or a message."""

    state: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    message: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.message is None

    @property
    def text(self) -> str:
        """Plain-text summary (stable across runs: no timings, no addresses)."""
        head = ", ".join(f"{k}={v}" for k, v in self.state.items())
        if self.message:
            return f"[{head}]\n{self.message}"
        w = max((len(k) for k in self.numbers), default=0)
        lines = [f"[{head}]"] + [f"{k:<{w}}  {v}" for k, v in self.numbers.items()]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text)

    def _ipython_display_(self) -> None:  # pragma: no cover - needs IPython
        from IPython.display import display

        for fig in self.figures:
            display(fig)
        print(self.text)


def order_label(arch: str, order: int) -> str:
    """``'order 9 (2M pages)'``."""
    return f"order {order} ({format_size(1 << (order + get_arch(arch).page_shift))} pages)"


def align_presets(arch: str) -> list[tuple[str, int]]:
    """Device-dax alignments of ``arch`` as ``(label, order)``."""
    a = get_arch(arch)
    return [(format_size(al), o) for al, o in zip(a.dax_aligns, a.dax_align_orders())]


@lru_cache(maxsize=96)
def cached_plan(size: str, order: int, map: str, arch: str, kernel: str, strict: bool) -> Plan:
    """:func:`vmemlab.plan` of one explorer state.  Cached: the model is deterministic and the
    explorers only read the plans they draw."""
    a = get_arch(arch)
    return plan(size, align=1 << (order + a.page_shift), map=map, arch=arch, kernel=kernel,
                strict=strict)


@lru_cache(maxsize=32)
def cached_hvo(arch: str, kernel: str, order: int) -> tuple[Any, Any]:
    """A machine booted with just enough RAM for one HugeTLB page of ``order``, the page
    allocated and HVO applied (:mod:`vmemlab.hugetlb_vmemmap`): ``(machine, folio)``.  Cached
    like :func:`cached_plan`."""
    from ..hugetlb_vmemmap import alloc_hugetlb_folio, hugetlb_vmemmap_optimize
    from ..machine import Machine

    a = get_arch(arch)
    size = 1 << (order + a.page_shift)
    m = Machine(arch, kernel, ram=max(2 * size, 1 << a.section_size_bits, 256 << 20))
    folio = alloc_hugetlb_folio(m, size)
    hugetlb_vmemmap_optimize(m, folio)
    return m, folio


def check_order(arch: str, order: int) -> None:
    """Refuse an order the explorer does not offer on ``arch`` (a :class:`ParameterError`)."""
    orders = explorable_orders(arch)
    if order not in orders:
        raise ParameterError("order", order, f"an order from {orders[0]} to {orders[-1]} on "
                             f"{arch} (up to {format_size(1 << (orders[-1] + get_arch(arch).page_shift))})")


class Explorer:
    """Base class: subclasses set ``CONTROLS`` / ``DEFAULTS`` and implement :meth:`compute`."""

    TITLE = "explorer"
    #: the controls this explorer shows, in order
    CONTROLS: tuple[str, ...] = ("arch", "kernel", "align", "order", "map", "size", "strict")
    DEFAULTS: dict[str, Any] = {"arch": "x86_64", "kernel": "6.6", "order": 9, "map": "mem",
                                "size": "1G", "strict": False}
    #: the control swept by the benchmark and the combination tests
    SLIDER = "order"
    DPI = 72

    def __init__(self, **state: Any) -> None:
        self.state = {k: v for k, v in self.DEFAULTS.items()}
        self.state.update(state)
        self._ui: Any = None
        self._syncing = False
        self.last: View | None = None
        #: seconds the last :meth:`_show` spent rasterising figures to PNG
        self.last_png_seconds = 0.0

    # -- model ----------------------------------------------------------------------------
    def compute(self, **state: Any) -> View:
        """The view of ``state``; may raise :class:`~vmemlab.VmemlabError`."""
        raise NotImplementedError

    def render_static(self, **state: Any) -> View:
        """Render ``state`` (defaults for what is not given) without a front-end; engine
        refusals come back as ``View.message``."""
        st = {**self.DEFAULTS, **state}
        unknown = set(st) - set(self.DEFAULTS)
        t0 = time.perf_counter()
        try:
            if unknown:
                raise ParameterError("state", sorted(unknown),
                                     f"controls of {type(self).__name__}: "
                                     + ", ".join(self.DEFAULTS))
            view = self.compute(**st)
        except VmemlabError as e:
            view = View(st, message=f"Not possible: {e}")
        view.seconds = time.perf_counter() - t0
        self.last = view
        return view

    # -- widgets --------------------------------------------------------------------------
    def _make_controls(self) -> dict[str, Any]:
        import ipywidgets as w

        s = self.state
        arch = s.get("arch", "x86_64")
        orders = explorable_orders(arch) if arch in ARCHES else [0]
        c: dict[str, Any] = {}
        lay = w.Layout(width="auto")
        if "arch" in self.CONTROLS:
            c["arch"] = w.Dropdown(options=list(ARCHES), value=arch, description="arch")
        if "kernel" in self.CONTROLS:
            c["kernel"] = w.Dropdown(options=list(KERNELS), value=s["kernel"],
                                     description="kernel")
        if "align" in self.CONTROLS:
            c["align"] = w.ToggleButtons(options=align_presets(arch) + [("other", -1)],
                                         value=s["order"] if s["order"] in dict(
                                             align_presets(arch)).values() else -1,
                                         description="dax align", style={"button_width": "52px"})
        if "order" in self.CONTROLS:
            c["order"] = w.IntSlider(min=orders[0], max=orders[-1],
                                     value=min(max(s["order"], orders[0]), orders[-1]),
                                     description="page order", continuous_update=False)
        if "map" in self.CONTROLS:
            c["map"] = w.ToggleButtons(options=list(MAPS), value=s["map"], description="map",
                                       style={"button_width": "52px"})
        if "size" in self.CONTROLS:
            c["size"] = w.Dropdown(options=list(SIZES), value=s["size"], description="namespace")
        if "strict" in self.CONTROLS:
            c["strict"] = w.Checkbox(value=s["strict"], description="device-dax aligns only",
                                     layout=lay, indent=False)
        for name, opts in getattr(self, "OPTIONS", {}).items():
            if name in self.CONTROLS and name not in c:
                c[name] = w.ToggleButtons(options=list(opts), value=s[name], description=name)
        for name, ctl in c.items():
            ctl.observe(lambda ch, n=name: self._on_change(n, ch["new"]), names="value")
        return c

    def _on_change(self, name: str, value: Any) -> None:
        if self._syncing:
            return
        if name == "align":
            if value == -1:
                return
            name = "order"
        self.update(**{name: value})

    def _sync_controls(self) -> None:
        """Make the controls show ``self.state`` (slider range follows the arch)."""
        if self._ui is None:
            return
        c = self.controls
        s = self.state
        self._syncing = True
        try:
            arch = s.get("arch", "x86_64")
            if "order" in c and arch in ARCHES:
                orders = explorable_orders(arch)
                c["order"].min, c["order"].max = orders[0], orders[-1]
                if orders[0] <= s["order"] <= orders[-1]:
                    c["order"].value = s["order"]
            if "align" in c and arch in ARCHES:
                presets = align_presets(arch)
                c["align"].options = presets + [("other", -1)]
                c["align"].value = s["order"] if s["order"] in dict(presets).values() else -1
            for k in ("arch", "kernel", "map", "size", "strict", *getattr(self, "OPTIONS", {})):
                if k in c and k in s and c[k].value != s[k]:
                    c[k].value = s[k]
        finally:
            self._syncing = False

    def update(self, **changes: Any) -> View:
        """Apply control changes, recompute, redraw.  Changing the arch clamps the order into
        the new arch's range (the slider would do the same)."""
        self.state.update(changes)
        if "arch" in changes and "order" in self.state and self.state["arch"] in ARCHES:
            orders = explorable_orders(self.state["arch"])
            self.state["order"] = min(max(self.state["order"], orders[0]), orders[-1])
        view = self.render_static(**self.state)
        self._sync_controls()
        if self._ui is not None:
            self._show(view)
        return view

    def _show(self, view: View) -> None:
        import ipywidgets as w

        self.last_png_seconds = 0.0
        if view.message:
            self.status.value = (f"<div style='color:#B35806;border:1px solid #D55E00;"
                                 f"padding:4px'><b>{html.escape(view.message)}</b></div>")
            self.images.children = ()
            return
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td><b>{html.escape(str(v))}</b></td></tr>"
                       for k, v in view.numbers.items())
        notes = "".join(f"<div><i>{html.escape(n)}</i></div>" for n in view.notes)
        self.status.value = f"<table>{rows}</table>{notes}"
        imgs = list(self.images.children)
        while len(imgs) < len(view.figures):
            imgs.append(w.Image(format="png"))
        imgs = imgs[: len(view.figures)]
        t0 = time.perf_counter()
        for img, fig in zip(imgs, view.figures):
            img.value = to_png(fig, dpi=self.DPI)
        self.last_png_seconds = time.perf_counter() - t0
        self.images.children = tuple(imgs)

    @property
    def ui(self) -> Any:
        """The ipywidgets box (built on first use)."""
        if self._ui is None:
            import ipywidgets as w

            self.controls = self._make_controls()
            self.status = w.HTML()
            self.images = w.VBox()
            self._ui = w.VBox([w.HTML(f"<h4>{html.escape(self.TITLE)}</h4>"),
                               w.HBox(list(self.controls.values())[:3],
                                      layout=w.Layout(flex_flow="row wrap")),
                               w.HBox(list(self.controls.values())[3:],
                                      layout=w.Layout(flex_flow="row wrap")),
                               self.status, self.images])
            self.update()
        return self._ui

    def _ipython_display_(self) -> None:  # pragma: no cover - needs IPython
        from IPython.display import display

        display(self.ui)

    def slider_values(self) -> list[Any]:
        """Values of :attr:`SLIDER` for the current state (what the benchmark sweeps)."""
        if self.SLIDER == "order":
            return explorable_orders(self.state.get("arch", "x86_64"))
        return list(self.OPTIONS[self.SLIDER])  # type: ignore[attr-defined]
