"""vmemlab.widgets: every control combination gives a figure or a clear message, headless.

The combination sweeps call ``render_static`` (model + figure construction, no rasterising);
the live tests build the ipywidgets (no front-end needed) and drive the controls themselves.
"""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
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
from vmemlab.widgets.render import state_key  # noqa: E402


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


def grid(arches=ARCHES):
    for arch in arches:
        for kernel in KERNELS:
            for order in explorable_orders(arch):
                yield arch, kernel, order


# the sweeps are parametrised by arch so that xdist can spread them over its workers; the
# arm64-64k ones read its savings points ("RAM per TiB": 1 TiB plans of 2048 sections, about
# 5 s per map), cached per process, so they run on test_viz's worker, which plans them too
SAVINGS_ARCHES = [pytest.param(a, marks=pytest.mark.xdist_group("viz")) if a == "arm64-64k"
                  else a for a in ARCHES]
@pytest.mark.parametrize("arch", SAVINGS_ARCHES)
@pytest.mark.parametrize("map_", ["mem", "dev"])
def test_mapping_every_arch_kernel_order(map_, arch):
    e = MappingExplorer()
    msgs = 0
    for _, kernel, order in grid([arch]):
        v = e.render_static(arch=arch, kernel=kernel, order=order, map=map_, size="16M")
        check(v)
        msgs += not v.ok
    assert msgs  # 16M cannot hold two compound pages of the largest order: a message


def test_mapping_every_size_and_view():
    e = MappingExplorer()
    orders = explorable_orders("x86_64")
    for i, (size, order) in enumerate(itertools.product(SIZES, orders)):
        check(e.render_static(size=size, order=order, map=("mem", "dev")[i % 2]))
    for arch, kernel, view in itertools.product(ARCHES, KERNELS, MappingExplorer.OPTIONS["view"]):
        for order in (0, max(explorable_orders(arch))):
            check(e.render_static(arch=arch, kernel=kernel, order=order, view=view, size="4G"))


@pytest.mark.parametrize("arch", ARCHES)
def test_placement_every_combination(arch):
    e = PlacementExplorer()
    for _, kernel, order in grid([arch]):
        check(e.render_static(arch=arch, kernel=kernel, order=order, size="16M"))


def test_placement_every_size():
    e = PlacementExplorer()
    for size, strict in itertools.product(SIZES, (False, True)):
        check(e.render_static(size=size, strict=strict, order=5))


@pytest.mark.parametrize("arch", SAVINGS_ARCHES)
def test_savings_every_combination(arch):
    """Every arch x order x map; the kernel (which only moves the marker: every curve is drawn
    for every kernel) cycles through all variants along the orders."""
    e = SavingsExplorer()
    kernels = list(KERNELS)
    for map_ in ("mem", "dev"):
        for order in explorable_orders(arch):
            check(e.render_static(arch=arch, kernel=kernels[order % len(kernels)], order=order,
                                  map=map_))


@pytest.mark.parametrize("arch", ARCHES)
def test_struct_page_every_combination(arch):
    e = StructPageExplorer()
    for (_, kernel, order), memmap in itertools.product(grid([arch]),
                                                           ("device-dax", "HugeTLB HVO")):
        if memmap == "device-dax" and order not in (0, 1, 9, max(explorable_orders(arch))):
            continue
        check(e.render_static(arch=arch, kernel=kernel, order=order, memmap=memmap))


def test_struct_page_map_and_strict():
    e = StructPageExplorer()
    for map_, strict in itertools.product(("mem", "dev"), (False, True)):
        check(e.render_static(map=map_, strict=strict, order=5))


# the GUP counters of every scenario (128G mappings: about 3 s of model) are cached per
# process: on test_viz's worker, which computes them for its text checks, they are computed once
@pytest.mark.xdist_group("viz")
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


@pytest.mark.xdist_group("viz")  # shares the GUP counters, as above
def test_live_gup_explorer():
    ex = GupExplorer()
    _ = ex.ui
    for k in KERNELS:
        ex.controls["kernel"].value = k
        assert ex.state["kernel"] == k and ex.images.children


