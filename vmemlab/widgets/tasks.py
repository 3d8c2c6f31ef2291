"""Explorers that pose a question: the reader answers by moving the controls.

A :class:`Task` wraps an explorer from :mod:`vmemlab.widgets.explorers` without touching its
internals: it reads the explorer's public ``state`` and follows its ``status`` widget (which
every update rewrites), and says under the figures whether the state shown answers the
question.  :meth:`Task.check` judges a typed answer like :mod:`vmemlab.exercises` does.  Every
answer is computed from the model when the task is made (:func:`vmemlab.plan`,
:mod:`vmemlab.hugetlb_vmemmap`), never typed in.

==============================  =============================================================
:func:`smallest_saving_order`   the smallest compound order whose vmemmap deduplication saves
:func:`map_dev_ram_size`        the largest namespace whose ``--map=dev`` memmap is in RAM
:func:`no_fake_head_kernels`    the kernels whose HVO leaves no fake head
:func:`own_tail_page_order`     the smallest order whose tails get a vmemmap page of their own
:func:`least_ram_kernel`        the kernel whose 1 GiB-page vmemmap costs the least RAM
:func:`hvo_without_dax_dedup`   the kernels where HVO saves but device-dax does not
:func:`fewer_gup_atomics`       the kernels whose GUP-fast takes fewer atomics than 5.16
:func:`first_dedup_order`       an arch's smallest order that is deduplicated (savings curves)
==============================  =============================================================
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from typing import Any

from .. import exercises
from ..arch import get_arch
from ..errors import VmemlabError
from ..exercises import CheckResult
from ..kernels import KERNELS
from ..page import page_is_fake_head, pfn_to_page
from ..units import format_size
from ..viz.gupview import cover_letter_results
from ..viz.savings import explorable_orders, savings_point
from .base import SIZES, Explorer, View, cached_hvo, cached_plan
from .explorers import GupExplorer, MappingExplorer, SavingsExplorer, StructPageExplorer


class Task:
    """A question about ``explorer``, answered by the value of control ``control``.

    :param name: short id (``"smallest-saving-order"``)
    :param explorer: the explorer the reader moves
    :param question: what to find, in words
    :param control: the control whose value is the answer (``"order"``, ``"size"``, ...)
    :param answers: every value that is right (computed from the model)
    :param explanation: why, with the model's numbers
    :param hint: where to look
    :param solved: ``solved(state)``: whether an explorer state shows an answer (default: the
        control's value is one of ``answers``)
    :param progress: ``progress(state)``: one line on what the state shows (optional)
    """

    def __init__(self, name: str, explorer: Explorer, question: str, control: str,
                 answers: Iterable[Any], explanation: str, hint: str = "",
                 solved: Callable[[dict[str, Any]], bool] | None = None,
                 progress: Callable[[dict[str, Any]], str] | None = None) -> None:
        self.name = name
        self.explorer = explorer
        self.question = question
        self.control = control
        self.answers = tuple(answers)
        self.explanation = explanation
        self.hint = hint
        self._solved = solved
        self._progress = progress
        self._ui: Any = None
        self.feedback: Any = None

    # -- judging --------------------------------------------------------------------------
    def solved(self, state: dict[str, Any] | None = None) -> bool:
        """Whether ``state`` (default: the explorer's) shows an answer."""
        st = self.explorer.state if state is None else state
        if self._solved is not None:
            return bool(self._solved(st))
        return st.get(self.control) in self.answers

    def status(self, state: dict[str, Any] | None = None) -> str:
        """One line for the state shown: found, or what it shows so far."""
        st = self.explorer.state if state is None else state
        if self.solved(st):
            return f"Found: {self.control} = {st[self.control]}. {self.explanation}"
        line = self._progress(st) if self._progress is not None else ""
        return f"Not yet ({self.control} = {st.get(self.control)}). {line}".rstrip()

    def check(self, answer: Any) -> CheckResult:
        """Judge a typed answer (``None``: not answered yet)."""
        if answer is None:
            msg = (f"Not answered yet: move the explorer until it shows the answer, then put "
                   f"the {self.control} in `answer` and run this cell again.")
            if self.hint:
                msg += f"\nHint: {self.hint}"
            if exercises.solutions_shown():
                msg += f"\nSolution: {self._answer_text()}\n{self.explanation}"
            return CheckResult(None, msg)
        if any(type(answer) is type(a) and answer == a for a in self.answers) or (
                isinstance(answer, str) and answer in map(str, self.answers)):
            return CheckResult(True, f"Right: {answer}.\n{self.explanation}")
        msg = f"Not quite: {answer!r} is not it."
        if self.hint:
            msg += f"\nHint: {self.hint}"
        if exercises.solutions_shown():
            msg += f"\nSolution: {self._answer_text()}\n{self.explanation}"
        return CheckResult(False, msg)

    def _answer_text(self) -> str:
        return " or ".join(map(str, self.answers))

    def solution(self) -> str:
        """The answer (only with :func:`vmemlab.exercises.show_solutions` on)."""
        if not exercises.solutions_shown():
            return "Solutions are hidden: call vmemlab.exercises.show_solutions() to reveal them."
        return f"{self._answer_text()}\n{self.explanation}"

    # -- display --------------------------------------------------------------------------
    def render_static(self, **state: Any) -> View:
        """The explorer's static view of its current state updated with ``state`` (see
        ``Explorer.render_static``): by default the state the task starts from."""
        return self.explorer.render_static(**{**self.explorer.state, **state})

    def __repr__(self) -> str:
        """The question (display :attr:`ui` for the live explorer)."""
        return f"Task {self.name}: {self.question}"

    def _feedback_html(self) -> str:
        ok = self.solved()
        color = "#009E73" if ok else "#555555"
        return (f"<div class='vmemlab-task-feedback' data-solved='{int(ok)}' "
                f"style='color:{color};border-left:4px solid {color};padding:4px 8px'>"
                f"{'✔ ' if ok else ''}{html.escape(self.status())}</div>")

    @property
    def ui(self) -> Any:
        """The question, the explorer, and a line under it that follows the explorer."""
        if self._ui is None:
            import ipywidgets as w

            inner = self.explorer.ui
            self.feedback = w.HTML(self._feedback_html())
            q = w.HTML(f"<div class='vmemlab-task' style='background:#F3F7FB;padding:6px 8px;"
                       f"border-left:4px solid #0072B2'><b>Task.</b> "
                       f"{html.escape(self.question)}</div>")
            self.explorer.status.observe(
                lambda _ch: setattr(self.feedback, "value", self._feedback_html()),
                names="value")
            self._ui = w.VBox([q, inner, self.feedback])
        return self._ui


# -- the tasks of the chapters ------------------------------------------------------------
def _plan_or_none(size: str, order: int, map: str, arch: str, kernel: str) -> Any:
    try:
        return cached_plan(size, order, map, arch, kernel, False)
    except VmemlabError:
        return None


def smallest_saving_order(arch: str = "x86_64", kernel: str = "6.6", size: str = "2G",
                          start_order: int | None = None) -> Task:
    """Chapter 04: slide the order to the first one at which deduplication saves a vmemmap
    page (``Plan.saved_vmemmap_pages_per_compound > 0``, map=mem)."""
    orders = explorable_orders(arch)
    a = get_arch(arch)
    saved = {}
    for o in orders:
        p = _plan_or_none(size, o, "mem", arch, kernel)
        saved[o] = (p.saved_vmemmap_pages_per_compound, p.vmemmap_pages_per_compound) if p \
            else (0, 0)
    answer = next((o for o in orders if saved[o][0] > 0), None)
    if answer is None:
        raise VmemlabError(f"no order saves anything on {arch} / kernel {kernel}")
    s, n = saved[answer]
    prev = saved.get(answer - 1, (0, 0))
    first = min(orders)
    ex = MappingExplorer(arch=arch, kernel=kernel, size=size, map="mem",
                         order=start_order if start_order is not None else first)
    per_page = a.STRUCT_PAGES_PER_PAGE
    expl = (f"Order {answer} ({format_size(1 << (answer + a.page_shift))} pages) has {n} vmemmap "
            f"pages per compound page and saves {s}; order {answer - 1} has {prev[1]} and saves "
            f"{prev[0]}: the head's page and one tail page are always kept "
            f"({per_page} struct pages per vmemmap page), so a saving needs more than 2.")
    return Task(
        "smallest-saving-order", ex,
        f"{arch}, kernel {kernel}, map=mem: slide the page order to the smallest one at which "
        f"deduplication saves anything (the readout's 'saved vmemmap pages / compound page' "
        f"above 0).",
        "order", [answer], expl,
        hint="watch the left column: when is there a vmemmap page after the head page and "
             "the first tail page?",
        solved=lambda st: (st.get("order") == answer and st.get("map") == "mem"
                           and st.get("arch") == arch and st.get("kernel") == kernel),
        progress=lambda st: (f"order {st['order']} saves {saved[st['order']][0]} of "
                             f"{saved[st['order']][1]} vmemmap pages"
                             if st.get("arch") == arch and st.get("kernel") == kernel
                             and st.get("map") == "mem" and st.get("order") in saved
                             else f"set arch {arch}, kernel {kernel} and map=mem"))


def map_dev_ram_size(arch: str = "x86_64", kernel: str = "6.6", order: int = 9) -> Task:
    """Chapter 04: the largest namespace size whose ``--map=dev`` memmap still lands in RAM
    (arch/x86/mm/init_64.c ``vmemmap_populate``: less than a section's memmap is populated
    with base pages and no altmap)."""
    ram = {}
    for size in SIZES:
        p = _plan_or_none(size, order, "dev", arch, kernel)
        if p is not None:
            ram[size] = int(p.ram_data_pages)
    in_ram = [s for s in SIZES if ram.get(s, 0) > 0]
    if not in_ram:
        raise VmemlabError(f"map=dev never puts struct pages in RAM on {arch} / {kernel}")
    answer = in_ram[-1]
    a = get_arch(arch)
    nxt = next((s for s in SIZES[SIZES.index(answer) + 1:] if s in ram), None)
    expl = (f"A {answer} namespace is less than one {format_size(1 << a.section_size_bits)} "
            f"section: its {ram[answer]} struct-page pages are populated with base pages, and "
            f"that path takes no altmap, so --map=dev puts them in RAM anyway"
            + (f"; from {nxt} on the memmap is on the device ({ram[nxt]} struct-page pages in "
               f"RAM)." if nxt else "."))
    ex = MappingExplorer(arch=arch, kernel=kernel, order=order, map="dev", size="2G")
    return Task(
        "map-dev-ram-size", ex,
        f"{arch}, kernel {kernel}, {format_size(1 << (order + a.page_shift))} pages, map=dev: "
        f"which is the largest namespace size at which the struct pages still end up in RAM "
        f"(the readout's 'RAM spent' counts struct-page pages)?",
        "size", [answer], expl,
        hint="compare the namespace with the size of one memory section (chapter 01)",
        solved=lambda st: (st.get("size") == answer and st.get("map") == "dev"
                           and st.get("order") == order and st.get("arch") == arch),
        progress=lambda st: (f"{st['size']} with map={st.get('map')}: "
                             f"{ram.get(st['size'], 'no')} struct-page pages in RAM"
                             if st.get("map") == "dev" and st.get("order") == order
                             and st.get("arch") == arch
                             else f"set map=dev and order {order}"))


def _fake_heads(arch: str, kernel: str, order: int) -> int | None:
    try:
        m, folio = cached_hvo(arch, kernel, order)
    except VmemlabError:
        return None
    per = m.arch.STRUCT_PAGES_PER_PAGE
    return int(sum(page_is_fake_head(pfn_to_page(m, folio.head_pfn + k * per))
                   for k in range(1, folio.nr_pages // per)))


def no_fake_head_kernels(arch: str = "x86_64", order: int = 9) -> Task:
    """Chapter 03: which kernels' HVO leaves no fake head (5.14-5.17 keep two pages and remap
    onto the first tail page; the 2026 rework remaps onto the zone's shared tail page)."""
    fakes = {k: _fake_heads(arch, k, order) for k in KERNELS}
    answers = [k for k, n in fakes.items() if n == 0]
    why = {}
    for k in answers:
        m, folio = cached_hvo(arch, k, order)
        why[k] = ("the tails map the zone's shared tail page, which holds no head"
                  if m.kernel.shared_tail else
                  f"HVO keeps {folio.reserve} vmemmap pages and the others map the second, "
                  f"which holds only tails")
    some = {k: n for k, n in fakes.items() if n}
    ex = StructPageExplorer(arch=arch, order=order, memmap="HugeTLB HVO", kernel="6.6")
    a = get_arch(arch)
    expl = ("; ".join(f"{k}: {w}" for k, w in why.items()) + ". The others keep one page and "
            "remap the rest onto the head's: " + ", ".join(f"{k} {n}" for k, n in some.items())
            + " fake heads.")
    return Task(
        "no-fake-head-kernels", ex,
        f"{arch}, a {format_size(1 << (order + a.page_shift))} HugeTLB page after HVO: pick "
        f"a kernel under which no vmemmap page starts with a fake head (the readout's 'fake "
        f"heads' is 0).",
        "kernel", answers, expl,
        hint="how many vmemmap pages does HVO keep, and which one do the others map?",
        solved=lambda st: st.get("memmap") == "HugeTLB HVO" and st.get("kernel") in answers
        and st.get("order") == order,
        progress=lambda st: (f"kernel {st['kernel']}: {fakes.get(st['kernel'])} fake heads"
                             if st.get("memmap") == "HugeTLB HVO" and st.get("order") == order
                             else f"set memmap to HugeTLB HVO and order {order}"))


def own_tail_page_order(arch: str = "x86_64", kernel: str = "5.17", start_order: int = 4) -> Task:
    """Chapter 02: the smallest order whose struct pages fill more than one vmemmap page, so
    that some tails live in a vmemmap page without the head (``Plan.vmemmap_pages_per_compound``)."""
    a = get_arch(arch)
    orders = explorable_orders(arch)
    pages = {}
    for o in orders:
        size = format_size(max(2 << (o + a.page_shift), 1 << a.section_size_bits))
        p = _plan_or_none(size, o, "mem", arch, kernel)
        pages[o] = p.vmemmap_pages_per_compound if p is not None else 0
    answer = next(o for o in orders if pages[o] > 1)
    ex = StructPageExplorer(arch=arch, kernel=kernel, order=start_order)
    expl = (f"One vmemmap page holds {a.STRUCT_PAGES_PER_PAGE} struct pages; order {answer} has "
            f"{1 << answer} pages, {pages[answer]} vmemmap pages, so from struct page "
            f"{a.STRUCT_PAGES_PER_PAGE} on the tails sit in a vmemmap page that holds no head "
            f"and no compound metadata: the pages chapters 03 and 04 learn to share.")
    return Task(
        "own-tail-page-order", ex,
        f"{arch}, kernel {kernel}: slide the order to the smallest one at which some tails live "
        f"in a vmemmap page of their own, without the head (the figure's bottom row names the "
        f"vmemmap page each struct page is read from).",
        "order", [answer], expl,
        hint=f"how many struct pages fit in one {format_size(a.PAGE_SIZE)} vmemmap page?",
        solved=lambda st: st.get("order") == answer and st.get("arch") == arch,
        progress=lambda st: (f"order {st['order']}: {pages.get(st['order'])} vmemmap "
                             f"page(s) per compound page" if st.get("arch") == arch
                             else f"set arch {arch}"))


def least_ram_kernel(arch: str = "x86_64", size: str = "2G", order: int = 18,
                     start_order: int | None = None) -> Task:
    """Chapter 05: the kernel(s) whose vmemmap for a namespace of 1 GiB compound pages costs
    the least RAM: struct-page pages plus page-table pages (``Plan.ram_bytes``, map=mem)."""
    cost = {}
    for k in KERNELS:
        p = _plan_or_none(size, order, "mem", arch, k)
        if p is not None:
            cost[k] = (int(p.ram_data_pages), int(p.ram_pagetable_pages))
    best = min(sum(v) for v in cost.values())
    answers = [k for k, v in cost.items() if sum(v) == best]
    a = get_arch(arch)
    ex = MappingExplorer(arch=arch, order=order if start_order is None else start_order,
                         size=size, view="page tables", kernel="6.6")
    expl = (", ".join(answers) + f": {best} pages ("
            + " / ".join(f"{cost[k][0]} struct-page + {cost[k][1]} page-table" for k in answers)
            + "); the others: " + ", ".join(f"{k} {d} + {t}" for k, (d, t) in cost.items()
                                            if d + t != best) + ".")
    return Task(
        "least-ram-kernel", ex,
        f"{arch}, a {size} namespace of {format_size(1 << (order + a.page_shift))} pages, "
        f"map=mem: which kernel spends the least RAM on its vmemmap, struct pages and page "
        f"tables together (the readout's 'RAM spent')?",
        "kernel", answers, expl,
        hint="which variant shares PTE tables between PMD entries as well as pages?",
        solved=lambda st: st.get("kernel") in answers and st.get("order") == order
        and st.get("size") == size and st.get("map") == "mem" and st.get("arch") == arch,
        progress=lambda st: (f"kernel {st['kernel']}: {cost[st['kernel']][0]} struct-page + "
                             f"{cost[st['kernel']][1]} page-table pages"
                             if st.get("order") == order and st.get("size") == size
                             and st.get("map") == "mem" and st.get("kernel") in cost
                             else f"set order {order}, namespace {size}, map=mem"))


def hvo_without_dax_dedup(arch: str = "x86_64", order: int = 9, size: str = "2G") -> Task:
    """Chapter 04: the kernels under which HVO frees vmemmap pages of a HugeTLB page while
    device-dax saves none (``Plan.saved_vmemmap_pages_per_compound``; HVO:
    ``HugetlbFolio.reserve`` against its vmemmap pages)."""
    dax, hvo = {}, {}
    for k in KERNELS:
        p = _plan_or_none(size, order, "mem", arch, k)
        dax[k] = p.saved_vmemmap_pages_per_compound if p is not None else None
        try:
            m, folio = cached_hvo(arch, k, order)
            per = folio.nr_pages * m.arch.struct_page_size >> m.arch.page_shift
            hvo[k] = per - folio.reserve
        except VmemlabError:
            hvo[k] = None
    answers = [k for k in KERNELS if dax[k] == 0 and (hvo[k] or 0) > 0]
    ex = MappingExplorer(arch=arch, order=order, size=size, view="dax vs HVO", kernel="6.6")
    expl = ("; ".join(f"{k}: device-dax saves {dax[k]}, HVO {hvo[k]}" for k in answers)
            + ". HVO came first (5.14); device-dax compound pages (5.17) were deduplicated "
              "only from 5.19.")
    return Task(
        "hvo-without-dax-dedup", ex,
        f"{arch}, {order_text(arch, order)}, 'dax vs HVO' view: pick a kernel under which HVO "
        f"frees vmemmap pages but device-dax saves none (the left panel maps every vmemmap "
        f"page to a page of its own).",
        "kernel", answers, expl,
        hint="which variant had compound device-dax pages but no vmemmap deduplication?",
        solved=lambda st: st.get("kernel") in answers and st.get("order") == order
        and st.get("view") == "dax vs HVO" and st.get("map") == "mem",
        progress=lambda st: (f"kernel {st['kernel']}: device-dax saves {dax.get(st['kernel'])}"
                             f", HVO {hvo.get(st['kernel'])}"
                             if st.get("order") == order and st.get("view") == "dax vs HVO"
                             else f"set order {order} and the 'dax vs HVO' view"))


def order_text(arch: str, order: int) -> str:
    """``'2M pages'`` for ``order`` on ``arch``."""
    return f"{format_size(1 << (order + get_arch(arch).page_shift))} pages"


def fewer_gup_atomics(align: str = "2M", size: str = "16G") -> Task:
    """Chapter 07: the kernels whose GUP-fast (FOLL_GET, struct pages in RAM) of ``size`` takes
    fewer atomic operations than 5.16's (:func:`vmemlab.viz.gupview.cover_letter_results`)."""
    counts = {}
    for k in GupExplorer.OPTIONS["kernel"]:
        row = cover_letter_results(size, after=k, align=align)[0]
        counts[k] = (int(row.before.atomics), int(row.after.atomics), row.label)
    answers = [k for k, (b, a, _) in counts.items() if a < b]
    label = next(iter(counts.values()))[2]
    ex = GupExplorer(kernel="6.6", align=align, size=size)
    expl = (", ".join(f"{k}: {counts[k][0]} → {counts[k][1]}" for k in answers)
            + f" atomics ({label}); every other kernel does as many as 5.16: "
            + ", ".join(k for k in counts if k not in answers)
            + ". Only the posted series took one reference per compound page; mainline's "
              "__gup_device_huge() takes "
              "one per subpage.")
    return Task(
        "fewer-gup-atomics", ex,
        f"GUP-fast of {size} mapped with {align} pages, row '{label}': pick the 'after' kernel "
        f"whose atomics are fewer than 5.16's.",
        "kernel", answers, expl,
        hint="which variant is the unmerged series with head-once GUP?",
        solved=lambda st: st.get("kernel") in answers and st.get("align") == align
        and st.get("size") == size,
        progress=lambda st: (f"kernel {st['kernel']}: {counts[st['kernel']][0]} → "
                             f"{counts[st['kernel']][1]} atomics"
                             if st.get("align") == align and st.get("size") == size
                             and st.get("kernel") in counts
                             else f"set align {align} and mapping {size}"))


def first_dedup_order(arch: str = "ppc64-radix-64k", kernel: str = "6.6") -> Task:
    """Chapter 09: the smallest compound order at which ``arch`` deduplicates the vmemmap
    (:func:`vmemlab.viz.savings.savings_point`, map=mem)."""
    orders = explorable_orders(arch)
    pts = {o: savings_point(arch, kernel, o, "mem") for o in orders}
    answer = next(o for o in orders if pts[o].optimised)
    prev = pts[answer - 1] if answer - 1 in pts else None
    ex = SavingsExplorer(arch=arch, kernel=kernel, order=min(orders), map="mem")
    expl = (f"order {answer} ({order_text(arch, answer)}): {format_size(pts[answer].bytes_per_tib)}"
            f" per TiB against {format_size(prev.bytes_per_tib) if prev else '-'} at order "
            f"{answer - 1}; below it a compound page's memmap is too few vmemmap pages for "
            f"vmemmap_can_optimize().")
    return Task(
        "first-dedup-order", ex,
        f"{arch}, kernel {kernel}, map=mem: slide the order to the smallest one at which the "
        f"vmemmap is deduplicated (the readout's 'deduplicated: yes').",
        "order", [answer], expl,
        hint="how many struct pages does one vmemmap page hold on this arch?",
        solved=lambda st: st.get("order") == answer and st.get("arch") == arch
        and st.get("kernel") == kernel and st.get("map") == "mem",
        progress=lambda st: (f"order {st['order']}: "
                             f"{'deduplicated' if pts[st['order']].optimised else 'not deduplicated'}"
                             if st.get("arch") == arch and st.get("kernel") == kernel
                             and st.get("map") == "mem" and st.get("order") in pts
                             else f"set arch {arch}, kernel {kernel}, map=mem"))


TASKS = {"smallest-saving-order": smallest_saving_order, "map-dev-ram-size": map_dev_ram_size,
         "no-fake-head-kernels": no_fake_head_kernels, "own-tail-page-order": own_tail_page_order,
         "least-ram-kernel": least_ram_kernel, "hvo-without-dax-dedup": hvo_without_dax_dedup,
         "fewer-gup-atomics": fewer_gup_atomics, "first-dedup-order": first_dedup_order}
"""Task factories by name."""
