"""Seeded homework problems in the style of OSTEP's simulators.

Each problem is generated from a seed (the same seed gives the same problem everywhere), the
answer is computed by the model, and :meth:`Exercise.check` says right or wrong with the worked
explanation.  Solutions stay hidden unless :func:`show_solutions` is switched on (or the
environment variable ``VMEMLAB_SOLUTIONS=1`` is set).

>>> ex = generate("vmemmap-pages", seed=1)
>>> ex.check(ex.answer).correct
True
"""

from __future__ import annotations

import math
import numbers
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import ParameterError
from .units import format_size

_SHOW = os.environ.get("VMEMLAB_SOLUTIONS", "") == "1"


def _whole_number(answer: object) -> int | None:
    """``answer`` as an int if it is a whole number (an int, a numpy integer, a float with no
    fraction, or a string of digits); ``None`` otherwise (bools, 16894.9, inf, NaN, words)."""
    if isinstance(answer, bool):
        return None
    if isinstance(answer, numbers.Integral):
        return int(answer)
    if isinstance(answer, numbers.Real):
        v = float(answer)
        return int(v) if math.isfinite(v) and v.is_integer() else None
    if isinstance(answer, str):
        text = answer.strip().replace("_", "").replace(",", "")
        return int(text) if text.lstrip("+-").isdigit() else None
    return None


def show_solutions(on: bool = True) -> None:
    """Reveal worked solutions in :meth:`Exercise.check` and :meth:`Exercise.solution`."""
    global _SHOW
    _SHOW = on


@dataclass
class CheckResult:
    """The verdict on one answer; prints as a short, deterministic sentence."""

    correct: bool | None
    message: str

    def __repr__(self) -> str:
        return self.message

    _repr_pretty_ = None  # plain repr in IPython too


@dataclass
class Exercise:
    """One generated problem: question text, the model's answer, a worked explanation."""

    kind: str
    seed: int
    question: str
    answer: int
    explanation: str
    hint: str = ""
    params: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Exercise {self.kind} (seed {self.seed})\n{self.question}"

    def check(self, answer: int | None) -> CheckResult:
        """Compare ``answer`` with the model's; ``None`` means not answered yet."""
        if answer is None:
            msg = "Not answered yet: put your number in `answer` and run this cell again."
            if self.hint:
                msg += f"\nHint: {self.hint}"
            if _SHOW:
                msg += f"\nSolution: {self.answer}\n{self.explanation}"
            return CheckResult(None, msg)
        value = _whole_number(answer)
        if value is None:
            return CheckResult(False, f"{answer!r} is not a whole number; the answer is a count.")
        ok = value == self.answer
        if ok:
            return CheckResult(True, f"Right: {self.answer}.\n{self.explanation}")
        msg = f"Not quite: {answer} is not it."
        msg += f"\nHint: {self.hint}" if self.hint else ""
        if _SHOW:
            msg += f"\nSolution: {self.answer}\n{self.explanation}"
        return CheckResult(False, msg)

    def solution(self) -> str:
        """The worked answer (only with :func:`show_solutions` on)."""
        if not _SHOW:
            return "Solutions are hidden: call vmemlab.exercises.show_solutions() to reveal them."
        return f"{self.answer}\n{self.explanation}"


_GENERATORS: dict[str, Callable[[random.Random, int], Exercise]] = {}


def exercise(kind: str):
    def register(fn: Callable[[random.Random, int], Exercise]):
        _GENERATORS[kind] = fn
        return fn
    return register


def kinds() -> list[str]:
    """The problem kinds :func:`generate` knows."""
    return sorted(_GENERATORS)


def generate(kind: str, seed: int = 0) -> Exercise:
    """Generate problem ``kind`` from ``seed`` (deterministic)."""
    if not isinstance(kind, str) or kind not in _GENERATORS:
        raise ParameterError("kind", kind, "one of " + ", ".join(kinds()))
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ParameterError("seed", seed, "an integer")
    return _GENERATORS[kind](random.Random(f"{kind}:{seed}"), seed)


# -- chapter 1: struct page and the sparse vmemmap ------------------------------------------
@exercise("pfn-to-page")
def _pfn_to_page(r: random.Random, seed: int) -> Exercise:
    from .arch import get_arch

    a = get_arch(r.choice(["x86_64", "arm64-64k"]))
    pfn = r.randrange(1 << 20, 1 << 26)
    off = pfn * a.struct_page_size
    vpn = off >> a.page_shift
    return Exercise(
        "pfn-to-page", seed,
        f"On {a.name} (PAGE_SIZE {a.PAGE_SIZE}, sizeof(struct page) {a.struct_page_size}), "
        f"pfn_to_page({pfn:#x}) is vmemmap + {pfn:#x}. Which vmemmap page (counting from 0 at "
        f"VMEMMAP_START) holds that struct page?",
        vpn,
        f"byte offset = pfn * {a.struct_page_size} = {off:#x}; page = offset >> "
        f"{a.page_shift} = {vpn}.",
        hint="multiply by sizeof(struct page), then divide by PAGE_SIZE",
        params={"arch": a.name, "pfn": pfn})


