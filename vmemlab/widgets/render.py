"""Rendering machinery of the explorers: the per-state cache entry, the look-ahead (a thread
and the process it feeds) and an optional per-update timing log (split out of :mod:`vmemlab.widgets.base`).

The look-ahead renders in a child process (:class:`Worker`, at a lower CPU priority), so it
never holds the kernel's interpreter lock while a control move's messages come and go
(``bench_browser.py 04`` at load 2.4-2.8: median 105 -> 98 ms, the kernel's share of a move
23 -> 14 ms).  Where no process can start it renders in its thread, a state in small steps
(the model, then each figure's encoding), each under :data:`~vmemlab.viz._style.RENDER_LOCK`,
standing aside between steps while a foreground update is in progress, so an update that
misses the cache waits for at most one step, not one whole state.  The interpreter's thread
switch interval stays CPython's 5 ms: lowering it to 1 ms made chapter 07's cached moves slower
in the browser (median 155-172 ms against 101-111 ms, ``bench_browser.py 07`` at load
1.6-2.2), the kernel's message threads being interrupted more often.

An explorer can steer it (``bench_browser.py 09``, chapter 09's savings explorer: median
106 -> 87 ms, p95 377 -> 125 ms, misses 3 -> 1 of 33): ``AHEAD_FIRST`` controls have every
value rendered first, cheapest first (``ahead_cost``); ``ahead_steps`` splits a state's long
model work so the process gives the state up when a newer move no longer wants it
(:data:`CANCEL`); ``ahead_memo`` hands model results to the kernel with the rendered state.
A move to the state the process is rendering waits for it rather than rendering it twice.

``VMEMLAB_WIDGET_LOG=<path>`` appends one JSON line per live update (explorer, state, whether
it came from the cache, seconds spent) -- what ``benchmarks/bench_browser.py`` reads to split
the kernel's share of a move from the transfer and the browser's.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..viz._style import RENDER_LOCK

#: CSS pixels per inch the live figures are shown at (SVG's natural size: 1 pt = 4/3 px)
DISPLAY_DPI = 96
#: rendered states kept per explorer (numbers + encoded figures, least recently used
#: dropped first): a few sweeps' worth, so the state a reader comes back to is still there
CACHE_STATES = 256
#: states one control move away that the background thread renders ahead, at most
AHEAD_STATES = 40


@dataclass
class Rendered:
    """One state ready for the widget: its view, the figures encoded, the status HTML."""

    view: Any  # vmemlab.widgets.base.View
    images: tuple[bytes, ...]
    widths: tuple[str, ...]
    status: str
    encode_seconds: float


def state_key(state: dict[str, Any]) -> tuple:
    """Hashable, order-independent key of a (validated) state."""
    return tuple(sorted(state.items()))


#: the look-ahead starts a job only after the kernel ran no cell for this long (seconds)
IDLE_SECONDS = 1.0
#: and stands aside for this long after each live update (seconds): the update's messages
#: leave the kernel while no other thread wants the interpreter
QUIET_SECONDS = 0.12


def kernel_shell() -> Any:
    """The IPython shell when running inside a Jupyter kernel (else ``None``: no front-end can
    move a control, so there is nothing to render ahead for)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return None
    ip = get_ipython()
    return ip if ip is not None and getattr(ip, "kernel", None) is not None else None


