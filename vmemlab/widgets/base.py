"""The explorer machinery: controls -> engine -> figures + numbers, live or static.

An :class:`Explorer` owns a *state* (a dict of control values).  :meth:`Explorer.render_static`
computes the view of a state without any front-end (what notebooks print and nbval checks);
:meth:`Explorer.update` does the same from the live controls and pushes the result into the
widget (SVG images with live text, an HTML summary).  Every :class:`~vmemlab.VmemlabError` the
engine raises becomes a message in the widget, never a traceback; a value no control offers
(``update(order='9')``, ``update(kernel='5.16')``) is refused with the
:class:`~vmemlab.ParameterError` text and the previous state stays.

Speed (issue 14, ``benchmarks/bench_widgets.py`` / ``bench_browser.py``): a rendered state
(numbers + encoded figures, still drawn from the model) is kept per explorer in an LRU cache
(:data:`~vmemlab.widgets.render.CACHE_STATES` states of 16-44 KB of SVG each), and once the
user moves a control, a look-ahead renders the states one more control move can reach
(nearest values of the control just moved first) in a child process, or where none can start
in a background thread in small steps (:mod:`vmemlab.widgets.render`).  The model and
matplotlib are not thread-safe, so every compute and every encode in the kernel holds
:data:`RENDER_LOCK`.
"""

from __future__ import annotations

import html
import numbers
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..arch import ARCHES, Arch, get_arch
from ..errors import ParameterError, VmemlabError
from ..hugetlb_vmemmap import alloc_hugetlb_folio, hugetlb_vmemmap_optimize
from ..kernels import KERNELS
from ..machine import Machine
from ..plan import Plan, plan
from ..units import format_size
from ..viz._style import RENDER_LOCK, to_svg
from ..viz.savings import explorable_orders
from .render import (
    AHEAD,
    AHEAD_STATES,
    CACHE_STATES,
    DISPLAY_DPI,
    Rendered,
    kernel_shell,
    log_update,
    state_key,
    steps,
)

__all__ = ["AHEAD", "Explorer", "View"]

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


def order_label(arch: str | Arch, order: int) -> str:
    """``'order 9 (2M pages)'`` (``arch``: a name or, resolved once by the caller, an Arch)."""
    return f"order {order} ({format_size(1 << (order + get_arch(arch).page_shift))} pages)"


def align_presets(arch: str | Arch) -> list[tuple[str, int]]:
    """Device-dax alignments of ``arch`` (a name or an Arch) as ``(label, order)``."""
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
    a = get_arch(arch)
    size = 1 << (order + a.page_shift)
    m = Machine(arch, kernel, ram=max(2 * size, 1 << a.section_size_bits, 256 << 20))
    folio = alloc_hugetlb_folio(m, size)
    hugetlb_vmemmap_optimize(m, folio)
    return m, folio


def check_order(arch: str | Arch, order: int) -> None:
    """Refuse an order the explorer does not offer on ``arch`` (a name or an Arch; a
    :class:`ParameterError`)."""
    a = get_arch(arch)
    orders = explorable_orders(a)
    if order not in orders:
        raise ParameterError("order", order, f"an order from {orders[0]} to {orders[-1]} on "
                             f"{a.name} (up to {format_size(1 << (orders[-1] + a.page_shift))})")