@exercise("sections")
def _sections(r: random.Random, seed: int) -> Exercise:
    from .arch import get_arch

    a = get_arch(r.choice(["x86_64", "arm64-64k", "ppc64-radix-64k"]))
    gib = r.choice([4, 16, 48, 96])
    n = (gib << 30) >> a.section_size_bits
    return Exercise(
        "sections", seed,
        f"How many memory sections does a {gib} GiB device range span on {a.name} "
        f"(SECTION_SIZE_BITS = {a.section_size_bits}), if it starts on a section boundary?",
        n, f"{gib} GiB / 2^{a.section_size_bits} B = {n} sections.",
        hint="a section is 1 << SECTION_SIZE_BITS bytes", params={"arch": a.name, "gib": gib})


# -- chapter 4/5: device-dax compound pagemaps ------------------------------------------------
@exercise("vmemmap-pages")
def _vmemmap_pages(r: random.Random, seed: int) -> Exercise:
    from .plan import plan

    gib = r.choice([8, 16, 32, 64, 128])
    align = r.choice(["4K", "2M", "1G"])
    p = plan(f"{gib}G", align=align)
    per = p.vmemmap_pages_per_compound
    kept = per - p.saved_vmemmap_pages_per_compound
    how = "deduplicated" if p.optimised else "no deduplication"
    return Exercise(
        "vmemmap-pages", seed,
        f"A {gib} GiB device-dax namespace (x86_64, --map=mem, align {align}, kernel 6.6): how "
        f"many vmemmap data pages (not page tables) does it need in RAM?",
        p.ram_data_pages,
        f"{p.compound_pages} compound pages of order {p.vmemmap_shift}; each has {per} vmemmap "
        f"page(s) of which {kept} are backed by their own page ({how}): "
        f"{p.compound_pages} x {kept} = {p.ram_data_pages} pages "
        f"({format_size(p.ram_data_pages * p.page_size)}).",
        hint="count compound pages, then the vmemmap pages each one keeps",
        params={"gib": gib, "align": align})


@exercise("tail-refcount")
def _tail_refcount(r: random.Random, seed: int) -> Exercise:
    order = r.choice([9, 10, 12, 15, 18])
    per = (1 << order) * 64 // 4096
    # within one section (order <= 15) the tail page is mapped by per-1 PTEs; for order 18 by
    # all but the head's: the model's page tables are the referee
    import numpy as np

    from .plan import plan

    p = plan(max(2 << (order + 12), 256 << 20), align=1 << (order + 12), strict=False)
    m, pg = p._machine, p._pgmap
    first = (pg.ranges[0][0] >> 12) * 64 >> 12
    frame, _ = m.pgtables.resolve(np.array([first + 1]))
    rc = int(m.frames.refcount[frame[0]])
    return Exercise(
        "tail-refcount", seed,
        f"x86_64, kernel 6.6: a device-dax compound page of order {order} has {per} vmemmap "
        f"pages. What is the reference count of its shared tail vmemmap page after population?",
        rc,
        f"the tail page is allocated (count 1) and every further tail-only vmemmap page maps it "
        f"with get_page(): 1 + ({per} - 2) = {per - 1}" + ("" if rc == per - 1 else
                                                       f" (model: {rc})") + ".",
        hint="one reference from the allocation, one per reuse PTE",
        params={"order": order})


@exercise("altmap-free")
def _altmap_free(r: random.Random, seed: int) -> Exercise:
    from .plan import plan

    gib = r.choice([4, 8, 16, 32, 64])
    p = plan(f"{gib}G", align="2M", map="dev")
    return Exercise(
        "altmap-free", seed,
        f"A {gib} GiB namespace with --map=dev (x86_64, align 2M): how many device pages does "
        f"the memmap take out of the altmap, counting the alignment padding?",
        p.device_data_pages + p.device_align_pages,
        f"{gib} GiB / 128 MiB = {gib * 8} sections, each one 2 MiB PMD block = 512 pages: "
        f"{p.device_data_pages}; the first block is aligned to 512 pages after the 2-page "
        f"reserve, costing {p.device_align_pages} more: "
        f"{p.device_data_pages + p.device_align_pages}.",
        hint="each section's memmap is one 2 MiB block; altmap_alloc_block_buf aligns blocks",
        params={"gib": gib})