class Ahead:
    """One daemon thread getting rendered, while nobody waits, the states the user can reach
    next: by the :class:`Worker` process, or itself where there is none.

    :meth:`submit` replaces the queue (only the latest interaction matters); each job renders
    one state (in the worker, else ``ex._render_steps(state)``; nothing when it is cached
    already) step by
    step.  A job starts only when no foreground update is in progress and no notebook cell
    has run for :data:`IDLE_SECONDS` (cells that run back to back -- a notebook executed top
    to bottom, nbval -- never compete with it); a foreground update that finds its state
    uncached waits for at most the one step in progress, and after each live update the
    worker stands aside for :data:`QUIET_SECONDS` (:meth:`quiet`) while the update's messages
    leave the kernel: a job in progress would hold the interpreter lock for 5 ms slices
    against the threads sending them."""

    def __init__(self) -> None:
        self.jobs: deque[tuple[Any, dict[str, Any]]] = deque()
        self.cv = threading.Condition()
        self.thread: threading.Thread | None = None
        self.waiting = 0  # foreground updates in progress: the worker does not start a job
        self.cells = 0  # notebook cells running now
        self.last_cell = 0.0  # monotonic time the last cell finished
        self.busy = False  # a job is rendering now
        self.generation = 0  # bumped by each submit that replaces the queue
        self.quiet_until = 0.0  # monotonic time before which the worker stands aside
        #: ``(explorer, state key)`` the worker process is rendering now, else ``None``
        self.remote: tuple[Any, tuple] | None = None
        #: the process rendering for the look-ahead (started on the first job; ``False``:
        #: it could not start or died, so the thread renders); ``VMEMLAB_AHEAD=thread``
        #: keeps the rendering in the thread
        self.worker: Worker | None | bool = (
            False if os.environ.get("VMEMLAB_AHEAD") == "thread" else None)
        self._hooked = False

    def hook(self, shell: Any) -> None:
        """Follow ``shell``'s cell executions (IPython ``pre/post_run_cell`` events)."""
        if self._hooked:
            return
        self._hooked = True

        def pre(*_a: Any) -> None:
            with self.cv:
                self.cells += 1

        def post(*_a: Any) -> None:
            with self.cv:
                self.cells = max(0, self.cells - 1)
                self.last_cell = time.monotonic()
                self.cv.notify()

        shell.events.register("pre_run_cell", pre)
        shell.events.register("post_run_cell", post)
        # the cell that displays the explorer is running right now
        self.cells += 1

    def _idle(self) -> bool:
        now = time.monotonic()
        return (not self.waiting and not self.cells and now >= self.quiet_until
                and now - self.last_cell >= IDLE_SECONDS)

    def _aside(self) -> bool:
        """Whether a job in progress stands aside now (a foreground update runs or its
        messages are leaving)."""
        return bool(self.waiting) or time.monotonic() < self.quiet_until

    def quiet(self, seconds: float = QUIET_SECONDS) -> None:
        """Stand aside for ``seconds`` from now (called after each live update)."""
        with self.cv:
            self.quiet_until = max(self.quiet_until, time.monotonic() + seconds)

    def submit(self, ex: Any, states: list[dict[str, Any]], replace: bool = True) -> None:
        with self.cv:
            if replace:
                self.jobs.clear()
                self.generation += 1
            self.jobs.extend((ex, s) for s in states)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="vmemlab-ahead",
                                               daemon=True)
                self.thread.start()
            self.cv.notify()

    def cancel(self) -> None:
        with self.cv:
            self.jobs.clear()

    def _run(self) -> None:
        while True:
            with self.cv:
                while not self.jobs or not self._idle():
                    self.cv.wait(0.02)
                ex, st = self.jobs.popleft()
                self.busy = True
                gen = self.generation
            try:
                if self._remote(ex, st, gen):
                    continue
                for _step in ex._render_steps(st):
                    with self.cv:  # stand aside while a foreground update runs
                        while self._aside():
                            self.cv.wait(0.02)
                        if not self._wanted(ex, st, gen):
                            break
            except Exception:  # noqa: BLE001 - a failed look-ahead is only a cache miss
                pass
            finally:
                with self.cv:
                    self.busy = False
                    self.cv.notify_all()

    def _wanted(self, ex: Any, st: dict[str, Any], gen: int) -> bool:
        """Whether the job ``(ex, st)`` taken at generation ``gen`` is still wanted: a newer
        interaction replaced the queue, so finish it only if it is queued again, else start
        on what is nearest now (call with :attr:`cv` held)."""
        return self.generation == gen or any(e is ex and s == st for e, s in self.jobs)

    def _remote(self, ex: Any, st: dict[str, Any], gen: int) -> bool:
        """Render ``st`` for ``ex`` in the worker process and cache it (or give it up there,
        when it is no longer wanted); ``False`` when the thread has to render it (no worker,
        or the worker could not)."""
        if self.worker is False:
            return False
        key = state_key(st)
        if key in ex._cache:
            return True
        if self.worker is None:
            try:
                self.worker = Worker()
            except Exception:  # noqa: BLE001 - no process here: render in the thread
                self.worker = False
                return False
        def unwanted() -> bool:
            with self.cv:
                return not self._wanted(ex, st, gen)

        with self.cv:
            self.remote = (ex, key)
        try:
            got = self.worker.render(ex, st, unwanted)
            if got is None:
                if not self.worker.proc.is_alive():
                    self.worker = False
                return False
            if got is CANCELLED:
                return True
            r, memo = got
            if memo is not None:
                with RENDER_LOCK:
                    ex.absorb_memo(memo)
            ex._store(key, r)
            return True
        finally:
            with self.cv:
                self.remote = None
                self.cv.notify_all()

    def wait_remote(self, ex: Any, key: tuple) -> None:
        """Wait while the worker process renders ``key`` for ``ex`` (a foreground update that
        wants exactly that state: the process began it earlier, so it finishes first)."""
        with self.cv:
            while self.remote is not None and self.remote[0] is ex and self.remote[1] == key:
                self.cv.wait(0.05)

    def drain(self) -> None:
        """Wait until every submitted state has been rendered (tests; the worker must be idle,
        i.e. no notebook cell running)."""
        with self.cv:
            while self.jobs or self.busy:
                self.cv.wait()

    def foreground(self) -> Any:
        ahead = self

        class _Fg:
            def __enter__(self) -> None:
                with ahead.cv:
                    ahead.waiting += 1

            def __exit__(self, *exc: object) -> None:
                with ahead.cv:
                    ahead.waiting -= 1
                    ahead.cv.notify()

        return _Fg()