class Explorer:
    """Base class: subclasses set ``CONTROLS`` / ``DEFAULTS`` and implement :meth:`compute`."""

    TITLE = "explorer"
    #: the controls this explorer shows, in order
    CONTROLS: tuple[str, ...] = ("arch", "kernel", "align", "order", "map", "size", "strict")
    DEFAULTS: dict[str, Any] = {"arch": "x86_64", "kernel": "6.6", "order": 9, "map": "mem",
                                "size": "1G", "strict": False}
    #: values of explorer-specific controls (toggle buttons)
    OPTIONS: dict[str, tuple[Any, ...]] = {}
    #: the control swept by the benchmark and the combination tests
    SLIDER = "order"
    #: render ahead the states one control move away, once the user has moved a control
    LOOK_AHEAD = True
    #: controls whose every value the look-ahead renders before any other state: the moves
    #: that cost the model far more than the rest (SavingsExplorer: a new arch or map is a
    #: new set of curves, 0.2-7 s of plans; a kernel or order move is one more point on them)
    AHEAD_FIRST: tuple[str, ...] = ()

    def __init__(self, **state: Any) -> None:
        #: a refusal of the constructor's state, shown by the widget above the defaults
        self._refused: str | None = None
        try:
            self.state = self.validate({**self.DEFAULTS, **state})
        except ParameterError as e:
            self.state = dict(self.DEFAULTS)
            self._refused = f"Not possible: {e}; showing the defaults"
        self._ui: Any = None
        self._syncing = False
        self._live = False  # set by the first control the user moves
        self._cache: OrderedDict[tuple, Rendered] = OrderedDict()
        self.last: View | None = None
        #: seconds the last :meth:`update` spent encoding figures (0 when it came from the cache)
        self.last_png_seconds = 0.0
        #: whether the last :meth:`update` was served from the cache
        self.last_cached = False

    # -- model ----------------------------------------------------------------------------
    def compute(self, **state: Any) -> View:
        """The view of ``state``; may raise :class:`~vmemlab.VmemlabError`."""
        raise NotImplementedError

    def control_values(self, name: str, state: dict[str, Any]) -> list[Any] | None:
        """The values control ``name`` offers in ``state`` (``None``: not a control)."""
        if name in self.OPTIONS:
            return list(self.OPTIONS[name])
        if name == "arch":
            return list(ARCHES)
        if name == "kernel":
            return list(KERNELS)
        if name == "order":
            return explorable_orders(state["arch"]) if state.get("arch") in ARCHES else None
        if name == "map":
            return list(MAPS)
        if name == "size":
            return list(SIZES)
        if name == "strict":
            return [False, True]
        return None

    def validate(self, state: dict[str, Any]) -> dict[str, Any]:
        """``state`` with every value one its control offers (numpy integers and booleans
        become Python ones), or a :class:`ParameterError` naming the first that is not."""
        unknown = set(state) - set(self.DEFAULTS)
        if unknown:
            raise ParameterError("state", sorted(unknown),
                                 f"controls of {type(self).__name__}: " + ", ".join(self.DEFAULTS))
        out: dict[str, Any] = {}
        for name in self.DEFAULTS:  # arch before order: the order's range depends on it
            v = state[name]
            if name == "order" and "order" not in self.OPTIONS:
                if not isinstance(v, numbers.Integral) or isinstance(v, bool):
                    raise ParameterError("order", v, "an integer page order")
                v = int(v)
                check_order(get_arch(out["arch"]), v)
            elif name == "strict":
                if not isinstance(v, (bool, np.bool_)):
                    raise ParameterError("strict", v, "True or False")
                v = bool(v)
            else:
                allowed = self.control_values(name, out)
                if allowed is not None and not any(type(v) is type(a) and v == a
                                                   for a in allowed):
                    raise ParameterError(name, v, "one of " + ", ".join(map(str, allowed)))
            out[name] = v
        return out

    def ahead_steps(self, state: dict[str, Any]) -> Iterator[None]:
        """In the look-ahead process, before rendering ``state``: the long part of its model
        work in small steps (yielding between them), after each of which the process may give
        the state up for a newer one.  Default: none."""
        return iter(())

    def ahead_cost(self, state: dict[str, Any]) -> int:
        """How much model work rendering ``state`` fresh takes, in the explorer's own unit
        (the look-ahead renders the cheapest :attr:`AHEAD_FIRST` states first).  Default 0."""
        return 0

    def ahead_memo(self, state: dict[str, Any]) -> Any:
        """In the look-ahead process, after rendering ``state``: model results worth handing
        to the kernel's explorer (:meth:`absorb_memo`), picklable; ``None`` (the default):
        nothing, the rendered state is all it needs."""
        return None

    def absorb_memo(self, memo: Any) -> None:
        """In the kernel: take what :meth:`ahead_memo` returned in the look-ahead process."""

    def _view(self, state: dict[str, Any]) -> View:
        t0 = time.perf_counter()
        try:
            view = self.compute(**self.validate(state))
        except VmemlabError as e:
            view = View(dict(state), message=f"Not possible: {e}")
        view.seconds = time.perf_counter() - t0
        return view

    def render_static(self, **state: Any) -> View:
        """Render ``state`` (defaults for what is not given) without a front-end; refusals
        (a value no control offers, a configuration the kernel refuses) come back as
        ``View.message``."""
        with RENDER_LOCK:
            view = self._view({**self.DEFAULTS, **state})
        self.last = view
        return view

    def _rendered(self, state: dict[str, Any]) -> Rendered:
        """The cached rendering of validated ``state``, computed and encoded on a miss."""
        key = state_key(state)
        hit = self._cache.get(key)
        if hit is None:
            steps(self._render_steps(state))
            hit = self._cache[key]
        else:
            self._cache.move_to_end(key)  # least recently *used* goes first
        return hit

    def _render_steps(self, state: dict[str, Any]) -> Iterator[None]:
        """Render validated ``state`` into the cache in steps (the model, then each figure's
        SVG), each under :data:`RENDER_LOCK`, yielding between them (the look-ahead stands
        aside there while a foreground update runs).  Nothing when it is cached already."""
        key = state_key(state)
        if key in self._cache:
            return
        with RENDER_LOCK:
            view = self._view(state)
        images, enc = [], 0.0
        for f in view.figures:
            yield
            with RENDER_LOCK:
                t0 = time.perf_counter()
                images.append(to_svg(f))
                enc += time.perf_counter() - t0
        # the figures are in the SVGs now: a cached state keeps its numbers and images, not
        # its matplotlib figures (about 1.2 MB each against 16-44 KB of SVG)
        self._store(key, Rendered(
            replace(view, figures=[]), tuple(images),
            tuple(f"{round(f.get_figwidth() * DISPLAY_DPI)}px" for f in view.figures),
            self._status_html(view, state=state), enc))

    def _store(self, key: tuple, r: Rendered) -> None:
        """Put a rendered state into the cache (a state rendered meanwhile stays as it is),
        dropping the least recently used beyond :data:`CACHE_STATES`."""
        self._cache.setdefault(key, r)
        while len(self._cache) > CACHE_STATES:
            self._cache.popitem(last=False)

    @staticmethod
    def _status_html(view: View, refused: str | None = None,
                     state: dict[str, Any] | None = None) -> str:
        # the explorer's whole state (a control the view ignores still changes it)
        key = html.escape(",".join(f"{k}={v}" for k, v in (state or view.state).items()),
                          quote=True)
        parts = [f"<div class='vmemlab-status' data-state='{key}'>"]
        if refused:
            parts.append(f"<div class='vmemlab-refused' style='color:#B35806;border:1px solid "
                         f"#D55E00;padding:4px;margin-bottom:4px'><b>{html.escape(refused)}</b>"
                         "</div>")
        if view.message:
            parts.append(f"<div style='color:#B35806;border:1px solid #D55E00;padding:4px'>"
                         f"<b>{html.escape(view.message)}</b></div>")
        else:
            rows = "".join(f"<tr><td>{html.escape(k)}</td><td><b>{html.escape(str(v))}</b>"
                           f"</td></tr>" for k, v in view.numbers.items())
            parts.append(f"<table>{rows}</table>")
            parts += [f"<div><i>{html.escape(n)}</i></div>" for n in view.notes]
        return "".join(parts) + "</div>"

    # -- widgets --------------------------------------------------------------------------
    def _make_controls(self) -> dict[str, Any]:
        import ipywidgets as w

        s = self.state
        arch = s.get("arch", "x86_64")
        orders = explorable_orders(arch) if arch in ARCHES else [0]
        c: dict[str, Any] = {}
        # every label and button as wide as its text needs (no "m…" / "ot…")
        label = {"description_width": "initial"}
        buttons = {"description_width": "initial", "button_width": "auto"}
        if "arch" in self.CONTROLS:
            c["arch"] = w.Dropdown(options=list(ARCHES), value=arch, description="arch",
                                   style=label, layout=w.Layout(width="max-content"))
        if "kernel" in self.CONTROLS:
            c["kernel"] = w.Dropdown(options=list(KERNELS), value=s["kernel"],
                                     description="kernel", style=label,
                                     layout=w.Layout(width="max-content"))
        if "align" in self.CONTROLS:
            c["align"] = w.ToggleButtons(options=align_presets(arch) + [("other", -1)],
                                         value=s["order"] if s["order"] in dict(
                                             align_presets(arch)).values() else -1,
                                         description="dax align", style=buttons)
        if "order" in self.CONTROLS:
            c["order"] = w.IntSlider(min=orders[0], max=orders[-1],
                                     value=min(max(s["order"], orders[0]), orders[-1]),
                                     description="page order", continuous_update=False,
                                     style=label)
        if "map" in self.CONTROLS:
            c["map"] = w.ToggleButtons(options=list(MAPS), value=s["map"], description="map",
                                       style=buttons)
        if "size" in self.CONTROLS:
            c["size"] = w.Dropdown(options=list(SIZES), value=s["size"], description="namespace",
                                   style=label, layout=w.Layout(width="max-content"))
        if "strict" in self.CONTROLS:
            c["strict"] = w.Checkbox(value=s["strict"], description="device-dax aligns only",
                                     layout=w.Layout(width="max-content"), indent=False)
        for name, opts in self.OPTIONS.items():
            if name in self.CONTROLS and name not in c:
                c[name] = w.ToggleButtons(options=list(opts), value=s[name], description=name,
                                          style=buttons)
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
        self._live = True
        self.update(**{name: value})

    def _sync_controls(self) -> None:
        """Make the controls show ``self.state`` (slider range follows the arch)."""
        if self._ui is None:
            return
        c = self.controls
        s = self.state
        self._syncing = True
        try:
            a = ARCHES.get(s.get("arch", "x86_64"))  # resolved once for every control
            if "order" in c and a is not None:
                orders = explorable_orders(a)
                c["order"].min, c["order"].max = orders[0], orders[-1]
                if orders[0] <= s["order"] <= orders[-1]:
                    c["order"].value = s["order"]
            if "align" in c and a is not None:
                presets = align_presets(a)
                c["align"].options = presets + [("other", -1)]
                c["align"].value = s["order"] if s["order"] in dict(presets).values() else -1
            for k in ("arch", "kernel", "map", "size", "strict", *self.OPTIONS):
                if k in c and k in s and c[k].value != s[k]:
                    c[k].value = s[k]
        finally:
            self._syncing = False

    def _clamped(self, state: dict[str, Any]) -> dict[str, Any]:
        """Changing the arch clamps the order into the new arch's range (as the slider
        would)."""
        st = dict(state)
        if (st.get("arch") in ARCHES and "order" in st and "order" not in self.OPTIONS
                and isinstance(st["order"], numbers.Integral)):
            orders = explorable_orders(st["arch"])
            st["order"] = min(max(int(st["order"]), orders[0]), orders[-1])
        return st

    def update(self, **changes: Any) -> View:
        """Apply control changes, recompute, redraw.  Changing the arch clamps the order into
        the new arch's range (the slider would do the same).

        A value no control offers (``order='9'``, ``kernel='5.16'``, an unknown control) is
        refused: the returned view carries the :class:`ParameterError` text, the widget shows
        it above the figures of the state it keeps, and the next update starts from that
        state.  A configuration the kernel refuses is a state like any other (its message is
        shown; a control move gets out of it).  The returned view carries the numbers and
        notes; its figures are the widget's SVG images (:meth:`render_static` returns the
        matplotlib figures)."""
        cand = {**self.state, **changes}
        if "arch" in changes:
            cand = self._clamped(cand)
        try:
            state = self.validate(cand)
        except ParameterError as e:
            view = View(cand, message=f"Not possible: {e}; kept "
                        + ", ".join(f"{k}={v}" for k, v in self.state.items()))
            self._sync_controls()  # the controls go back to the kept state
            if self._ui is not None:
                self.status.value = (self._status_html(self.last, refused=view.message)
                                     if self.last is not None else self._status_html(view))
            return view
        t0 = time.perf_counter()
        with AHEAD.foreground():
            key = state_key(state)
            self.last_cached = key in self._cache
            if not self.last_cached:
                AHEAD.wait_remote(self, key)  # the look-ahead process is on it already
            r = self._rendered(state)
        self.state = state
        self.last = r.view
        self.last_png_seconds = 0.0 if self.last_cached else r.encode_seconds
        self._sync_controls()
        if self._ui is not None:
            self._show(r)
            if self._refused:
                self.status.value = self._status_html(r.view, refused=self._refused)
                self._refused = None
        if self._live and self.LOOK_AHEAD and kernel_shell() is not None:
            AHEAD.quiet()
            AHEAD.submit(self, self.reachable(state, first=[k for k in changes if k in state]))
            log_update(explorer=self.TITLE, state=state, cached=self.last_cached,
                       seconds=time.perf_counter() - t0, model=r.view.seconds,
                       encode=r.encode_seconds, end=time.time())
        return r.view

    def reachable(self, state: dict[str, Any], first: list[str] | None = None
                  ) -> list[dict[str, Any]]:
        """States one control move away from ``state``, nearest first: the neighbours of the
        controls in ``first`` (the one just moved) and every value of the
        :attr:`AHEAD_FIRST` controls (cheapest first, :meth:`ahead_cost`), then rounds over
        every control."""
        per: list[list[dict[str, Any]]] = []
        per_names: list[str] = []  # the control each list in ``per`` moves
        lead = [*(first or []), *(k for k in self.AHEAD_FIRST if k not in (first or []))]
        names = [*lead, *(k for k in state if k not in lead)]
        for name in names:
            vals = self.control_values(name, state)
            if not vals or state[name] not in vals:
                continue
            i = vals.index(state[name])
            seq = sorted((j for j in range(len(vals)) if j != i),
                         key=lambda j: (abs(j - i), j < i))
            moves = [self._clamped({**state, name: vals[j]}) for j in seq]
            if name in self.AHEAD_FIRST:  # each is one click away: the cheapest first
                moves.sort(key=self.ahead_cost)
            per.append(moves)
            per_names.append(name)
            if name == "order" and "align" in self.CONTROLS and state.get("arch") in ARCHES:
                # the dax-align buttons jump the order to the presets
                per.append([{**state, "order": o} for _, o in align_presets(state["arch"])
                            if o != state["order"]])
                per_names.append("align")
        out: list[dict[str, Any]] = []
        seen = {state_key(state)}
        # per round: every value of an AHEAD_FIRST control, two of the control just moved,
        # every value of a control with three or fewer (buttons, checkboxes: each is one
        # click away), one of each other
        take = [len(lst) if name in self.AHEAD_FIRST or len(lst) <= 3
                else 2 if k == 0 and first else 1
                for k, (name, lst) in enumerate(zip(per_names, per))]
        while any(per) and len(out) < AHEAD_STATES:
            for k, lst in enumerate(per):
                for _ in range(take[k]):
                    if lst:
                        st = lst.pop(0)
                        if state_key(st) not in seen:
                            seen.add(state_key(st))
                            out.append(st)
        return out[:AHEAD_STATES]

    def _show(self, r: Rendered) -> None:
        import ipywidgets as w

        imgs = list(self.images.children)
        while len(imgs) < len(r.images):
            imgs.append(w.Image(format="svg+xml",
                                layout=w.Layout(max_width="100%", height="auto")))
        imgs = imgs[: len(r.images)]
        for img, data, width in zip(imgs, r.images, r.widths):
            img.value = data
            if img.layout.width != width:
                img.layout.width = width
        self.images.children = tuple(imgs)
        # the status goes last: when it shows this state, the figures sent before it are in
        self.status.value = r.status

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
            shell = kernel_shell()
            if shell is not None and self.LOOK_AHEAD:
                # in a kernel a front-end may show the widget: render ahead once it is idle
                AHEAD.hook(shell)
                self._live = True
                AHEAD.submit(self, self.reachable(self.state, first=[self.SLIDER]),
                             replace=False)
        return self._ui

    def _ipython_display_(self) -> None:  # pragma: no cover - needs IPython
        from IPython.display import display

        display(self.ui)

    def slider_values(self) -> list[Any]:
        """Values of :attr:`SLIDER` for the current state (what the benchmark sweeps)."""
        return self.control_values(self.SLIDER, self.state) or []