@exercise("pud-pagetables")
def _pud_pagetables(r: random.Random, seed: int) -> Exercise:
    from .plan import plan

    gib = r.choice([2, 4, 8, 16])
    kern = r.choice(["6.6", "v3"])
    p = plan(f"{gib}G", align="1G", kernel=kern)
    return Exercise(
        "pud-pagetables", seed,
        f"x86_64, align 1G, kernel {kern}: how many PTE-table pages does the vmemmap of a "
        f"{gib} GiB namespace use?",
        p.pagetables["pte"],
        "each 1 GiB compound page spans 8 sections of 2 MiB memmap; "
        + ("as merged every section has its own PTE table: 8 per GiB"
           if kern != "v3" else "v3's PMD reuse keeps 2 per GiB (sections 3-8 share one)")
        + f": {p.pagetables['pte']}.",
        hint="one PTE table maps 2 MiB of vmemmap = one x86 section",
        params={"gib": gib, "kernel": kern})


@exercise("struct-pages-initialised")
def _init(r: random.Random, seed: int) -> Exercise:
    from .plan import plan

    gib = r.choice([16, 64, 128])
    align = r.choice(["2M", "1G"])
    p = plan(f"{gib}G", align=align)
    return Exercise(
        "struct-pages-initialised", seed,
        f"memmap_init_zone_device for a {gib} GiB namespace at align {align} (x86_64, 6.6, "
        f"--map=mem): how many struct pages does it write?",
        p.struct_pages_initialised,
        f"compound_nr_pages = VMEMMAP_RESERVE_NR * (PAGE_SIZE / 64) = 128 per compound page; "
        f"{p.compound_pages} compound pages x 128 = {p.struct_pages_initialised}.",
        hint="only the struct pages in the two vmemmap pages each compound page keeps",
        params={"gib": gib, "align": align})


# -- chapter 9/10: planning and teardown ------------------------------------------------------
@exercise("ram-share")
def _ram_share(r: random.Random, seed: int) -> Exercise:
    from .plan import plan

    ram = r.choice([128, 256, 512])
    pmem = r.choice([1, 2, 3, 4])
    align = r.choice(["4K", "2M"])
    p = plan(f"{pmem}T", align=align, ram=f"{ram}G")
    mib = p.ram_bytes >> 20
    return Exercise(
        "ram-share", seed,
        f"A server with {ram} GiB of RAM gets {pmem} TiB of pmem as device-dax, align {align}, "
        f"--map=mem (x86_64, 6.6). How many MiB of RAM (rounded down) do the struct pages and "
        f"their page tables take?",
        mib,
        f"{p.ram_data_pages} struct-page pages + {p.ram_pagetable_pages} page-table pages = "
        f"{p.ram_bytes} bytes = {mib} MiB, {100 * p.ram_share:.2f}% of RAM.",
        # per TiB: at 4K the memmap is not deduplicated and is mapped with 2 MiB PMD blocks
        # (no PTE tables); at 2M it is deduplicated, so mapped with base pages through PTE
        # tables.  The PMD/PUD tables above add well under 1 MiB, lost in the rounding down.
        hint="per TiB: 16 GiB at 4K (mapped with 2 MiB PMD blocks: no PTE tables); 4 GiB at 2M "
             "plus one 4 KiB PTE table per 128 MiB (a deduplicated memmap needs base pages)",
        params={"ram": ram, "pmem": pmem, "align": align})


@exercise("teardown-refcount")
def _teardown_refcount(r: random.Random, seed: int) -> Exercise:
    import numpy as np

    from .plan import plan

    k = r.randrange(1, 8)
    p = plan("2G", align="1G")
    m, pg = p._machine, p._pgmap
    a = m.arch
    pfn0 = pg.ranges[0][0] >> a.page_shift
    vpn_tail = (pfn0 * a.struct_page_size >> a.page_shift) + 1
    tail = int(m.pgtables.resolve(np.array([vpn_tail]))[0][0])
    for s in range(k):
        m.sparse.sparse_remove_section(pfn0 + s * a.PAGES_PER_SECTION, a.PAGES_PER_SECTION,
                                       None, pg)
    rc = int(m.frames.refcount[tail]) if m.frames.kind[tail] else 0
    return Exercise(
        "teardown-refcount", seed,
        f"x86_64, kernel 6.6, a 1 GiB device-dax compound page (8 sections of memmap). Its tail "
        f"vmemmap page starts with refcount 4095. Hot-remove removes the first {k} section(s). "
        f"What is the tail page's refcount now (0 if it was freed)?",
        rc,
        f"section 0 held the tail page's own mapping and 510 reuse PTEs (511 references); each "
        f"later section 512. After {k}: 4095 - 511 - {k - 1} x 512 = {rc}.",
        hint="each cleared PTE puts one reference", params={"sections": k})


