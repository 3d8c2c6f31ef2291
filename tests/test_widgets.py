"""vmemlab.widgets: every control combination gives a figure or a clear message, headless.

The combination sweeps call ``render_static`` (model + figure construction, no rasterising);
the live tests build the ipywidgets (no front-end needed) and drive the controls themselves.
"""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from vmemlab import ARCHES, KERNELS  # noqa: E402
from vmemlab.viz.savings import explorable_orders  # noqa: E402
from vmemlab.widgets import (  # noqa: E402
    EXPLORERS,
    SIZES,
    GupExplorer,
    MappingExplorer,
    PlacementExplorer,
    SavingsExplorer,
    StructPageExplorer,
    View,
)


def check(v: View) -> None:
    """A figure with a title, or a message saying why not -- never both missing."""
    if v.ok:
        assert v.figures, v.text
        for fig in v.figures:
            assert fig._suptitle is not None or any(ax.get_title() for ax in fig.axes)
        assert v.numbers
    else:
        assert v.message.startswith("Not possible: ") and len(v.message) > 20
        assert not v.figures
    assert v.text.startswith("[")


def grid(arch_kernel_order: bool = True):
    for arch in ARCHES:
        for kernel in KERNELS:
            for order in explorable_orders(arch):
                yield arch, kernel, order


@pytest.mark.parametrize("map_", ["mem", "dev"])
def test_mapping_every_arch_kernel_order(map_):
    e = MappingExplorer()
    msgs = 0
    for arch, kernel, order in grid():
        v = e.render_static(arch=arch, kernel=kernel, order=order, map=map_, size="16M")
        check(v)
        msgs += not v.ok
    assert msgs  # 16M cannot hold two 1G compound pages: a message, not a traceback


def test_mapping_every_size_and_view():
    e = MappingExplorer()
    orders = explorable_orders("x86_64")
    for i, (size, order) in enumerate(itertools.product(SIZES, orders)):
        check(e.render_static(size=size, order=order, map=("mem", "dev")[i % 2]))
    for arch, kernel, view in itertools.product(ARCHES, KERNELS, MappingExplorer.OPTIONS["view"]):
        for order in (0, max(explorable_orders(arch))):
            check(e.render_static(arch=arch, kernel=kernel, order=order, view=view, size="4G"))


def test_placement_every_combination():
    e = PlacementExplorer()
    for arch, kernel, order in grid():
        check(e.render_static(arch=arch, kernel=kernel, order=order, size="16M"))
    for size, strict in itertools.product(SIZES, (False, True)):
        check(e.render_static(size=size, strict=strict, order=5))


def test_savings_every_combination():
    """Every arch x order x map; the kernel (which only moves the marker: every curve is drawn
    for every kernel) cycles through all variants along the orders."""
    e = SavingsExplorer()
    kernels = list(KERNELS)
    for arch, map_ in itertools.product(ARCHES, ("mem", "dev")):
        for order in explorable_orders(arch):
            check(e.render_static(arch=arch, kernel=kernels[order % len(kernels)], order=order,
                                  map=map_))


def test_struct_page_every_combination():
    e = StructPageExplorer()
    for (arch, kernel, order), memmap in itertools.product(grid(), ("device-dax", "HugeTLB HVO")):
        if memmap == "device-dax" and order not in (0, 1, 9, max(explorable_orders(arch))):
            continue
        check(e.render_static(arch=arch, kernel=kernel, order=order, memmap=memmap))
    for map_, strict in itertools.product(("mem", "dev"), (False, True)):
        check(e.render_static(map=map_, strict=strict, order=5))


def test_gup_every_combination():
    e = GupExplorer()
    for kernel, align, size in itertools.product(*GupExplorer.OPTIONS.values()):
        v = e.render_static(kernel=kernel, align=align, size=size)
        check(v)
    v = e.render_static(kernel="v3", align="2M", size="16G")
    assert "cover letter 59 → 6.1 ms" in v.numbers["get · RAM"]


@pytest.mark.parametrize("state,expect", [
    ({"order": 40}, "order=40 is not allowed"),
    ({"order": 18, "size": "16M"}, "-ENXIO"),  # below two 1G compound pages
    ({"order": 9, "size": "2M"}, "-ENXIO"),
    ({"order": 5, "strict": True}, "-EOPNOTSUPP"),  # not a device-dax alignment
    ({"arch": "sparc"}, "arch='sparc'"),
    ({"size": "lots"}, "size='lots'"),
    ({"view": "3d"}, "view='3d'"),
    ({"colour": "red"}, "state="),
])
def test_impossible_states_give_messages(state, expect):
    v = MappingExplorer().render_static(**state)
    assert not v.ok and expect in v.message, v.text


def test_render_static_is_stable_text():
    a = MappingExplorer().render_static(order=9, map="mem")
    b = MappingExplorer().render_static(order=9, map="mem")
    assert a.text == b.text and repr(a) == a.text
    assert "saved vmemmap pages / compound page  6 of 8" in a.text
    assert "RAM per TiB                          4.03 GiB" in a.text


# -- live widgets (no front-end) -------------------------------------------------------------------
def shown(ex) -> bool:
    return bool(ex.status.value) and (bool(ex.images.children) or "Not possible" in ex.status.value)


@pytest.mark.parametrize("cls", [c for c in EXPLORERS if c is not GupExplorer])
def test_live_controls_drive_updates(cls):
    ex = cls()
    ui = ex.ui
    assert ui.children and shown(ex)
    c = ex.controls
    for arch in ("arm64-16k", "x86_64"):
        c["arch"].value = arch
        assert ex.state["arch"] == arch and shown(ex)
        orders = explorable_orders(arch)
        assert (c["order"].min, c["order"].max) == (orders[0], orders[-1])
        for order in orders[:: max(1, len(orders) // 5)]:
            c["order"].value = order
            assert ex.state["order"] == order and shown(ex)
            assert ex.last.state["order"] == order
    # a dax-align preset moves the slider; the slider moves the preset
    c["align"].value = 18
    assert c["order"].value == 18 and ex.state["order"] == 18
    c["order"].value = 5
    assert c["align"].value == -1
    c["kernel"].value = "v3"
    assert ex.state["kernel"] == "v3" and shown(ex)


def test_live_arch_change_clamps_order():
    ex = MappingExplorer(order=18)
    _ = ex.ui
    ex.controls["arch"].value = "arm64-16k"  # largest order there: 11 (32M)
    assert ex.state["order"] == 11 == ex.controls["order"].value
    assert ex.controls["align"].value == 11


def test_live_message_shown_in_widget():
    ex = MappingExplorer(size="2M")
    _ = ex.ui
    assert "Not possible" in ex.status.value and not ex.images.children
    ex.controls["size"].value = "16M"
    assert "Not possible" not in ex.status.value and ex.images.children


def test_live_gup_explorer():
    ex = GupExplorer()
    _ = ex.ui
    for k in KERNELS:
        ex.controls["kernel"].value = k
        assert ex.state["kernel"] == k and ex.images.children