# -- refused updates keep the last good state (issue 11 item 8) -----------------------------------
def test_update_with_string_order_is_refused_and_next_update_works():
    ex = MappingExplorer()
    _ = ex.ui
    v = ex.update(order="9")
    assert not v.ok and "order='9' is not allowed" in v.message, v.text
    assert ex.state["order"] == 9 and ex.controls["order"].value == 9
    # the widget says why, above the figures of the state it kept
    assert "order=&#x27;9&#x27; is not allowed" in ex.status.value and ex.images.children
    assert "saved vmemmap pages" in ex.status.value
    v = ex.update(order=10)  # order 10: 16 vmemmap pages, 2 kept (independent arithmetic)
    assert v.ok and v.numbers["saved vmemmap pages / compound page"] == "14 of 16"
    assert "not allowed" not in ex.status.value


def test_update_with_unknown_kernel_is_refused_and_controls_stay_usable():
    ex = MappingExplorer()
    _ = ex.ui
    v = ex.update(kernel="5.16")  # GUP's "before" kernel, not a vmemmap variant
    assert not v.ok and "kernel='5.16' is not allowed" in v.message
    assert ex.state["kernel"] == "6.6" == ex.controls["kernel"].value
    ex.controls["kernel"].value = "v3"
    assert ex.state["kernel"] == "v3" and ex.last.ok


@pytest.mark.parametrize("change,expect", [
    ({"order": 9.0}, "order=9.0 is not allowed"),
    ({"order": True}, "order=True is not allowed"),
    ({"order": 40}, "order=40 is not allowed"),
    ({"strict": "no"}, "strict='no' is not allowed"),
    ({"map": "ram"}, "map='ram' is not allowed"),
    ({"size": "3G"}, "size='3G' is not allowed"),
    ({"arch": None}, "arch=None is not allowed"),
    ({"colour": "red"}, "state=['colour'] is not allowed"),
])
def test_invalid_update_values_give_parameter_error_text_and_keep_state(change, expect):
    ex = PlacementExplorer() if "map" not in change else MappingExplorer()
    _ = ex.ui
    before = dict(ex.state)
    v = ex.update(**change)
    assert not v.ok and expect in v.message, v.text
    assert ex.state == before
    assert ex.update(order=5).ok  # and the explorer goes on from there


def test_numpy_integers_and_booleans_are_valid_control_values():
    ex = MappingExplorer()
    v = ex.update(order=np.int64(10), strict=np.bool_(False))
    assert v.ok and ex.state["order"] == 10 and type(ex.state["order"]) is int
    assert type(ex.state["strict"]) is bool


@pytest.mark.xdist_group("viz")  # shares the GUP counters, as above
def test_gup_explorer_refuses_values_it_does_not_offer():
    ex = GupExplorer()
    _ = ex.ui
    for change in ({"kernel": "5.16"}, {"size": "1T"}, {"align": 2}):
        v = ex.update(**change)
        assert not v.ok and "is not allowed" in v.message
        assert ex.state == {"kernel": "v3", "align": "2M", "size": "16G"}
    assert ex.update(size="128G").ok and ex.controls["size"].value == "128G"


def test_refused_first_state_shows_a_message_not_a_traceback():
    ex = MappingExplorer(order="nine")
    ui = ex.ui
    assert ui is not None and "order=&#x27;nine&#x27; is not allowed" in ex.status.value
    assert ex.state == MappingExplorer.DEFAULTS and ex.images.children
    ex.controls["order"].value = 10
    assert "not allowed" not in ex.status.value and ex.state["order"] == 10


# -- cache and look-ahead ---------------------------------------------------------------------------
def test_reachable_states_are_one_valid_move_away():
    ex = MappingExplorer()
    st = ex.validate(dict(ex.DEFAULTS))
    states = ex.reachable(st, first=["order"])
    assert states[:2] == [{**st, "order": 10}, {**st, "order": 8}]  # the slider's neighbours
    for s in states:
        assert ex.validate(s) == s
        assert sum(s[k] != st[k] for k in st) == 1 or s["arch"] != st["arch"]


