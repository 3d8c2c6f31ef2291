"""The explorers: each wires controls to the engine and to :mod:`vmemlab.viz`.

=====================  ===================================================================
:class:`MappingExplorer`    vmemmap mapping of one compound page + its page tables
:class:`PlacementExplorer`  map=mem vs map=dev placement of the memmap
:class:`SavingsExplorer`    RAM per TiB against compound order, kernels compared
:class:`StructPageExplorer` struct page fields of head / tails, read through the vmemmap
:class:`GupExplorer`        GUP-fast counters and modelled time, beside the cover letter
=====================  ===================================================================
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import gup
from ..arch import Arch, get_arch
from ..errors import ParameterError, VmemlabError
from ..kernels import KERNELS
from ..page import page_is_fake_head, pfn_to_page
from ..units import format_size
from ..viz._style import fmt_bytes
from ..viz.gupview import cover_letter_results, gup_view
from ..viz.mapping import vmemmap_mapping
from ..viz.placement import placement_view
from ..viz.savings import (
    SavingsPoint,
    chunk_size,
    explorable_orders,
    known_points,
    remember_points,
    savings_curves,
    savings_point,
)
from ..viz.structpage import struct_page_view
from ..viz.tables_view import pagetable_view
from .base import (
    Explorer,
    View,
    align_presets,
    cached_hvo,
    cached_plan,
    check_order,
    order_label,
)


def _align_note(a: Arch, order: int, strict: bool) -> list[str]:
    presets = dict(align_presets(a))
    if order in presets.values():
        return []
    offered = ", ".join(presets)
    how = "refused (strict)" if strict else "explored with plan(strict=False)"
    return [f"{order_label(a, order)} is not a device-dax alignment on {a.name} "
            f"(offered: {offered}); {how}"]


class MappingExplorer(Explorer):
    """Vmemmap mapping diagram + page-table view of compound page 0 of a namespace."""

    TITLE = "vmemmap of one compound page"
    CONTROLS = ("arch", "kernel", "align", "order", "map", "size", "strict", "view")
    DEFAULTS = {"arch": "x86_64", "kernel": "6.6", "order": 9, "map": "mem", "size": "16M",
                "strict": False, "view": "mapping"}
    OPTIONS = {"view": ("mapping", "dax vs HVO", "page tables")}

    def compute(self, *, arch: str, kernel: str, order: int, map: str, size: str,
                strict: bool, view: str = "mapping") -> View:
        if view not in self.OPTIONS["view"]:
            raise ParameterError("view", view, "one of " + ", ".join(self.OPTIONS["view"]))
        a = get_arch(arch)  # resolved once per update
        check_order(a, order)
        p = cached_plan(size, order, map, arch, kernel, strict)
        figs = []
        hvo_note = None
        if view == "mapping":
            figs.append(vmemmap_mapping(p, 0))
        elif view == "dax vs HVO":
            try:
                figs.append(vmemmap_mapping(p, 0, hvo=cached_hvo(arch, kernel, order)))
            except VmemlabError as e:
                figs.append(vmemmap_mapping(p, 0))
                hvo_note = f"no HugeTLB/HVO panel: {e}"
        else:
            figs.append(pagetable_view(p))
        state = {"arch": arch, "kernel": kernel, "order": order, "map": map, "size": size,
                 "strict": strict, "view": view}
        out = View(state)
        out.figures = figs
        out.numbers = {
            "compound pages": f"{p.compound_pages} × {format_size(p.align)}",
            "RAM spent": f"{fmt_bytes(p.ram_bytes)} ({p.ram_data_pages} struct-page pages + "
                         f"{p.ram_pagetable_pages} page-table pages)",
            "memmap on device": f"{p.device_data_pages} pages",
            "saved vmemmap pages / compound page":
                f"{p.saved_vmemmap_pages_per_compound} of {p.vmemmap_pages_per_compound}",
            "struct pages initialised": f"{p.struct_pages_initialised} of {p.struct_pages}",
            "RAM per TiB": fmt_bytes(savings_point(arch, kernel, order, map).bytes_per_tib),
        }
        out.notes = _align_note(a, order, strict)
        if not p.optimised:
            out.notes.append("vmemmap_can_optimize() is false here: no deduplication")
        if hvo_note:
            out.notes.append(hvo_note)
        return out


class PlacementExplorer(Explorer):
    """map=mem vs map=dev for the same namespace."""

    TITLE = "where the memmap lives: RAM or device"
    CONTROLS = ("arch", "kernel", "align", "order", "size", "strict")
    DEFAULTS = {"arch": "x86_64", "kernel": "6.6", "order": 9, "size": "1G", "strict": False}

    def compute(self, *, arch: str, kernel: str, order: int, size: str, strict: bool) -> View:
        a = get_arch(arch)  # resolved once per update
        check_order(a, order)
        view = View({"arch": arch, "kernel": kernel, "order": order, "size": size,
                     "strict": strict})
        plans = []
        for mp in ("mem", "dev"):
            try:
                plans.append(cached_plan(size, order, mp, arch, kernel, strict))
            except VmemlabError as e:
                if mp == "mem":
                    raise
                view.notes.append(f"map=dev not possible: {e}")
        view.figures = [placement_view(*plans)]
        for p in plans:
            view.numbers[f"map={p.map}: RAM"] = (f"{fmt_bytes(p.ram_bytes)} "
                                                 f"({p.ram_data_pages} + "
                                                 f"{p.ram_pagetable_pages} pages)")
            view.numbers[f"map={p.map}: on device"] = (
                f"{fmt_bytes(p.device_data_pages * p.page_size)} "
                f"(+{p.device_align_pages} pages alignment)")
            view.numbers[f"map={p.map}: struct pages initialised"] = str(
                p.struct_pages_initialised)
        view.notes += _align_note(a, order, strict)
        return view


class SavingsExplorer(Explorer):
    """Savings curves of one arch, all kernel variants, the current configuration marked."""

    TITLE = "vmemmap RAM per TiB against compound order"
    CONTROLS = ("arch", "kernel", "align", "order", "map")
    DEFAULTS = {"arch": "x86_64", "kernel": "6.6", "order": 9, "map": "mem"}
    AHEAD_FIRST = ("arch", "map")

    def __init__(self, **state: Any) -> None:
        super().__init__(**state)
        self._handed: set[tuple[str, str]] = set()  # (arch, map) points sent to the kernel

    def compute(self, *, arch: str, kernel: str, order: int, map: str) -> View:
        a = get_arch(arch)  # resolved once per update
        check_order(a, order)
        pt = savings_point(arch, kernel, order, map)
        base = savings_point(arch, "5.17", order, map)
        view = View({"arch": arch, "kernel": kernel, "order": order, "map": map})
        view.figures = [savings_curves([arch], list(KERNELS), map=map,
                                       current={"arch": arch, "kernel": kernel,
                                                "order": order})]
        view.numbers = {
            "RAM per TiB": fmt_bytes(pt.bytes_per_tib),
            "struct-page pages per TiB": str(pt.ram_data_pages),
            "PTE-table pages per TiB": str(pt.pte_table_pages),
            "saved vs no deduplication (5.17)": fmt_bytes(base.bytes_per_tib - pt.bytes_per_tib),
            "struct pages initialised per TiB": str(pt.struct_pages_initialised),
            "deduplicated": "yes" if pt.optimised else "no",
        }
        view.notes = _align_note(a, order, False)
        return view

    def ahead_steps(self, state: dict[str, Any]) -> Iterator[None]:
        """Every point of the state's curves, one at a time (arm64-64k's 112 take 7 s)."""
        for k in KERNELS:
            for o in explorable_orders(state["arch"]):
                try:
                    savings_point(state["arch"], k, o, state["map"])
                except VmemlabError:
                    pass  # a gap in the curve
                yield

    def ahead_cost(self, state: dict[str, Any]) -> int:
        """Sections the plans of the state's curves populate (each point plans ``chunk`` and
        twice that: 3 chunks), the model's unit of work: x86_64 1080, arm64-64k 344064."""
        a = get_arch(state["arch"])
        per_kernel = sum(3 * chunk_size(state["arch"], o) >> a.section_size_bits
                         for o in explorable_orders(a))
        return per_kernel * len(KERNELS)

    def ahead_memo(self, state: dict[str, Any]) -> list[SavingsPoint]:
        """Every point of ``state``'s arch and map (its figure drew all the kernels' curves),
        once per arch and map: with them the kernel draws a state the look-ahead has not
        reached in one figure's time, not after the 0.2-7 s of plans of a new arch."""
        key = (state["arch"], state["map"])
        if key in self._handed:
            return []
        self._handed.add(key)
        return known_points(*key)

    def absorb_memo(self, memo: list[SavingsPoint]) -> None:
        remember_points(memo)


