"""vmemlab.viz: every diagram is drawn from the model and changes when the model does.

Expected values are read from the model objects directly (page tables, frames) or come from
independent arithmetic (x86_64, 4 KiB pages, 64-byte struct page): a 2M compound page has 8
vmemmap pages, 2 kept when deduplicated (kernel-facts.md §3.3), so 7 PTEs map the tail page and
6 of them are reused; a 1G compound page has 4096 vmemmap pages, 4095 of which map the tail
page; mainline 5.19+ uses 8 PTE tables for it, the v3 series 2 (kernel-facts.md §3.5).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import vmemlab  # noqa: E402
from vmemlab import Machine  # noqa: E402
from vmemlab.units import TiB  # noqa: E402
from vmemlab.viz import (  # noqa: E402
    gup_view,
    pagetable_view,
    placement_view,
    savings_curves,
    struct_page_view,
    to_png,
    vmemmap_mapping,
)
from vmemlab.viz.adapters import compound_vpns  # noqa: E402
from vmemlab.viz.gupview import cover_letter_results  # noqa: E402
from vmemlab.viz.savings import chunk_size, explorable_orders, savings_point  # noqa: E402


def gids(fig, prefix: str) -> list[str]:
    """gids of all artists (patches) whose gid starts with ``prefix``."""
    out = []
    for ax in fig.axes:
        for art in list(ax.patches) + list(ax.lines) + list(ax.containers):
            g = getattr(art, "get_gid", lambda: None)()
            if g and g.startswith(prefix):
                out.append(g)
    return out


def titled(fig) -> bool:
    return bool(fig._suptitle and fig._suptitle.get_text()) or any(
        ax.get_title() or ax.get_title(loc="left") for ax in fig.axes)


def labelled(fig) -> bool:
    """Every visible axes has axis labels, or the figure has a legend."""
    if fig.legends:
        return True
    return all(ax.get_xlabel() or ax.get_ylabel() for ax in fig.axes if ax.axison)


@pytest.fixture(scope="module")
def p2m():
    return vmemlab.plan("4M", align="2M")


@pytest.fixture(scope="module")
def p1g():
    return vmemlab.plan("2G", align="1G")


def hvo(kernel: str, size: str):
    from vmemlab.hugetlb_vmemmap import alloc_hugetlb_folio, hugetlb_vmemmap_optimize

    m = Machine("x86_64", kernel, ram=max(2 * vmemlab.units.parse_size(size), 256 << 20))
    f = alloc_hugetlb_folio(m, size)
    hugetlb_vmemmap_optimize(m, f)
    return m, f


# -- 1. mapping diagram -------------------------------------------------------------------------
def test_mapping_2m_arrows_match_page_tables(p2m):
    m, pg = p2m._machine, p2m._pgmap
    fig = vmemmap_mapping(p2m)
    frame, _ = m.pgtables.resolve(compound_vpns(m, pg, 0))
    tail = int(frame[-1])
    to_tail = [g for g in gids(fig, "pte:") if g.split(":")[2] == str(tail)]
    assert len(to_tail) == int((frame == tail).sum()) == 7  # kernel-facts §3.3
    assert len(to_tail) == int(m.frames.refcount[tail])  # one get_page per extra PTE
    reused = gids(fig, "pte:")
    assert sum(g.endswith(":reuse") for g in reused) == p2m.saved_vmemmap_pages_per_compound == 6
    assert len(gids(fig, "pte:")) == 8 and not gids(fig, "elided:")
    assert titled(fig) and labelled(fig)


def test_mapping_changes_with_the_model(p2m):
    no_dedup = vmemlab.plan("4M", align="2M", kernel="5.17")
    a = gids(vmemmap_mapping(p2m), "pte:")
    b = gids(vmemmap_mapping(no_dedup), "pte:")
    assert sum(g.endswith(":reuse") for g in b) == 0 == no_dedup.saved_vmemmap_pages_per_compound
    assert a != b


def test_mapping_1g_elides_but_counts_every_pte(p1g):
    m, pg = p1g._machine, p1g._pgmap
    fig = vmemmap_mapping(p1g)
    frame, _ = m.pgtables.resolve(compound_vpns(m, pg, 0))
    tail = int(frame[-1])
    single = [g for g in gids(fig, "pte:") if g.split(":")[2] == str(tail)]
    elided = [g for g in gids(fig, "elided:") if g.split(":")[2] == str(tail)]
    assert elided, "a 1G compound page must be elided"
    drawn = len(single) + sum(int(g.split(":")[1]) for g in elided)
    assert drawn == int((frame == tail).sum()) == 4095  # kernel-facts §3.3
    assert len(gids(fig, "pte:")) + len(gids(fig, "elided:")) <= 14
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("4092 more PTEs" in t for t in texts)


def test_mapping_dax_vs_hvo_side_by_side(p2m):
    m, f = hvo("6.6", "2M")
    fig = vmemmap_mapping(p2m, hvo=(m, f))
    assert len(fig.axes) == 2
    right = [g for g in gids(fig, "pte:") if g.split(":")[1] in
             {str(v) for v in range((f.head_pfn * 64) >> 12, ((f.head_pfn + 512) * 64) >> 12)}]
    # HVO 5.18+: one page kept, 7 read-only remaps onto it (kernel-facts §10)
    assert len({g.split(":")[2] for g in right}) == 1
    assert sum(g.endswith(":ro") for g in right) == 7
    old = vmemmap_mapping(p2m, hvo=hvo("5.17", "2M"))  # 5.14-5.17: two kept, 6 RO remaps
    ro = [g for g in gids(old, "pte:") if g.endswith(":ro")]
    assert len(ro) == 6 and len({g.split(":")[2] for g in ro}) == 1


# -- 2. page-table view -------------------------------------------------------------------------
def tables_of(p) -> set[int]:
    m, pg = p._machine, p._pgmap
    ks = np.unique(compound_vpns(m, pg, 0) >> m.pgtables.pte_bits)
    return {m.pgtables.pmd_entry(int(k))[1] for k in ks if m.pgtables.pmd_entry(int(k))[0] == "table"}


def test_pagetable_view_v3_vs_519():
    a = vmemlab.plan("2G", align="1G", kernel="5.19")
    b = vmemlab.plan("2G", align="1G", kernel="v3")
    fig = pagetable_view(a, b)
    left, right = fig.axes
    n_left = sum(1 for p in left.patches if (p.get_gid() or "").startswith("table:"))
    n_right = sum(1 for p in right.patches if (p.get_gid() or "").startswith("table:"))
    assert n_left == len(tables_of(a)) == 8  # one PTE table per section (kernel-facts §3.3)
    assert n_right == len(tables_of(b)) == 2  # v3 patch 14 (kernel-facts §3.5)
    to_tables = [p.get_gid() for p in right.patches
                 if (p.get_gid() or "").startswith("pmd->table:")]
    assert len(to_tables) == 8  # every PMD entry points at one of the two tables
    assert titled(fig) and labelled(fig)


def test_pagetable_view_pmd_leaf_for_map_dev():
    p = vmemlab.plan("256M", align="2M", map="dev")
    fig = pagetable_view(p)
    assert gids(fig, "pmd->leaf:") and not gids(fig, "table:")


# -- 3. placement -------------------------------------------------------------------------------
def bar_width(fig, name: str, map_: str) -> float:
    for p in fig.axes[0].patches:
        if p.get_gid() == f"bar:{map_}:{name}":
            return p.get_width()
    raise AssertionError(name)


def test_placement_reads_frames():
    from vmemlab.frames import DEVICE, PAGETABLE, RAM, VMEMMAP

    mem = vmemlab.plan("1G", align="2M", map="mem")
    dev = vmemlab.plan("1G", align="2M", map="dev")
    fig = placement_view(mem, dev)
    for p in (mem, dev):
        f = p._machine.frames
        assert bar_width(fig, "RAM: struct pages", p.map) == f.pages(VMEMMAP, RAM) * 4096
        assert bar_width(fig, "RAM: page tables", p.map) == f.pages(PAGETABLE, RAM) * 4096
        assert bar_width(fig, "device: struct pages", p.map) == f.pages(VMEMMAP, DEVICE) * 4096
    assert bar_width(fig, "device: struct pages", "dev") == dev.device_data_pages * 4096 > 0
    assert bar_width(fig, "device: struct pages", "mem") == 0
    assert bar_width(fig, "device: altmap padding", "dev") == dev.device_align_pages * 4096
    assert "seg:dev:memmap on device" in gids(fig, "seg:")
    assert "seg:mem:memmap on device" not in gids(fig, "seg:")
    assert titled(fig) and labelled(fig)


# -- 4. struct pages ----------------------------------------------------------------------------
def cell_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts if (t.get_gid() or "").startswith("cell:")]


def test_struct_page_view_reads_fields(p2m):
    from vmemlab import page as P

    fig = struct_page_view(p2m)
    head = p2m._pgmap.ranges[0][0] >> 12
    texts = cell_texts(fig)
    assert str(int(P.read_field(p2m._machine, head + 1, "_folio_nr_pages")[0])) == "512"
    assert "512" in texts
    assert any(t.startswith("PageHead") for t in texts)
    assert not any("fake head" in t for t in texts)
    assert titled(fig)


def test_struct_page_view_fake_head_only_with_one_kept_page():
    assert any("fake head" in t for t in cell_texts(struct_page_view(hvo("6.6", "2M"))))
    assert not any("fake head" in t for t in cell_texts(struct_page_view(hvo("5.17", "2M"))))


# -- 5. savings ---------------------------------------------------------------------------------
@pytest.mark.parametrize("arch,kernel,order", [
    ("x86_64", "6.6", 9), ("x86_64", "v3", 18), ("x86_64", "5.17", 9),
    ("x86_64", "5.19", 6),  # compound memmap under 2 pages: one page past the end, kept once
    ("arm64-64k", "6.6", 13), ("arm64-16k", "5.19", 2),
])
def test_savings_extrapolation_equals_direct_tib_plan(arch, kernel, order):
    sp = savings_point(arch, kernel, order)
    p = vmemlab.plan(TiB, align=1 << (order + vmemlab.ARCHES[arch].page_shift), arch=arch,
                     kernel=kernel, start=sp.start, strict=False)
    assert (sp.ram_data_pages, sp.pte_table_pages, sp.struct_pages_initialised) == (
        p.ram_data_pages, p.pagetables.get("pte", 0), p.struct_pages_initialised)
    assert TiB % chunk_size(arch, order) == 0


def test_savings_cover_letter_numbers():
    # cover letter / kernel-facts §3.4: 2M -> 4 GiB + PTE tables, 1G -> 40 MiB, v3 1G -> 16 MiB
    assert savings_point("x86_64", "6.6", 9).ram_data_pages * 4096 == 4 << 30
    assert savings_point("x86_64", "6.6", 18).bytes_per_tib == 40 << 20
    assert savings_point("x86_64", "v3", 18).bytes_per_tib == 16 << 20


def test_savings_curves_plot_the_points():
    fig = savings_curves(["x86_64"], current={"arch": "x86_64", "kernel": "v3", "order": 18})
    ax = fig.axes[0]
    line = next(ln for ln in ax.lines if ln.get_gid() == "curve:x86_64:v3")
    ys = [savings_point("x86_64", "v3", o).bytes_per_tib for o in explorable_orders("x86_64")]
    assert list(line.get_ydata()) == ys
    cur = next(ln for ln in ax.lines if ln.get_gid() == "current")
    assert list(cur.get_ydata()) == [16 << 20]
    assert titled(fig) and labelled(fig) and ax.get_xlabel() and ax.get_ylabel()


# -- 6. GUP -------------------------------------------------------------------------------------
def test_gup_view_bars_are_model_and_letter():
    from vmemlab import gup

    rows = cover_letter_results("16G")
    fig = gup_view(rows)
    ax = fig.axes[0]
    heights = {p.get_gid(): p.get_height() for p in ax.patches if p.get_gid()}
    for i, r in enumerate(rows):
        assert heights[f"model:after:{i}"] == pytest.approx(gup.predict_ns(r.after) / 1e6)
        assert heights[f"measured:before:{i}"] == r.measured_ms[0]
    measured = {(fl, mp, w): ms for sz, fl, mp, w, ms, _ in gup.COVER_LETTER_ROWS if sz == "16G"}
    assert rows[0].measured_ms == (measured[("get", "mem", "before")],
                                   measured[("get", "mem", "after")])
    assert titled(fig) and labelled(fig)
    # another kernel on the "after" side: no measured rows to show, different counters
    other = cover_letter_results("16G", after="6.6")
    assert all(r.measured_ms is None for r in other)
    assert other[0].after.atomics != rows[0].after.atomics


# -- rendering ------------------------------------------------------------------------------------
def test_png_is_deterministic(p2m):
    assert to_png(vmemmap_mapping(p2m)) == to_png(vmemmap_mapping(p2m))


def test_every_figure_shows_itself_as_png():
    """Notebooks store a figure only if it has a PNG representation (no pyplot is imported):
    every viz function must return a figure that renders itself."""
    import vmemlab
    from vmemlab import viz

    p = vmemlab.plan("2G", align="1G")
    for fig in (viz.vmemmap_mapping(p), viz.pagetable_view(p), viz.placement_view(p),
                viz.struct_page_view(p), viz.savings_curves(arches=["x86_64"], kernels=["6.6"])):
        png, md = fig._repr_png_()
        assert png[:8] == b"\x89PNG\r\n\x1a\n", type(fig).__name__
        assert repr(fig).startswith("<Figure size")
        # HiDPI: twice the pixels of the size it is shown at (PNG IHDR width/height)
        w, h = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert (w, h) == (2 * md["width"], 2 * md["height"]), type(fig).__name__
        assert md["width"] == round(fig.get_figwidth() * fig.dpi)


def test_svg_keeps_text_as_text_and_is_deterministic(p2m):
    """The live widgets' SVG: text stays <text> (sharp at any zoom, the browser sets it), no
    embedded glyph paths, same bytes for the same figure."""
    from vmemlab.viz import to_svg

    a, b = to_svg(vmemmap_mapping(p2m)), to_svg(vmemmap_mapping(p2m))
    assert a == b and a.lstrip().startswith(b"<?xml")
    assert b"<text" in a and b"vmemmap page 0" in a and b"<defs>\n  <path id=\"DejaVu" not in a


def test_shared_text_metrics_give_the_same_render(p2m):
    """Reusing text extents across renders (vmemlab.viz._style) must not change a pixel: the
    first render of a figure (cache empty) equals a later one (cache full)."""
    from vmemlab.viz import _style

    _style._TEXT_METRICS.clear()
    first = to_png(vmemmap_mapping(p2m), dpi=72)
    assert _style._TEXT_METRICS
    assert to_png(vmemmap_mapping(p2m), dpi=72) == first


# -- text never collides or leaves the canvas -----------------------------------------------------
def drawn_texts(fig):
    """``(text, window extent)`` of every non-empty Text artist matplotlib actually draws (tick
    labels of hidden axes are not), after the figure's own layout, from the Agg renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    FigureCanvasAgg(fig)
    drawn = []
    orig = Text.draw

    def record(self, renderer):
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)
        return orig(self, renderer)

    Text.draw = record
    try:
        fig.draw_without_rendering()
    finally:
        Text.draw = orig
    r = fig.canvas.get_renderer()
    return [(t, t.get_window_extent(r)) for t in drawn]