# -- chapter 7: GUP --------------------------------------------------------------------------
@exercise("gup-atomics")
def _gup_atomics(r: random.Random, seed: int) -> Exercise:
    from . import gup

    gib = r.choice([1, 2, 4, 8])
    kernel = r.choice(["6.6", "v3"])
    flags = r.choice(["get", "pin"])
    c = gup.scenario_counters(f"{gib}G", flags, "mem", kernel)
    per = {"get": 1, "pin": 2}[flags]
    how = ("one grab per 4 KiB subpage, each on the head" if c.variant == "per-subpage-head"
           else "one grab per 2 MiB compound page")
    grabs = c.grabs
    return Exercise(
        "gup-atomics", seed,
        f"{flags}_user_pages_fast() over a {gib} GiB device-dax mapping with 2 MiB pages, kernel "
        f"{kernel}, memmap in RAM: how many atomic operations on reference and pin counts?",
        c.ref_atomics,
        f"{how}: {grabs} grabs x {per} atomic(s) ({'refcount' if per == 1 else 'refcount + pin count'})"
        f" = {c.ref_atomics}.",
        hint="count grabs (per subpage or per compound page), then atomics per grab",
        params={"gib": gib, "kernel": kernel, "flags": flags})


# -- more problems for chapters 5-11 -----------------------------------------------------------
@exercise("init-time")
def _init_time(r: random.Random, seed: int) -> Exercise:
    from .mm_init import calibrate_init_cost
    from .plan import plan

    gib = r.choice([64, 256, 512])
    align = r.choice(["4K", "2M"])
    model = calibrate_init_cost(plan("128G", align="4K")._pgmap.init_stats)
    stats = plan(f"{gib}G", align=align)._pgmap.init_stats
    ms = round(model.predict_ms(stats))
    n = sum(s.struct_pages_initialised for s in stats)
    return Exercise(
        "init-time", seed,
        f"With the cost model calibrated on the cover letter's 4K figure "
        f"({model.ns_per_struct_page:.2f} ns per struct page written), how many milliseconds "
        f"(rounded) does memmap_init_zone_device take for a {gib} GiB namespace at align "
        f"{align} (x86_64, 6.6, --map=mem)?",
        ms,
        f"{n} struct pages written x {model.ns_per_struct_page:.2f} ns = {ms} ms.",
        hint="struct pages written = compound pages x compound_nr_pages",
        params={"gib": gib, "align": align})


@exercise("gup-grabs")
def _gup_grabs(r: random.Random, seed: int) -> Exercise:
    from . import gup

    gib = r.choice([1, 2, 4])
    kernel = r.choice(["5.16", "6.6", "v3"])
    c = gup.scenario_counters(f"{gib}G", "get", "mem", kernel)
    return Exercise(
        "gup-grabs", seed,
        f"get_user_pages_fast() over {gib} GiB of a 2M-aligned device-dax mapping on kernel "
        f"{kernel} ({c.variant}): how many grabs (try_grab_* calls) does it make?",
        c.grabs,
        f"{c.variant}: " + ("one grab per compound page" if c.variant == "head-once"
                            else "one grab per 4 KiB page") + f" = {c.grabs}.",
        hint="per 4 KiB page, or per 2 MiB compound page?",
        params={"gib": gib, "kernel": kernel})


@exercise("ram-per-tib")
def _ram_per_tib(r: random.Random, seed: int) -> Exercise:
    from .arch import ARCHES
    from .plan import plan

    arch = r.choice(["x86_64", "arm64-4k", "arm64-64k"])
    align = r.choice(ARCHES[arch].dax_aligns[1:])
    p = plan("1T", align=align, arch=arch)
    mib = p.ram_data_pages * p.page_size >> 20
    kept = p.vmemmap_pages_per_compound - p.saved_vmemmap_pages_per_compound
    return Exercise(
        "ram-per-tib", seed,
        f"On {arch} with device-dax align {format_size(align)} and --map=mem (kernel 6.6), how "
        f"many MiB of struct-page data pages (page tables not counted) does 1 TiB need?",
        mib,
        f"{p.compound_pages} compound pages x {kept} kept vmemmap page(s) x "
        f"{p.page_size // 1024} KiB = {mib} MiB.",
        hint="compound pages per TiB, times the vmemmap pages each keeps, times PAGE_SIZE",
        params={"arch": arch, "align": align})


@exercise("memmap-counter")
def _memmap_counter(r: random.Random, seed: int) -> Exercise:
    from .plan import plan

    gib = r.choice([4, 16])
    align = r.choice(["2M", "1G"])
    kernel = r.choice(["6.12", "6.12.117"])
    p = plan(f"{gib}G", align=align, kernel=kernel)
    return Exercise(
        "memmap-counter", seed,
        f"Creating a {gib} GiB devdax namespace (align {align}, --map=mem) on kernel {kernel}: "
        f"by how many pages does /proc/vmstat nr_memmap_pages grow?",
        p.nr_memmap_pages,
        ("6.12 (6.11-6.12.10x) counts the full memmap, 64 B per 4 KiB page"
         if kernel == "6.12" else "6.12.117 counts VMEMMAP_RESERVE_NR (2) pages per compound "
                                 "page once deduplicated")
        + f": {p.nr_memmap_pages}.",
        hint="which kernel: before or after the 2026 accounting fix?",
        params={"gib": gib, "align": align, "kernel": kernel})