def test_savings_look_ahead_renders_every_arch_and_map_before_other_controls():
    """SavingsExplorer.AHEAD_FIRST: a new arch or map is a new set of curves (0.2-7 s of
    plans), a kernel or order move one more point on them, so after the slider's two
    neighbours and the alignment presets come every other arch (nearest first) and the other
    map, before any kernel."""
    ex = SavingsExplorer(arch="ppc64-radix-64k", order=0)
    st = ex.state
    states = ex.reachable(st, first=["order"])
    moved = [next(k for k in st if s[k] != st[k]) for s in states]
    assert moved[:2] == ["order", "order"]
    first_kernel = moved.index("kernel")
    arches = [s["arch"] for s, k in zip(states[:first_kernel], moved) if k == "arch"]
    # cheapest first (ahead_cost: sections the 3-chunk plans of 8 kernels x every order
    # populate): x86_64 and arm64-4k 8 * 3 * (15 * 1 + 2 + 4 + 8 + 16) = 1080 each (128 MiB
    # sections; 1G pages at order 18 need 2 GiB chunks), arm64-16k 18432, arm64-64k
    # 8 * 3 * 14 * 1024 = 344064 (512 GiB chunks of 512 MiB sections); ties nearest first
    # (ARCHES lists x86_64, arm64-4k, arm64-16k, arm64-64k, ppc64-radix-64k)
    assert arches == ["arm64-4k", "x86_64", "arm64-16k", "arm64-64k"]
    assert "map" in moved[:first_kernel]


def test_look_ahead_process_hands_its_savings_points_to_the_kernel(monkeypatch):
    """The look-ahead process sends the points it planned for a state's arch and map with the
    rendered state; the kernel then has each of them (equal to its own plan of that point)
    without planning, so a later state of that arch the look-ahead did not reach costs one
    figure."""
    import vmemlab.viz.savings as savings
    from vmemlab.widgets.render import Ahead

    monkeypatch.setattr(savings, "_POINTS", {})
    ahead, ex = Ahead(), SavingsExplorer()
    try:
        target = ex.validate({**ex.state, "arch": "arm64-4k", "order": 9})
        ahead.submit(ex, [target])
        ahead.drain()
        assert ahead.worker, "no look-ahead process started"
        got = savings.known_points("arm64-4k", "mem")
        # the figure draws every kernel's curve over every explorable order
        assert {(p.kernel, p.order) for p in got} == {
            (k, o) for k in KERNELS for o in explorable_orders("arm64-4k")}
        for p in got:
            assert p == savings._savings_point(p.arch, p.kernel, p.order, p.map)
        # handed once per arch and map: a second state of them hands over nothing again
        other = SavingsExplorer()
        assert other.ahead_memo(target)
        assert other.ahead_memo({**target, "kernel": "5.19", "order": 3}) == []
    finally:
        if ahead.worker:
            ahead.worker.close()


def test_foreground_update_waits_for_the_state_the_look_ahead_process_is_rendering(
        monkeypatch):
    """A move to the very state the look-ahead process is rendering takes that rendering
    instead of planning it a second time beside it."""
    import threading

    import vmemlab.widgets.base as base
    from vmemlab.widgets.render import Ahead

    ex = SavingsExplorer()
    target = ex.validate({**ex.state, "order": 12})
    prepared = SavingsExplorer()
    prepared._rendered(target)
    (rendered,) = prepared._cache.values()
    started, release = threading.Event(), threading.Event()

    class SlowWorker:
        def render(self, _ex, st, _unwanted):
            assert st == target
            started.set()
            release.wait(30)
            return rendered, None

    ahead = Ahead()
    ahead.worker = SlowWorker()
    monkeypatch.setattr(base, "AHEAD", ahead)
    ahead.submit(ex, [target])
    assert started.wait(30)
    threading.Timer(0.2, release.set).start()
    monkeypatch.setattr(ex, "compute", lambda **_: pytest.fail("planned the state again"))
    v = ex.update(order=12)
    assert v.text == rendered.view.text
    assert not ex.last_cached  # the reader waited for it: a miss