def text_problems(fig, tol: float = 0.5) -> list[str]:
    """Texts that overlap each other (by more than ``tol`` px both ways) or leave the canvas."""
    import itertools

    W, H = fig.bbox.width, fig.bbox.height
    boxes = drawn_texts(fig)
    out = [f"off canvas {[round(float(v)) for v in b.extents]} of {W:.0f}x{H:.0f}: "
           f"{t.get_text()!r}" for t, b in boxes
           if b.x0 < -tol or b.y0 < -tol or b.x1 > W + tol or b.y1 > H + tol]
    for (t1, b1), (t2, b2) in itertools.combinations(boxes, 2):
        w = min(b1.x1, b2.x1) - max(b1.x0, b2.x0)
        h = min(b1.y1, b2.y1) - max(b1.y0, b2.y0)
        if w > tol and h > tol:
            out.append(f"overlap {w:.0f}x{h:.0f} px: {t1.get_text()!r} / {t2.get_text()!r}")
    return out


def test_text_checker_finds_collisions_and_clipping():
    """The checker itself: two texts on top of each other and one past the right edge."""
    from vmemlab.viz._style import new_figure

    fig = new_figure(4, 2)
    fig.text(0.1, 0.5, "first label")
    fig.text(0.12, 0.5, "second label")
    fig.text(0.95, 0.1, "runs off the canvas")
    probs = text_problems(fig)
    assert any("overlap" in p and "first label" in p for p in probs), probs
    assert any("off canvas" in p and "runs off" in p for p in probs), probs
    fig = new_figure(4, 2)
    fig.text(0.1, 0.5, "alone")
    assert text_problems(fig) == []


