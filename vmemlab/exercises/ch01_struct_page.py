"""Chapter 1, struct page and the sparse vmemmap: seeded problems, registered with
:func:`vmemlab.exercises.base.exercise`."""

from __future__ import annotations

import random

from ..arch import get_arch
from .base import Exercise, a_or_an, exercise


@exercise("pfn-to-page")
def _pfn_to_page(r: random.Random, seed: int) -> Exercise:
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
    a = get_arch(r.choice(["x86_64", "arm64-64k", "ppc64-radix-64k"]))
    gib = r.choice([4, 16, 48, 96])
    n = (gib << 30) >> a.section_size_bits
    return Exercise(
        "sections", seed,
        f"How many memory sections does {a_or_an(gib)} {gib} GiB device range span on {a.name} "
        f"(SECTION_SIZE_BITS = {a.section_size_bits}), if it starts on a section boundary?",
        n, f"{gib} GiB / 2^{a.section_size_bits} B = {n} sections.",
        hint="a section is 1 << SECTION_SIZE_BITS bytes", params={"arch": a.name, "gib": gib})
