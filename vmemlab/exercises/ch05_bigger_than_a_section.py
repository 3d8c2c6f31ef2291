"""Chapter 5, compound pages bigger than a section: seeded problems, registered with
:func:`vmemlab.exercises.base.exercise`."""

from __future__ import annotations

import random

from ..plan import plan
from ..units import format_size
from .base import Exercise, _choice, a_or_an, exercise


@exercise("pud-pagetables")
def _pud_pagetables(r: random.Random, seed: int) -> Exercise:
    gib = r.choice([2, 4, 8, 16])
    kern = r.choice(["6.6", "v3"])
    p = plan(f"{gib}G", align="1G", kernel=kern)
    return Exercise(
        "pud-pagetables", seed,
        f"x86_64, align 1G, kernel {kern}: how many PTE-table pages does the vmemmap of "
        f"{a_or_an(gib)} {gib} GiB namespace use?",
        p.pagetables["pte"],
        "each 1 GiB compound page spans 8 sections of 2 MiB memmap; "
        + ("as merged every section has its own PTE table: 8 per GiB"
           if kern != "v3" else "v3's PMD reuse keeps 2 per GiB (sections 3-8 share one)")
        + f": {p.pagetables['pte']}.",
        hint="one PTE table maps 2 MiB of vmemmap = one x86 section",
        params={"gib": gib, "kernel": kern})


@exercise("why-1g-section")
def _why_1g_section(r: random.Random, seed: int) -> Exercise:
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
