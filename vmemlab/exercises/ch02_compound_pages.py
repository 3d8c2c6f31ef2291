"""Chapter 2, compound pages: seeded problems, registered with
:func:`vmemlab.exercises.base.exercise`."""

from __future__ import annotations

import random

import numpy as np

from ..page import compound_head_pfns, pfn_to_page, struct_pages
from ..plan import plan
from .base import Exercise, _choice, exercise


@exercise("compound-head")
def _compound_head(r: random.Random, seed: int) -> Exercise:
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


@exercise("why-tail-share")
def _why_tail_share(r: random.Random, seed: int) -> Exercise:
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
