"""Chapter 7, GUP: seeded problems, registered with
:func:`vmemlab.exercises.base.exercise`."""

from __future__ import annotations

import random

from .. import gup
from .base import Exercise, _choice, a_or_an, exercise


@exercise("gup-atomics")
def _gup_atomics(r: random.Random, seed: int) -> Exercise:
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
        f"{flags}_user_pages_fast() over {a_or_an(gib)} {gib} GiB device-dax mapping with 2 MiB "
        f"pages, kernel "
        f"{kernel}, memmap in RAM: how many atomic operations on reference and pin counts?",
        c.ref_atomics,
        f"{how}: {grabs} grabs x {per} atomic(s) ({'refcount' if per == 1 else 'refcount + pin count'})"
        f" = {c.ref_atomics}.",
        hint="count grabs (per subpage or per compound page), then atomics per grab",
        params={"gib": gib, "kernel": kernel, "flags": flags})


@exercise("gup-grabs")
def _gup_grabs(r: random.Random, seed: int) -> Exercise:
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
