"""Chapter 4, device-dax compound pagemaps: seeded problems, registered with
:func:`vmemlab.exercises.base.exercise`."""

from __future__ import annotations

import random

import numpy as np

from ..plan import plan
from ..units import format_size
from .base import Exercise, _choice, exercise


@exercise("vmemmap-pages")
def _vmemmap_pages(r: random.Random, seed: int) -> Exercise:
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


@exercise("why-map-dev")
def _why_map_dev(r: random.Random, seed: int) -> Exercise:
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