@exercise("pages-returned")
def _pages_returned(r: random.Random, seed: int) -> Exercise:
    from .plan import plan, teardown

    gib = r.choice([2, 4, 8])
    align = r.choice(["2M", "1G"])
    p = plan(f"{gib}G", align=align)
    m = p._machine
    before = m.ram.used
    teardown(p)
    back = before - m.ram.used
    return Exercise(
        "pages-returned", seed,
        f"Hot-removing a {gib} GiB namespace (align {align}, --map=mem, x86_64, 6.6) that was the "
        f"only one in its region: how many RAM pages come back, data and page tables together?",
        back,
        f"every vmemmap data page ({p.ram_data_pages}) and every page-table page "
        f"({p.ram_pagetable_pages}) that populating it allocated: {back}.",
        hint="what populating it cost: data pages plus page-table pages",
        params={"gib": gib, "align": align})


# -- chapter 2: compound pages ----------------------------------------------------------------
@exercise("compound-head")
def _compound_head(r: random.Random, seed: int) -> Exercise:
    from .page import compound_head_pfns, pfn_to_page
    from .plan import plan

    align = r.choice(["2M", "1G"])
    p = plan("2G", align=align)
    m, pg = p._machine, p._pgmap
    a = m.arch
    nr = 1 << p.vmemmap_shift
    first = pg.ranges[0][0] >> a.page_shift
    npages = (pg.ranges[0][1] - pg.ranges[0][0]) >> a.page_shift
    pfn = first + r.randrange(npages)
    while pfn % nr == 0:  # a tail, not a head
        pfn = first + r.randrange(npages)
    word = pfn_to_page(m, pfn).read("compound_head")
    head = int(compound_head_pfns(m, pfn)[0])
    return Exercise(
        "compound-head", seed,
        f"x86_64 (VMEMMAP_START = {a.vmemmap_start:#x}, sizeof(struct page) = 64), device-dax "
        f"with {align} compound pages. A struct page's compound_head word reads {word:#x}. What "
        f"is the pfn of its head page? (A hex literal such as 0x1000 is fine.)",
        head,
        f"bit 0 is set, so it is a tail; the head's struct page is at {word:#x} - 1 = "
        f"{word - 1:#x}; pfn = ({word - 1:#x} - VMEMMAP_START) / 64 = {head} ({head:#x}).",
        hint="drop bit 0, subtract VMEMMAP_START, divide by sizeof(struct page)",
        params={"align": align, "pfn": pfn, "word": word})


@exercise("tail-aliases")
def _tail_aliases(r: random.Random, seed: int) -> Exercise:
    import numpy as np

    from .page import struct_pages
    from .plan import plan

    align = r.choice(["2M", "1G"])
    kernel = r.choice(["6.6", "6.6", "5.17"])
    p = plan("2G", align=align, kernel=kernel)
    m, pg = p._machine, p._pgmap
    nr = 1 << p.vmemmap_shift
    head = pg.ranges[0][0] >> m.arch.page_shift
    k = r.choice([r.randrange(3, 64), r.randrange(64, nr)])
    st = struct_pages(m)
    rows, idx = st.locate(head + np.arange(nr, dtype=np.int64))
    count = int(((rows == rows[k]) & (idx == idx[k])).sum())
    how = ("vmemmap pages 2.. map the frame of vmemmap page 1, so tail k >= 64 shares its 64 "
           "bytes with every tail j >= 64 with j = k mod 64: (nr - 64) / 64 of them"
           if p.optimised else "kernel 5.17 does not deduplicate: every struct page is its own")
    return Exercise(
        "tail-aliases", seed,
        f"x86_64, kernel {kernel}, device-dax with {align} compound pages ({nr} pages each). How "
        f"many struct pages of one compound page, tail {k} itself included, read the same 64 "
        f"bytes of RAM as tail {k}?",
        count,
        f"{how}" + ("; tails below 64 live in vmemmap page 0, which is never shared"
                    if p.optimised and k < 64 else "") + f": {count}.",
        hint="which vmemmap page holds tail k, and how many vmemmap pages map the same frame?",
        params={"align": align, "kernel": kernel, "k": k, "nr": nr})