class StructPageExplorer(Explorer):
    """Fields of the head, first/second tails and later tails of compound page 0."""

    TITLE = "struct pages, read through the vmemmap"
    CONTROLS = ("arch", "kernel", "align", "order", "map", "strict", "memmap")
    DEFAULTS = {"arch": "x86_64", "kernel": "6.6", "order": 9, "map": "mem", "strict": False,
                "memmap": "device-dax"}
    OPTIONS = {"memmap": ("device-dax", "HugeTLB HVO")}

    def compute(self, *, arch: str, kernel: str, order: int, map: str, strict: bool,
                memmap: str = "device-dax") -> View:
        a = get_arch(arch)  # resolved once per update
        check_order(a, order)
        if memmap not in self.OPTIONS["memmap"]:
            raise ParameterError("memmap", memmap, "one of " + ", ".join(self.OPTIONS["memmap"]))
        if memmap == "HugeTLB HVO":
            m, folio = cached_hvo(arch, kernel, order)
            out = View({"arch": arch, "kernel": kernel, "order": order, "memmap": memmap})
            out.figures = [struct_page_view((m, folio))]
            per = m.arch.STRUCT_PAGES_PER_PAGE
            fakes = sum(page_is_fake_head(pfn_to_page(m, folio.head_pfn + k * per))
                        for k in range(1, min(folio.nr_pages // per, 8)))
            out.numbers = {"HugeTLB page": order_label(a, order),
                           "vmemmap pages kept": str(folio.reserve),
                           "fake heads among vmemmap pages 1..7": str(int(fakes))}
            out.notes = ["map/strict do not apply to HugeTLB pages (boot RAM memmap)"]
            return out
        size = format_size(max(2 << (order + a.page_shift), 1 << a.section_size_bits))
        p = cached_plan(size, order, map, arch, kernel, strict)
        view = View({"arch": arch, "kernel": kernel, "order": order, "map": map,
                     "strict": strict, "memmap": memmap})
        view.figures = [struct_page_view(p)]
        view.numbers = {
            "namespace": size,
            "struct pages initialised / compound page":
                str(p.struct_pages_initialised // max(p.compound_pages, 1)),
            "saved vmemmap pages / compound page":
                f"{p.saved_vmemmap_pages_per_compound} of {p.vmemmap_pages_per_compound}",
        }
        view.notes = _align_note(a, order, strict)
        return view


class GupExplorer(Explorer):
    """GUP-fast before (5.16, base-page devmaps) vs a chosen kernel, the cover letter's rows."""

    TITLE = "GUP-fast: counters and modelled time vs the cover letter"
    CONTROLS = ("kernel", "gup_align", "gup_size")
    DEFAULTS = {"kernel": "v3", "align": "2M", "size": "16G"}
    OPTIONS = {"kernel": tuple(KERNELS), "align": ("2M", "1G"), "size": ("16G", "128G")}
    SLIDER = "kernel"

    def compute(self, *, kernel: str, align: str, size: str) -> View:
        for k, v in (("kernel", kernel), ("align", align), ("size", size)):
            if v not in self.OPTIONS[k]:
                raise ParameterError(k, v, "one of " + ", ".join(self.OPTIONS[k]))
        rows = cover_letter_results(size, after=kernel, align=align)
        view = View({"kernel": kernel, "align": align, "size": size})
        view.figures = [gup_view(rows, title=f"GUP-fast of {size} mapped with {align} pages: "
                                             f"kernel 5.16 vs {kernel}")]
        for r in rows:
            mb, ma = (gup.predict_ns(c) / 1e6 for c in (r.before, r.after))
            meas = (f"; cover letter {r.measured_ms[0]:g} → {r.measured_ms[1]:g} ms"
                    if r.measured_ms else "")
            view.numbers[r.label] = (f"atomics {int(r.before.atomics)} → {int(r.after.atomics)}"
                                     f"; model {mb:.3g} → {ma:.3g} ms{meas}")
        if not any(r.measured_ms for r in rows):
            view.notes.append("the cover letter measured 2M pages, 5.16 → v3 only")
        return view

    def _make_controls(self) -> dict[str, Any]:
        import ipywidgets as w

        label = {"description_width": "initial"}
        buttons = {"description_width": "initial", "button_width": "auto"}
        c = {"kernel": w.Dropdown(options=list(self.OPTIONS["kernel"]),
                                  value=self.state["kernel"], description="after",
                                  style=label, layout=w.Layout(width="max-content")),
             "align": w.ToggleButtons(options=list(self.OPTIONS["align"]),
                                      value=self.state["align"], description="dax align",
                                      style=buttons),
             "size": w.ToggleButtons(options=list(self.OPTIONS["size"]),
                                     value=self.state["size"], description="mapping",
                                     style=buttons)}
        for name, ctl in c.items():
            ctl.observe(lambda ch, n=name: self._on_change(n, ch["new"]), names="value")
        return c

    def _on_change(self, name: str, value: Any) -> None:
        if not self._syncing:
            self._live = True
            self.update(**{name: value})

    def _sync_controls(self) -> None:
        if self._ui is None:
            return
        self._syncing = True
        try:
            for k, ctl in self.controls.items():
                if ctl.value != self.state[k] and self.state[k] in self.OPTIONS[k]:
                    ctl.value = self.state[k]
        finally:
            self._syncing = False


EXPLORERS = (MappingExplorer, PlacementExplorer, SavingsExplorer, StructPageExplorer,
             GupExplorer)
