"""Chapter 9, capacity planning: seeded problems, registered with
:func:`vmemlab.exercises.base.exercise`."""

from __future__ import annotations

import functools
import random

from ..arch import ARCHES
from ..plan import plan
from ..units import format_size
from .base import Exercise, exercise


@functools.cache
def _ram_cost(pmem: int, align: str, ram: int) -> tuple[int, int, int, float]:
    """(struct-page pages, page-table pages, bytes, share of RAM) of ``pmem`` TiB at ``align``
    on a ``ram`` GiB x86_64 6.6 machine: a pure function of its arguments, kept because the
    24 configurations the seeds draw from are multi-TiB plans (about a second each)."""
    p = plan(f"{pmem}T", align=align, ram=f"{ram}G")
    return p.ram_data_pages, p.ram_pagetable_pages, p.ram_bytes, p.ram_share


@functools.cache
def _tib_cost(arch: str, align: int) -> tuple[int, int, int, int, int]:
    """(data pages, page size, compound pages, vmemmap pages per compound, saved per compound)
    of 1 TiB on ``arch`` at ``align``, kernel 6.6 (pure; 1 TiB plans cost about a second)."""
    p = plan("1T", align=align, arch=arch)
    return (p.ram_data_pages, p.page_size, p.compound_pages, p.vmemmap_pages_per_compound,
            p.saved_vmemmap_pages_per_compound)


@exercise("ram-share")
def _ram_share(r: random.Random, seed: int) -> Exercise:
    ram = r.choice([128, 256, 512])
    pmem = r.choice([1, 2, 3, 4])
    align = r.choice(["4K", "2M"])
    data, tables, nbytes, share = _ram_cost(pmem, align, ram)
    mib = nbytes >> 20
    return Exercise(
        "ram-share", seed,
        f"A server with {ram} GiB of RAM gets {pmem} TiB of pmem as device-dax, align {align}, "
        f"--map=mem (x86_64, 6.6). How many MiB of RAM (rounded down) do the struct pages and "
        f"their page tables take?",
        mib,
        f"{data} struct-page pages + {tables} page-table pages = "
        f"{nbytes} bytes = {mib} MiB, {100 * share:.2f}% of RAM.",
        # per TiB: at 4K the memmap is not deduplicated and is mapped with 2 MiB PMD blocks
        # (no PTE tables); at 2M it is deduplicated, so mapped with base pages through PTE
        # tables.  The PMD/PUD tables above add well under 1 MiB, lost in the rounding down.
        hint="per TiB: 16 GiB at 4K (mapped with 2 MiB PMD blocks: no PTE tables); 4 GiB at 2M "
             "plus one 4 KiB PTE table per 128 MiB (a deduplicated memmap needs base pages)",
        params={"ram": ram, "pmem": pmem, "align": align})


@exercise("ram-per-tib")
def _ram_per_tib(r: random.Random, seed: int) -> Exercise:
    arch = r.choice(["x86_64", "arm64-4k", "arm64-64k"])
    align = r.choice(ARCHES[arch].dax_aligns[1:])
    data, page_size, compound, per_compound, saved = _tib_cost(arch, align)
    mib = data * page_size >> 20
    kept = per_compound - saved
    return Exercise(
        "ram-per-tib", seed,
        f"On {arch} with device-dax align {format_size(align)} and --map=mem (kernel 6.6), how "
        f"many MiB of struct-page data pages (page tables not counted) does 1 TiB need?",
        mib,
        f"{compound} compound pages x {kept} kept vmemmap page(s) x "
        f"{page_size // 1024} KiB = {mib} MiB.",
        hint="compound pages per TiB, times the vmemmap pages each keeps, times PAGE_SIZE",
        params={"arch": arch, "align": align})