# -- chapter 3: HugeTLB Vmemmap Optimization --------------------------------------------------
@exercise("hvo-net-saved")
def _hvo_net_saved(r: random.Random, seed: int) -> Exercise:
    from .hugetlb_vmemmap import alloc_hugetlb_folio, hugetlb_vmemmap_optimize
    from .machine import Machine

    kernel = r.choice(["5.17", "6.6"])
    size = r.choice(["2M", "2M", "1G"])
    n = r.choice([1, 2]) if size == "1G" else r.choice([1, 8, 64, 100])
    nbytes = (2 << 20) if size == "2M" else (1 << 30)
    m = Machine("x86_64", kernel, ram=max((n + 1) * nbytes, 1 << 30))  # + the first GiB
    before = m.ram.used
    folios = [alloc_hugetlb_folio(m, size) for _ in range(n)]
    reports = [hugetlb_vmemmap_optimize(m, f) for f in folios]
    saved = before - m.ram.used
    freed = sum(rp.data_pages_freed for rp in reports)
    tables = sum(rp.split_pte_tables for rp in reports)
    return Exercise(
        "hvo-net-saved", seed,
        f"x86_64, kernel {kernel}: {n} HugeTLB page(s) of {size} are allocated from boot RAM "
        f"(consecutive, from physical address 0) and HVO optimizes each. How many pages of RAM "
        f"does that free in total, net of the PTE tables the PMD splits allocate?",
        saved,
        f"each {size} page has {reports[0].vmemmap_pages} vmemmap pages and keeps "
        f"{reports[0].reserve}: {freed} data pages freed; the boot memmap is PMD-mapped, and one "
        f"PTE table is needed per 2 MiB of vmemmap touched (2 MiB of vmemmap describes 128 MiB "
        f"of memory): {tables} table(s); {freed} - {tables} = {saved}.",
        hint="pages freed per HugeTLB page, minus one PTE table per 128 MiB of HugeTLB memory",
        params={"kernel": kernel, "size": size, "n": n})


@exercise("hvo-pg-head")
def _hvo_pg_head(r: random.Random, seed: int) -> Exercise:
    import numpy as np

    from .hugetlb_vmemmap import alloc_hugetlb_folio, hugetlb_vmemmap_optimize
    from .machine import Machine
    from .page import test_flag_bits

    kernel = r.choice(["5.17", "5.19", "6.6"])
    size = r.choice(["2M", "1G"])
    m = Machine("x86_64", kernel, ram="2G")
    folio = alloc_hugetlb_folio(m, size)
    hugetlb_vmemmap_optimize(m, folio)
    raw = int(test_flag_bits(m, folio.head_pfn + np.arange(folio.nr_pages), "PG_head").sum())
    kept = folio.reserve
    how = ("two vmemmap pages are kept and pages 2.. map page 1, which holds tails only: the "
           "head is the only struct page with PG_head" if kept == 2 else
           "pages 1.. map page 0, so the first struct page of each of them is the head's bytes "
           "(a fake head)")
    return Exercise(
        "hvo-pg-head", seed,
        f"x86_64, kernel {kernel}: after HVO of a {size} HugeTLB page, how many of its struct "
        f"pages have the PG_head bit set when you read their own flags word (the raw "
        f"test_bit, not PageHead())?",
        raw,
        f"{how}: {raw}.",
        hint="how many vmemmap pages are kept, and which one do the others map?",
        params={"kernel": kernel, "size": size})


# -- chapter 8: memory failure -----------------------------------------------------------------
@exercise("mf-unmap-len")
def _mf_unmap_len(r: random.Random, seed: int) -> Exercise:
    from .dax_device import dax_mmap_plan
    from .memory_failure import memory_failure
    from .plan import plan

    kernel = r.choice(["5.17", "6.6"])
    c = r.randrange(1, 200)
    t = r.randrange(1, 512)
    p = plan("1G", align="2M", map="dev", kernel=kernel)
    vma = dax_mmap_plan(p)
    dev_mib = (vma.vm_end - vma.vm_start) >> 20
    pfn = int(vma.va_to_pfn(vma.vm_start + c * p.align + t * p.page_size))
    res = memory_failure(p._machine, pfn, mappings=[("app", vma)])
    mib = res.unmap_start >> 20
    return Exercise(
        "mf-unmap-len", seed,
        f"Kernel {kernel}, x86_64: a process maps a whole device-dax instance (a 1 GiB "
        f"namespace, align 2M, --map=dev: {dev_mib} MiB of data after the memmap on the "
        f"device) from file offset 0, every page faulted in. memory_failure() hits tail {t} "
        f"of the compound page at file offset {2 * c} MiB. At which file offset (in MiB) does "
        f"the range unmap_mapping_range() tears down start?",
        mib,
        f"start = (head->index << PAGE_SHIFT) & ~(size - 1) with the HEAD's index (patch 1 "
        f"fetches compound_head first) and size = 2 MiB (a PMD mapping): {mib} MiB; the length "
        f"is size, {res.unmap_len >> 20} MiB (the start + size length was fixed in 5.13 by "
        f"4d75136be8bf).",
        hint="start = (head->index << PAGE_SHIFT) & ~(size - 1); whose index?",
        params={"kernel": kernel, "c": c, "t": t, "device_mib": dev_mib})