#: where live updates are logged (``VMEMLAB_WIDGET_LOG``; unset: no log)
LOG_PATH = os.environ.get("VMEMLAB_WIDGET_LOG") or None


def log_update(**fields: Any) -> None:
    """Append one JSON line to :data:`LOG_PATH` (if set): one live update's timings."""
    if LOG_PATH is None:
        return
    with open(LOG_PATH, "a", encoding="utf-8") as f:
        f.write(json.dumps(fields, default=str) + "\n")


def steps(gen: Iterator[None]) -> None:
    """Run every step of a render generator at once (what a foreground update does)."""
    for _ in gen:
        pass


#: what the kernel sends the look-ahead process to give up the state it is rendering
CANCEL = "cancel"
#: what :meth:`Worker.render` returns for a state given up
CANCELLED = object()


def _serve(conn: Any) -> None:
    """The look-ahead process: render each ``(module, class, state)`` it is sent with a fresh
    explorer of that class (an explorer's view depends only on its class and state) and send
    back the :class:`Rendered` (no matplotlib figures: it pickles in about 50 KB) with the
    explorer's ``ahead_memo``, or the error.  Between the state's ``ahead_steps`` (the
    model's long part, e.g. a new arch's savings points) it gives the state up when the
    kernel sends :data:`CANCEL`: one state of seconds no longer holds up the states a newer
    move can reach.  Ends when the kernel's end of the pipe closes."""
    try:  # the reader's move, its messages and the browser go first
        os.nice(10)
    except OSError:  # pragma: no cover - a platform without nice
        pass
    explorers: dict[tuple[str, str], Any] = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg == CANCEL:  # came after the job it was meant for had been answered
            continue
        mod, name, state = msg
        try:
            ex = explorers.get((mod, name))
            if ex is None:
                ex = explorers[(mod, name)] = getattr(importlib.import_module(mod), name)()
            reply: tuple[Any, ...] = ("cancelled", None, None)
            for _ in ex.ahead_steps(state):
                if conn.poll() and conn.recv() == CANCEL:
                    break  # what it computed so far stays in this process's memo
            else:
                steps(ex._render_steps(state))
                reply = ("ok", ex._cache.pop(state_key(state)), ex.ahead_memo(state))
        except Exception as e:  # noqa: BLE001 - the kernel renders this state itself
            reply = ("error", repr(e), None)
        conn.send(reply)


class Worker:
    """A child process (``spawn``: a fresh interpreter, no copy of the kernel's threads) that
    renders look-ahead states, so that the look-ahead never holds the kernel's interpreter
    lock: with a thread, every message a control move sends or receives waited for the
    renderer's 5 ms lock slices.  Started on the look-ahead's first job; any failure makes
    :meth:`render` return ``None`` and the look-ahead renders in its thread as before."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), name="vmemlab-ahead",
                                daemon=True)
        self.proc.start()
        child.close()

    def render(self, ex: Any, state: dict[str, Any],
               unwanted: Callable[[], bool] = lambda: False) -> Any:
        """``ex``'s rendering of ``state`` from the child and its
        :meth:`~vmemlab.widgets.base.Explorer.ahead_memo`, as a pair (blocks); ``None`` if
        it cannot; :data:`CANCELLED` if ``unwanted()`` turned true while the child was still
        in the state's :meth:`~vmemlab.widgets.base.Explorer.ahead_steps`."""
        cls = type(ex)
        try:
            self.conn.send((cls.__module__, cls.__qualname__, state))
            asked = False
            while not self.conn.poll(0.02):
                if not asked and unwanted():
                    self.conn.send(CANCEL)
                    asked = True
            kind, value, memo = self.conn.recv()
        except (EOFError, OSError, ValueError, TypeError, AttributeError):
            return None
        if kind == "cancelled":
            return CANCELLED
        return (value, memo) if kind == "ok" else None

    def close(self) -> None:
        self.conn.close()
        self.proc.join(timeout=5)


AHEAD = Ahead()