def test_look_ahead_process_gives_up_a_long_state_a_newer_move_no_longer_wants():
    """A newer interaction replaces the queue; the process, still planning arm64-64k's curves
    (112 points, 7 s), gives that state up between two points and renders what the new
    queue asks for; it does not cache the given-up state."""
    import time

    from vmemlab.widgets.render import Ahead

    ahead, ex = Ahead(), SavingsExplorer(arch="ppc64-radix-64k", order=0)
    try:
        slow = ex.validate({**ex.state, "arch": "arm64-64k", "map": "dev"})
        ahead.submit(ex, [slow])
        for _ in range(3000):  # until the thread has handed it to the process
            if ahead.remote is not None:
                break
            time.sleep(0.01)
        assert ahead.remote == (ex, state_key(slow))
        cheap = ex.validate({**ex.state, "order": 1})
        ahead.submit(ex, [cheap])
        ahead.drain()
        assert ahead.worker, "no look-ahead process started"
        assert state_key(cheap) in ex._cache and state_key(slow) not in ex._cache
    finally:
        if ahead.worker:
            ahead.worker.close()


def test_look_ahead_renders_the_same_view_as_a_fresh_render():
    """A state the background thread rendered is served from the cache and says exactly what
    a fresh render of the model says."""
    from vmemlab.widgets.base import AHEAD

    ex = SavingsExplorer()
    _ = ex.ui
    target = {**ex.state, "order": 12}
    AHEAD.submit(ex, [target])
    AHEAD.drain()
    v = ex.update(order=12)
    assert ex.last_cached, "the look-ahead did not render the state"
    assert v.text == SavingsExplorer().render_static(**target).text
    assert ex.images.children and bytes(ex.images.children[0].value).startswith(b"<?xml")


def test_look_ahead_thread_fallback_renders_what_the_process_renders():
    """Where no child process can start (``Ahead.worker is False``, as after a failed start
    or with VMEMLAB_AHEAD=thread) the look-ahead renders in its thread; the cached state is
    the one the process renders (same numbers, same SVG bytes: the encoding is
    deterministic)."""
    from vmemlab.widgets.render import Ahead

    states = []
    for worker in (None, False):
        ahead, ex = Ahead(), SavingsExplorer()
        ahead.worker = worker
        target = ex.validate({**ex.state, "order": 12})
        ahead.submit(ex, [target])
        ahead.drain()
        (r,) = ex._cache.values()
        states.append((r.view.text, r.images, r.status))
        assert (ahead.worker is False) == (worker is False)
        if ahead.worker:
            ahead.worker.close()
    assert states[0] == states[1]


def test_cache_drops_the_least_recently_used_state_and_keeps_no_figures(monkeypatch):
    """With room for two states, rendering A, B, using A again, then C drops B (the least
    recently used), not A (the oldest): a reader going back to where a sweep started finds it
    cached.  A cached state holds its SVG images, not the matplotlib figures they came from."""
    import vmemlab.widgets.base as base

    monkeypatch.setattr(base, "CACHE_STATES", 2)
    ex = MappingExplorer()
    a, b, c = (ex.validate({**ex.state, "order": o}) for o in (9, 10, 11))
    for st in (a, b, a, c):
        ex._rendered(st)
    assert [dict(k)["order"] for k in ex._cache] == [9, 11]
    assert all(r.view.figures == [] and r.images for r in ex._cache.values())


def test_status_names_the_whole_state_even_controls_the_view_ignores():
    """Under "HugeTLB HVO" the struct-page view ignores map and strict (boot RAM memmap), but
    the status still says which state the controls show: a front-end waiting for the move it
    made sees it (bench_browser waited 60 s for each such move)."""
    ex = StructPageExplorer(memmap="HugeTLB HVO")
    _ = ex.ui
    before = ex.status.value
    assert ex.update(map="dev").ok
    assert "map=dev" in ex.status.value and ex.status.value != before
    assert "map" not in ex.last.state  # the view itself still leaves map out