@exercise("mf-enxio-pfns")
def _mf_enxio_pfns(r: random.Random, seed: int) -> Exercise:
    from .errors import KernelError
    from .memory_failure import memory_failure
    from .plan import plan

    gib = r.choice([1, 4, 16, 64])
    p = plan(f"{gib}G", align="2M", map="dev")
    m, pg = p._machine, p._pgmap
    base = pg.ranges[0][0] >> m.arch.page_shift

    def refused(pfn: int) -> bool:
        try:
            memory_failure(m, pfn)
        except KernelError as e:
            return e.errno == "ENXIO"
        return False

    lo, hi = 0, (pg.ranges[0][1] - pg.ranges[0][0]) >> m.arch.page_shift
    while lo < hi:  # first pfn offset memory_failure accepts (binary search on the model)
        mid = (lo + hi) // 2
        if refused(base + mid):
            lo = mid + 1
        else:
            hi = mid
    return Exercise(
        "mf-enxio-pfns", seed,
        f"A {gib} GiB namespace, --map=dev, align 2M (x86_64, 6.6). memory_failure() refuses "
        f"with -ENXIO every pfn at the start of the namespace that holds the info block or the "
        f"memmap (pgmap_pfn_valid() is false). How many pfns is that?",
        lo,
        f"pgmap_pfn_valid: pfn >= range start + vmem_altmap_offset() = reserve + free = "
        f"{pg.altmap.reserve} + {lo - pg.altmap.reserve}: the 8 KiB info block, {gib} GiB / 4 KiB "
        f"x 64 B of struct pages, rounded up to the 2 MiB alignment: {lo} pfns "
        f"({format_size(lo << m.arch.page_shift)}).",
        hint="the data starts at the first 2 MiB boundary after 8 KiB + 64 bytes per 4 KiB page",
        params={"gib": gib})


# -- questions that ask why (multiple choice: the answer is the number of the right option) ----
def _choice(r: random.Random, kind: str, seed: int, question: str, right: str,
            wrong: list[str], explanation: str, hint: str = "", params: dict | None = None
            ) -> Exercise:
    """A multiple-choice :class:`Exercise`: the options are shuffled by the seed and numbered
    from 1; the answer :meth:`Exercise.check` expects is the right option's number."""
    options = [right, *wrong]
    r.shuffle(options)
    answer = options.index(right) + 1
    text = question + "\n" + "\n".join(f"  {i}. {o}" for i, o in enumerate(options, 1))
    text += "\nAnswer with the number of the option."
    return Exercise(kind, seed, text, answer, f"option {answer}: {explanation}", hint=hint,
                    params={"options": options, **(params or {})})


@exercise("why-tail-share")
def _why_tail_share(r: random.Random, seed: int) -> Exercise:
    import numpy as np

    from .plan import plan

    order = r.choice([9, 10, 12])
    p = plan(max(2 << (order + 12), 256 << 20), align=1 << (order + 12), strict=False)
    m, pg = p._machine, p._pgmap
    first = (pg.ranges[0][0] >> 12) * 64 >> 12
    per = (1 << order) * 64 // 4096
    frames, _ = m.pgtables.resolve(np.arange(first, first + per, dtype=np.int64))
    distinct = len(set(frames.tolist()))
    return _choice(
        r, "why-tail-share", seed,
        f"x86_64, kernel 6.6: a device-dax compound page of order {order} has {per} vmemmap "
        f"pages, and the model backs them with {distinct} physical pages. Why may the vmemmap "
        f"pages that hold only tail struct pages all map one physical page, while the head's "
        f"vmemmap page keeps its own?",
        "every tail's struct page holds the same words (compound_head = the head's address "
        "with bit 0 set, the same flags and pgmap), so one copy serves them all; the head "
        "page and page[1] carry per-compound state (refcount, order, pin count) that must be "
        "stored once, for real",
        ["tail struct pages are never read once the compound page is set up",
         "the shared page is mapped read-only, so writes to tails are caught and redirected",
         "the CPU's cache deduplicates identical cache lines, so the kernel can share pages"],
        f"the first vmemmap page holds the head and the first tails (page[1], page[2] carry "
        f"compound fields); vmemmap pages 2-{per - 1} hold tails only and map the page of "
        f"vmemmap page 1: {per} vmemmap pages, {distinct} physical pages.",
        hint="what does a tail's struct page contain, and how does it differ between tails?",
        params={"order": order})


@exercise("why-map-dev")
def _why_map_dev(r: random.Random, seed: int) -> Exercise:
    from .plan import plan

    gib = r.choice([16, 64, 256])
    mem = plan(f"{gib}G", align="2M", map="mem")
    dev = plan(f"{gib}G", align="2M", map="dev")
    return _choice(
        r, "why-map-dev", seed,
        f"A {gib} GiB device-dax namespace, align 2M, kernel 6.6: with --map=mem its memmap "
        f"keeps {mem.vmemmap_pages_per_compound - mem.saved_vmemmap_pages_per_compound} of "
        f"{mem.vmemmap_pages_per_compound} vmemmap pages per compound page; with --map=dev it "
        f"keeps {dev.vmemmap_pages_per_compound - dev.saved_vmemmap_pages_per_compound}. Why?",
        "with --map=dev the memmap is allocated from the device's altmap, and "
        "vmemmap_can_optimize() is false when there is an altmap, so every vmemmap page is "
        "populated with its own page on the device",
        ["device memory cannot be mapped by PTEs, only by PMD blocks",
         "a 2 MiB compound page is too small to share vmemmap pages",
         "the device's struct pages are initialised lazily, so there is nothing to share yet"],
        f"the model: --map=mem puts {mem.ram_data_pages} struct-page pages in RAM; --map=dev "
        f"puts {dev.device_data_pages} on the device and {dev.ram_data_pages} in RAM.",
        hint="look at the condition in vmemmap_can_optimize() (mm_types.h / sparse-vmemmap.c)",
        params={"gib": gib})


