"""Chapter 3, HugeTLB Vmemmap Optimization: seeded problems, registered with
:func:`vmemlab.exercises.base.exercise`."""

from __future__ import annotations

import random

import numpy as np

from ..hugetlb_vmemmap import alloc_hugetlb_folio, contrast_with_device_dax, hugetlb_vmemmap_optimize
from ..machine import Machine
from ..page import test_flag_bits
from .base import Exercise, _choice, a_or_an, exercise


@exercise("hvo-net-saved")
def _hvo_net_saved(r: random.Random, seed: int) -> Exercise:
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
        f"x86_64, kernel {kernel}: after HVO of {a_or_an(size)} {size} HugeTLB page, how many of its struct "
        f"pages have the PG_head bit set when you read their own flags word (the raw "
        f"test_bit, not PageHead())?",
        raw,
        f"{how}: {raw}.",
        hint="how many vmemmap pages are kept, and which one do the others map?",
        params={"kernel": kernel, "size": size})


@exercise("why-hvo-head")
def _why_hvo_head(r: random.Random, seed: int) -> Exercise:
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