def _explorer_states(ex):
    """Every state one control move away from the explorer's defaults (the page order
    through 0, 1, every device-dax alignment and the largest order of each arch)."""
    from vmemlab.widgets.base import align_presets

    st = ex.validate(dict(ex.DEFAULTS))
    out = [st]
    for name in st:
        vals = ex.control_values(name, st) or []
        if name == "order":
            keep = {0, 1, vals[-1], *(o for _, o in align_presets(st["arch"]))}
            vals = [v for v in vals if v in keep]
        out += [ex._clamped({**st, name: v}) for v in vals if v != st[name]]
    if "arch" in st and "order" in st:
        for arch in vmemlab.ARCHES:  # each arch's largest order too
            out.append(ex._clamped({**st, "arch": arch, "order": 99}))
    return out


@pytest.mark.parametrize("cls_name", ["MappingExplorer", "PlacementExplorer",
                                      "SavingsExplorer", "StructPageExplorer"])
def test_explorer_figures_have_no_colliding_or_clipped_text(cls_name):
    from vmemlab import widgets

    ex = getattr(widgets, cls_name)()
    bad = []
    for st in _explorer_states(ex):
        v = ex.render_static(**st)
        bad += [f"{st}: {p}" for f in v.figures for p in text_problems(f)]
    assert not bad, "\n".join(bad[:20])


def test_gup_figures_have_no_colliding_or_clipped_text():
    """Every GUP explorer state, chapter 07's 5.19 / 1G / 128G included (its bar labels ran
    into each other before)."""
    import itertools

    from vmemlab.widgets import GupExplorer

    ex = GupExplorer()
    bad = []
    for combo in itertools.product(*GupExplorer.OPTIONS.values()):
        st = dict(zip(GupExplorer.OPTIONS, combo))
        bad += [f"{st}: {p}" for f in ex.render_static(**st).figures for p in text_problems(f)]
    assert not bad, "\n".join(bad[:20])


def test_static_figures_have_no_colliding_or_clipped_text(p1g):
    """The chapters' static figures: every arch's savings curves, 5.19 vs v3 page tables."""
    p519 = vmemlab.plan("2G", align="1G", kernel="5.19")
    pv3 = vmemlab.plan("2G", align="1G", kernel="v3")
    for fig in (savings_curves(), pagetable_view(p519, pv3), placement_view(p1g),
                vmemmap_mapping(p1g, hvo=hvo("6.6", "1G"))):
        assert text_problems(fig) == [], text_problems(fig)