@exercise("why-1g-section")
def _why_1g_section(r: random.Random, seed: int) -> Exercise:
    from .plan import plan

    gib = r.choice([64, 128, 256])
    main = plan(f"{gib}G", align="1G")
    v3 = plan(f"{gib}G", align="1G", kernel="v3")
    return _choice(
        r, "why-1g-section", seed,
        f"{gib} GiB of device-dax with 1 GiB pages (x86_64): kernel 6.6 spends "
        f"{format_size(main.ram_bytes)} of RAM on the memmap, the v3 series would have spent "
        f"{format_size(v3.ram_bytes)}. Why does mainline spend more?",
        "mainline populates the memmap one section (128 MiB) at a time, so every section gets "
        "its own PTE table even though their entries all point at the same tail page; v3's "
        "patch 14 (never merged) reused one tail-only PTE table for the later PMDs of a "
        "PUD-sized compound page",
        ["mainline keeps two tail pages per section instead of one",
         "mainline maps 1 GiB compound pages with PMD blocks",
         "v3 put the struct pages of 1 GiB pages on the device"],
        f"page tables: 6.6 {main.pagetables}, v3 {v3.pagetables}; struct-page pages "
        f"{main.ram_data_pages} vs {v3.ram_data_pages}.",
        hint="compare the page-table counts of the two plans",
        params={"gib": gib})


@exercise("why-longterm-slow")
def _why_longterm_slow(r: random.Random, seed: int) -> Exercise:
    caller = r.choice(["an RDMA driver registering a memory region (ib_umem_get)",
                       "VFIO mapping guest memory for device DMA (vfio_pin_pages)"])
    return _choice(
        r, "why-longterm-slow", seed,
        f"Kernel 5.17-6.14: {caller} pins a device-dax mapping with pin_user_pages_fast() and "
        f"FOLL_LONGTERM. Which path pins the pages, and why?",
        "the slow path (__gup_longterm_locked): GUP-fast refuses FOLL_LONGTERM on devmap "
        "entries and leaves them to the slow path, which has the VMA and decides whether a "
        "long-term pin of that ZONE_DEVICE memory is allowed (fs-dax refuses it)",
        ["GUP-fast, because device-dax pages are never migrated",
         "GUP-fast, but it takes one reference per compound page instead of per subpage",
         "neither: device-dax memory cannot be pinned at all"],
        "gup_fast_pte_range / gup_fast_devmap_leaf bail out on pte_devmap() with FOLL_LONGTERM "
        "and the caller falls back to the slow path; the per-subpage atomics chapter 07 counts "
        "are those of a short-term GUP-fast pin (FOLL_PIN without FOLL_LONGTERM, e.g. O_DIRECT "
        "I/O into a device-dax mapping).",
        hint="read the FOLL_LONGTERM check in mm/gup.c's fast path",
        params={"caller": caller})


@exercise("why-hvo-head")
def _why_hvo_head(r: random.Random, seed: int) -> Exercise:
    from .hugetlb_vmemmap import contrast_with_device_dax

    order = r.choice([9, 18])
    c = contrast_with_device_dax(order)
    hvo, dax = c["hvo"]["reused_vmemmap_page"], c["device_dax"]["reused_vmemmap_page"]
    return _choice(
        r, "why-hvo-head", seed,
        f"x86_64, kernel 6.6, compound pages of order {order}: the model's device-dax memmap "
        f"maps its shared vmemmap pages to vmemmap page {dax}, HVO to vmemmap page {hvo}. Why "
        f"does HVO (5.18+) reuse that page?",
        "HVO keeps only one vmemmap page per HugeTLB page and it must be the head's (page[0]-"
        "page[63] hold the head and the compound fields); the other pages then show the head's "
        "struct pages, which is why 5.18 needs fake-head detection",
        ["the head's vmemmap page is the only one that is read-only",
         "HVO cannot remap the first tail page because it is on another PMD",
         "device-dax and HVO reuse the same page; the numbers only differ in how they count"],
        f"device-dax keeps vmemmap pages 0 and 1 (head, then a tail page every other tail page "
        f"maps); HVO keeps page 0 only (5.18+) and maps all {c['hvo']['vmemmap_pages'] - 1} "
        f"others to it.",
        hint="how many vmemmap pages does HVO keep per HugeTLB page in 5.18+?",
        params={"order": order})
