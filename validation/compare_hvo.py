#!/usr/bin/env python3
"""HVO measured (``results/hvo-*.json`` from ``hvo.py``) beside ``vmemlab.hugetlb_vmemmap``.

For every runtime scenario the model boots the same RAM, puts HugeTLB pages at the head pfns
the guest's ``/proc/kpageflags`` showed (placement decides how many vmemmap PMDs are split),
optimizes them when ``hugetlb_optimize_vmemmap`` was 1, and dissolves them.  Predicted free-page
changes: allocation ``-pages + vmemmap pages freed - PTE tables of the PMD splits``; dissolve
``+pages - vmemmap pages allocated again`` (split tables stay).  Boot-time scenarios compare
the ``hugetlb_free_vmemmap=on`` boot with the ``=off`` boot (different boots: noisier).

The guest script's own files are RAM too: ``step`` saves ``dmesg -c`` in ``/tmp/dm`` on the
initramfs (tmpfs, ``shmem`` pages that neither ``drop_caches`` nor the free-page count sees as
free) *after* a phase's reads, so the reads of the next phase run with the previous phase's
dmesg in memory.  After a dissolve that printed ``BUG: Bad page state`` that file is about
125 KB, 31 pages: the reads right after it (``rt-1G-hvo0`` ``before`` on 6.12.117) are 31 pages
low, which made that allocation look 29 pages smaller than the model.  The free-page deltas
below are corrected by ``ceil(len(previous dmesg) / PAGE_SIZE)`` per phase (the raw ones are
kept as ``*_raw``; the correction per phase is ``harness_tmp_dm_pages``).

The dissolve residual (the 2 MiB dissolves came out 15-20 pages short of the model on both
kernels, with the sysctl at 0 and at 1) is the harness too.  A dissolve's free-page delta is
taken from the ``allocated`` reads to the ``dissolved`` reads, and in between the guest script
runs ``kpf`` (the ``/proc/kpageflags`` scan) and, in the ``off`` boot, ``capture`` (some 95
/proc and /sys files copied to the console, two processes each); the allocation's interval has
neither.  ``hvo.py run --boots repeat`` (``results/hvorepeat-<version>.json``) reads after each
part separately, in identical cycles with 64 x 2M pages (``a0``/``a1``) and with nothing
allocated (``n0``).  There the dissolve alone returns what the model says within the reads'
noise (|measured - model| <= 8), while ``capture`` changes free pages by -29..+7
(``nr_slab_unreclaimable`` +6..+13 every time, never given back: ``vmap_area`` slab, by the
``slab`` boots' /proc/slabinfo, :func:`slab_attribution`; slab reclaimable, the dentries and
inodes of the files read, swings -12..+15) and ``kpf`` by -9..+5 (no counter moves: read
noise); kpf+capture together cost 11-24 pages on 6.1.192 and 0-28 on
6.12.117.  :func:`harness_costs` gives those parts per cycle; each runtime row gets the band
the same parts spanned there and in the committed steps that allocated nothing
(``harness_band``, widened by the dissolve-alone noise), ``dissolve_residual_less_harness``
(the residual minus the band's median) and ``residual_in_harness_band``.

    python3 validation/compare_hvo.py [results/hvo-….json] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def variant_for(version: str) -> str:
    """The model's kernel variant for a measured kernel."""
    from vmemlab.kernels import KERNELS

    if version.startswith("6.12"):
        return "6.12.117"
    if version.startswith("6.1."):
        return "6.1" if "6.1" in KERNELS else "5.19"
    return "6.6"


def model_run(variant: str, ram: int, heads: list[int], order: int, optimize: bool) -> dict:
    """Place, optimize, dissolve in the model; return predicted deltas (pages)."""
    from vmemlab import hugetlb_vmemmap as hv
    from vmemlab.machine import Machine

    m = Machine("x86_64", variant, ram=ram)
    st = hv._state(m)
    used0 = m.ram.used
    vm0 = dict(m.vmstat)
    folios = []
    for h in heads:
        f = hv.HugetlbFolio(h, order)
        hv.prep_compound_hugetlb(m, h, order)
        st.folios.append(f)
        folios.append(f)
    freed = splits = 0
    for f in folios:
        if optimize:
            r = hv.hugetlb_vmemmap_optimize(m, f)
            freed += r.data_pages_freed
            splits += r.split_pte_tables
    used1 = m.ram.used
    vm1 = dict(m.vmstat)
    bad = 0
    for f in folios:
        ret = hv.dissolve_free_huge_page(m, f)
        bad += len(ret) if isinstance(ret, list) else 0
    # engines that model the 6.12.115+ restore bug record leaked heads (their pages never
    # reach the buddy allocator); older engines return every dissolved page
    leaked = len(getattr(st, "leaked", []) or []) << order
    used2 = m.ram.used
    vm2 = dict(m.vmstat)
    n = len(heads) << order
    return {
        "alloc_free_delta": -n + (used0 - used1),
        "dissolve_free_delta": n - leaked - (used2 - used1),
        "bad_pages": bad, "leaked_pages": leaked,
        "vmemmap_freed": freed, "split_pte_tables": splits,
        "alloc_nr_memmap_pages": vm1["nr_memmap_pages"] - vm0["nr_memmap_pages"],
        "alloc_nr_memmap_boot_pages": vm1["nr_memmap_boot_pages"] - vm0["nr_memmap_boot_pages"],
        "dissolve_nr_memmap_pages": vm2["nr_memmap_pages"] - vm1["nr_memmap_pages"],
        "dissolve_nr_memmap_boot_pages": vm2["nr_memmap_boot_pages"]
        - vm1["nr_memmap_boot_pages"],
    }


def bad_pages(dmesg: str) -> dict:
    """``BUG: Bad page state`` reports in a step's dmesg: count, reasons, first pfns."""
    import re

    pfns = re.findall(r"BUG: Bad page state in process \S+\s+pfn:([0-9a-f]+)", dmesg)
    why = sorted(set(re.findall(r"page dumped because: ([^\n]*)", dmesg)))
    return {"reports": len(pfns), "reasons": why, "pfns": pfns[:8]}


def _ph(step: dict, phase: str) -> dict:
    return step["phases"][phase]


#: x86_64 PAGE_SIZE: tmpfs holds a file in whole pages
PAGE_SIZE = 4096


def harness_tmp_dm_pages(boot: dict) -> dict[tuple[str, str], int]:
    """Pages the guest's ``/tmp/dm`` holds during each phase's reads, ``(step, phase)`` ->
    pages: the dmesg saved by the phase before (in boot order; the first phase sees the boot
    dmesg, ``guest.boot_dmesg_boot``), rounded up to whole pages as tmpfs stores it."""
    prev = len((boot.get("guest") or {}).get("boot_dmesg_boot", "") or "")
    held = {}
    for st in boot["steps"]:
        for phase, v in st["phases"].items():
            held[(st["name"], phase)] = -(-prev // PAGE_SIZE)
            prev = len(v.get("dmesg", "") or "")
    return held


#: the phases of a ``repeat`` cycle (hvo.py REPEAT_BOOT), in the order they are read
REPEAT_PHASES = ("before", "allocated", "after_kpf", "after_capture", "dissolved", "settled")


def harness_costs(repeat: dict) -> list[dict]:
    """Per ``repeat`` cycle: the /tmp/dm-corrected free-page change of each part of the
    allocated -> dissolved interval -- ``kpf``, ``capture``, ``dissolve`` (the ``echo 0`` alone,
    minus the model's prediction for the cycle's heads; 0 for an ``n`` cycle) -- plus ``alloc``
    (likewise minus the model), ``settle`` (two reads with nothing between) and the counters
    that ``capture`` moved (slab pages; anon/file pages of the capture's processes)."""
    variant = variant_for(repeat["kernel"]["version"])
    out = []
    for b in repeat["boots"]:
        ram = b["machine"]["ram_mib"] << 20
        held = harness_tmp_dm_pages(b)
        for st in b["steps"]:
            if not st["name"].startswith("rep") or set(REPEAT_PHASES) - set(st["phases"]):
                continue
            free = {p: _ph(st, p)["free_median"] + held[(st["name"], p)] for p in REPEAT_PHASES}
            kind = st["name"].split("-")[-1]
            heads = [h for h in _ph(st, "allocated")["kpf_heads"] if h % 512 == 0]
            pred = ({"alloc_free_delta": 0, "dissolve_free_delta": 0} if kind[0] == "n"
                    else model_run(variant, ram, heads, 9, kind[1] == "1"))
            cap = {k: _ph(st, "after_capture").get(k, 0) - _ph(st, "after_kpf").get(k, 0)
                   for k in ("nr_slab_unreclaimable", "nr_slab_reclaimable", "nr_anon_pages",
                             "nr_file_pages")}
            out.append({
                "cycle": st["name"], "kind": kind, "pages": len(heads),
                "alloc": free["allocated"] - free["before"] - pred["alloc_free_delta"],
                "kpf": free["after_kpf"] - free["allocated"],
                "capture": free["after_capture"] - free["after_kpf"],
                "dissolve": free["dissolved"] - free["after_capture"]
                - pred["dissolve_free_delta"],
                "settle": free["settled"] - free["dissolved"],
                "capture_counters": cap,
            })
    return out


def _harness_parts(boot: dict, size: str, hvo: int) -> tuple[str, ...]:
    """What the guest script ran between a runtime step's allocated and dissolved reads
    besides the ``echo 0``: always ``kpf``; ``capture`` where the step's files were captured
    (every runtime step of the ``off`` boot, none of the ``rt1g`` boot)."""
    captured = any(c.endswith(f"hvo-hugetlb-{size}-hvo{hvo}") for c in boot.get("captured") or [])
    return ("kpf", "capture") if captured else ("kpf",)


def _controls(result: dict, parts: tuple[str, ...]) -> tuple[int, ...]:
    """Dissolve free-page deltas (/tmp/dm-corrected) of the runtime steps of ``result`` whose
    pool never grew (6.1's ``off``-boot 1 GiB steps): the harness's ``parts`` alone."""
    out = []
    for b in result["boots"]:
        held = harness_tmp_dm_pages(b)
        for st in b["steps"]:
            if not st["name"].startswith("rt-") or set(st["phases"]) < {"allocated", "dissolved"}:
                continue
            alloc, diss = _ph(st, "allocated"), _ph(st, "dissolved")
            if alloc["kpf_heads"] or _harness_parts(b, st["size"], int(st["hvo"])) != parts:
                continue
            out.append(diss["free_median"] + held[(st["name"], "dissolved")]
                       - alloc["free_median"] - held[(st["name"], "allocated")])
    return tuple(out)


def load_boot_pairs(version: str) -> list[tuple[dict, dict]]:
    """``(on, off-boot)`` boot pairs of ``results/hvoboot-<version>.json`` (hvo.py ``--boots
    off-boot on``): the boot-time steps again, in fresh boots, for the boot-to-boot spread of
    the on-vs-off difference."""
    f = RESULTS / f"hvoboot-{version}.json"
    if not f.exists():
        return []
    boots = json.loads(f.read_text())["boots"]
    offs = [b for b in boots if b["which"] == "off-boot"]
    ons = [b for b in boots if b["which"] == "on"]
    return list(zip(ons, offs))


def load_repeat(version: str) -> dict | None:
    """``results/hvorepeat-<version>.json`` if it was measured."""
    f = RESULTS / f"hvorepeat-{version}.json"
    return json.loads(f.read_text()) if f.exists() else None


def harness_band(costs: list[dict], parts: tuple[str, ...],
                 controls: tuple[int, ...] = ()) -> dict:
    """The free-page change ``parts`` (e.g. ``("kpf", "capture")``) cost over the repeat
    cycles, plus ``controls`` (dissolve deltas of committed steps that allocated nothing, the
    same parts with nothing else): min, median, max, and ``noise``, the largest
    |dissolve-alone residual| of the repeat cycles (how far one median-to-median delta strays
    with nothing to explain); ``lo``/``hi`` is the band widened by it."""
    import statistics

    if not costs:
        return {}
    sums = sorted([sum(c[p] for p in parts) for c in costs] + list(controls))
    noise = max(abs(c["dissolve"]) for c in costs)
    return {"parts": "+".join(parts), "n": len(sums), "min": sums[0], "max": sums[-1],
            "median": statistics.median(sums), "noise": noise,
            "lo": sums[0] - noise, "hi": sums[-1] + noise}


def boot_pair_row(on_boot: dict, off_boot: dict, variant: str,
                  label: str = "on-vs-off") -> dict:
    """The boot-time pages of an ``on`` boot against an ``off`` boot (or ``off-boot``: the
    same first steps): free pages at the ``boot`` read, corrected for ``/tmp/dm``, against the
    model's freed vmemmap pages less the PTE tables the splits take."""
    on = next(s for s in on_boot["steps"] if s["name"] == "boot-on")
    off = next(s for s in off_boot["steps"] if s["name"] == "boot-off")
    ram = on_boot["machine"]["ram_mib"] << 20
    heads = [h for h in _ph(on, "boot")["kpf_heads"] if h % 512 == 0]
    pred = {}
    try:
        for order, sel in ((9, [h for h in heads if h % 512 == 0 and h % 262144]),
                           (18, [h for h in heads if h % 262144 == 0])):
            r = model_run(variant, ram, sel, order, True)
            for k in ("vmemmap_freed", "split_pte_tables"):
                pred[k] = pred.get(k, 0) + r[k]
            pred["alloc_nr_memmap_boot_pages"] = (pred.get("alloc_nr_memmap_boot_pages", 0)
                                                  + r["alloc_nr_memmap_boot_pages"])
            pred["alloc_nr_memmap_pages"] = (pred.get("alloc_nr_memmap_pages", 0)
                                             + r["alloc_nr_memmap_pages"])
        pred["on_minus_off_free"] = pred["vmemmap_freed"] - pred["split_pte_tables"]
    except Exception as exc:  # noqa: BLE001
        pred = {"error": repr(exc)}
    a, b_ = _ph(on, "boot"), _ph(off, "boot")
    h_on, h_off = harness_tmp_dm_pages(on_boot), harness_tmp_dm_pages(off_boot)
    dm_on, dm_off = h_on[("boot-on", "boot")], h_off[("boot-off", "boot")]
    raw = a["free_median"] - b_["free_median"]
    meas = {
        "on_minus_off_free": raw + dm_on - dm_off,
        "on_minus_off_free_raw": raw,
        "harness_tmp_dm_pages": f"{dm_on}/{dm_off}",
        "on_minus_off_nr_memmap_boot_pages": a["nr_memmap_boot_pages"]
        - b_["nr_memmap_boot_pages"],
        "on_minus_off_nr_memmap_pages": a["nr_memmap_pages"] - b_["nr_memmap_pages"],
        "on_minus_off_memtotal_kb": (a["hugetlb"] or {}).get("memtotal", 0)
        - (b_["hugetlb"] or {}).get("memtotal", 0),
        "on_dissolve_free_delta": _ph(on, "dissolved")["free_median"] - a["free_median"],
        "off_dissolve_free_delta": _ph(off, "dissolved")["free_median"] - b_["free_median"],
        "pages_2M": len([h for h in heads if h % 262144]),
        "pages_1G": len([h for h in heads if h % 262144 == 0]),
        "regions_128M": len({h >> 15 for h in heads}),
    }
    return {"boot": label, "scenario": "boot-time", "variant": variant,
            "measured": meas, "model": pred,
            "bad_page": {"on-dissolved": bad_pages(_ph(on, "dissolved")["dmesg"]),
                         "off-dissolved": bad_pages(_ph(off, "dissolved")["dmesg"])}}


def _boot_free(boot: dict, step: str) -> int:
    """Free pages at ``step``'s ``boot`` read, corrected for the boot dmesg ``/tmp/dm`` held."""
    st = next(s for s in boot["steps"] if s["name"] == step)
    return _ph(st, "boot")["free_median"] + harness_tmp_dm_pages(boot)[(step, "boot")]


def boot_spread_row(pairs: list[tuple[dict, dict]], pair_rows: list[dict], variant: str) -> dict:
    """Every ``on`` and ``off`` boot of a kernel together: the same boot-time pages in identical
    boots, so how far one boot's free pages stray from another's (``boot_to_boot_spread``, the
    larger of the two sides' max - min) bounds what a two-boot difference can show; the model's
    on-minus-off against the difference of the means and the range of the pairs."""
    import statistics

    on = [_boot_free(a, "boot-on") for a, _ in pairs]
    off = [_boot_free(b, "boot-off") for _, b in pairs]
    diffs = [r["measured"]["on_minus_off_free"] for r in pair_rows]
    model = pair_rows[0]["model"].get("on_minus_off_free")
    mean = round(statistics.mean(on) - statistics.mean(off), 1)
    spread = max(max(on) - min(on), max(off) - min(off))
    meas = {"on_minus_off_free": mean, "boots": f"{len(on)} on, {len(off)} off",
            "on_free_range": f"{min(on)}..{max(on)}", "off_free_range": f"{min(off)}..{max(off)}",
            "boot_to_boot_spread": spread, "pair_range": f"{min(diffs)}..{max(diffs)}"}
    if model is not None:
        meas["model_in_pair_range"] = min(diffs) <= model <= max(diffs)
        meas["mean_within_spread"] = abs(mean - model) <= spread
    return {"boot": "all boots", "scenario": "boot-time-spread", "variant": variant,
            "measured": meas, "model": {"on_minus_off_free": model}, "bad_page": {}}


def compare(result: dict, repeat: dict | None = None) -> list[dict]:
    """One row per scenario.  ``repeat`` (default: the committed ``hvorepeat-<version>.json``)
    gives the harness's own cost inside each dissolve's interval (:func:`harness_costs`)."""
    variant = variant_for(result["kernel"]["version"])
    if repeat is None:
        repeat = load_repeat(result["kernel"]["version"])
    costs = harness_costs(repeat) if repeat else []
    rows = []
    boots = {b["which"]: b for b in result["boots"]}
    for b in result["boots"]:
        ram = b["machine"]["ram_mib"] << 20
        held = harness_tmp_dm_pages(b)
        for st in b["steps"]:
            if not st["name"].startswith("rt-"):
                continue
            dm = [held[(st["name"], p)] for p in ("before", "allocated", "dissolved")]
            size, hvo = st["size"], int(st["hvo"])
            order = 9 if size == "2M" else 18
            before, alloc, diss = (_ph(st, p) for p in ("before", "allocated", "dissolved"))
            # KPF_HUGE heads of this size: aligned to the page size (after a dissolve that hit
            # the 6.12.115+ restore bug, stale head copies stay visible at unaligned pfns)
            heads = [h for h in alloc["kpf_heads"] if h % (1 << order) == 0]
            stale = len(alloc["kpf_heads"]) - len(heads)
            try:
                pred = model_run(variant, ram, heads, order, bool(hvo))
            except Exception as exc:  # noqa: BLE001 - shown in the table
                pred = {"error": repr(exc)}
            raw_alloc = alloc["free_median"] - before["free_median"]
            raw_diss = diss["free_median"] - alloc["free_median"]
            meas = {
                # corrected for the pages the guest's /tmp/dm held during each phase's reads
                "alloc_free_delta": raw_alloc + dm[1] - dm[0],
                "dissolve_free_delta": raw_diss + dm[2] - dm[1],
                "alloc_free_delta_raw": raw_alloc,
                "dissolve_free_delta_raw": raw_diss,
                "harness_tmp_dm_pages": "/".join(map(str, dm)),
                "alloc_nr_memmap_pages": alloc["nr_memmap_pages"] - before["nr_memmap_pages"],
                "alloc_nr_memmap_boot_pages": alloc["nr_memmap_boot_pages"]
                - before["nr_memmap_boot_pages"],
                "dissolve_nr_memmap_pages": diss["nr_memmap_pages"] - alloc["nr_memmap_pages"],
                "dissolve_nr_memmap_boot_pages": diss["nr_memmap_boot_pages"]
                - alloc["nr_memmap_boot_pages"],
                "memtotal_kb_alloc_delta": (alloc["hugetlb"] or {}).get("memtotal", 0)
                - (before["hugetlb"] or {}).get("memtotal", 0),
                "memtotal_kb_dissolve_delta": (diss["hugetlb"] or {}).get("memtotal", 0)
                - (alloc["hugetlb"] or {}).get("memtotal", 0),
                "pages": len(heads), "regions_128M": len({h >> 15 for h in heads}),
                "stale_kpf_heads": stale,
                "nr_hugepages_after_alloc": (alloc["hugetlb"] or {}).get(
                    "h2" if size == "2M" else "h1"),
                "page_table_pages_alloc_delta": alloc["nr_page_table_pages"]
                - before["nr_page_table_pages"],
            }
            meas["dissolve_slab_unreclaimable"] = (diss["nr_slab_unreclaimable"]
                                                   - alloc["nr_slab_unreclaimable"])
            parts = _harness_parts(b, size, hvo)
            meas["harness_in_dissolve"] = "+".join(parts)
            if "dissolve_free_delta" in pred:
                resid = meas["dissolve_free_delta"] - pred["dissolve_free_delta"]
                meas["dissolve_residual"] = resid
                band = harness_band(costs, parts, _controls(result, parts))
                if band:
                    meas["harness_band"] = f"{band['lo']}..{band['hi']}"
                    meas["harness_median"] = band["median"]
                    meas["dissolve_residual_less_harness"] = resid - band["median"]
                    meas["residual_in_harness_band"] = band["lo"] <= resid <= band["hi"]
            rows.append({"boot": b["which"], "scenario": st["name"], "variant": variant,
                         "measured": meas, "model": pred,
                         "bad_page": {p: bad_pages(_ph(st, p)["dmesg"]) for p in st["phases"]}})
    if "on" in boots and "off" in boots:
        rows.append(boot_pair_row(boots["on"], boots["off"], variant))
        pairs = [(boots["on"], boots["off"]), *load_boot_pairs(result["kernel"]["version"])]
        for i, (on, off) in enumerate(pairs[1:], 2):
            rows.append(boot_pair_row(on, off, variant, f"on-vs-off #{i}"))
        if len(pairs) > 1:
            rows.append(boot_spread_row(pairs, rows[-len(pairs):], variant))
    return rows


def print_rows(result: dict, rows: list[dict]) -> None:
    """Human table: measured vs model, key by key."""
    print(f"\n== HVO on {result['kernel']['version']} (model variant {rows[0]['variant']})")
    for r in rows:
        print(f"-- {r['scenario']} ({r['boot']} boot)")
        keys = list(r["measured"])
        for k in keys:
            mv = r["model"].get(k, "")
            kv = r["measured"][k]
            diff = "" if mv == "" or not isinstance(mv, (int, float)) else f"{kv - mv:+g}"
            print(f"   {k:<36} measured {kv!s:>10}  model {mv!s:>10}  {diff}")
        for k, v in r["model"].items():
            if k not in r["measured"]:
                print(f"   {k:<36} {'':>19}  model {v!s:>10}")
        for ph, bp in r["bad_page"].items():
            if bp["reports"]:
                print(f"   dmesg {ph}: {bp['reports']} x 'BUG: Bad page state' "
                      f"({'; '.join(bp['reasons'])}), pfns {' '.join(bp['pfns'][:4])} ...")


def print_residuals(result: dict, rows: list[dict]) -> None:
    """The dissolve residuals beside the harness's cost measured in the repeat boot."""
    rep = load_repeat(result["kernel"]["version"])
    costs = harness_costs(rep) if rep else []
    print(f"\n== dissolve residuals on {result['kernel']['version']}: measured - model, and "
          f"what the guest script ran in the same interval")
    if costs:
        print("   repeat cycles (free-page change per part; dissolve and alloc minus the model):")
        for c in costs:
            cc = c["capture_counters"]
            print(f"     {c['cycle']:<9} alloc {c['alloc']:+4} kpf {c['kpf']:+4} capture "
                  f"{c['capture']:+4} (slab_unreclaimable {cc['nr_slab_unreclaimable']:+3}, "
                  f"slab_reclaimable {cc['nr_slab_reclaimable']:+3}, anon "
                  f"{cc['nr_anon_pages']:+3}, file {cc['nr_file_pages']:+3}) dissolve "
                  f"{c['dissolve']:+4} settle {c['settle']:+4}")
    print(f"   {'scenario':<12} {'boot':<5} {'pages':>5} {'residual':>8} {'slab_u':>6} "
          f"{'in interval':<12} {'band':>10} {'median':>6} {'less median':>11}  in band")
    for r in rows:
        me = r["measured"]
        if "dissolve_residual" not in me:
            continue
        less = me.get("dissolve_residual_less_harness")
        print(f"   {r['scenario']:<12} {r['boot']:<5} {me['pages']:>5} "
              f"{me['dissolve_residual']:>+8} {me['dissolve_slab_unreclaimable']:>+6} "
              f"{me['harness_in_dissolve']:<12} "
              f"{me.get('harness_band', '-'):>10} {me.get('harness_median', '-')!s:>6} "
              f"{'-' if less is None else f'{less:+g}':>11}  "
              f"{me.get('residual_in_harness_band', '-')}")


# -- which slab caches keep the pages capture leaves behind (results/hvoslab-*.json) -----------
# The slab boot of hvo.py reads /proc/slabinfo right before and right after each capture and,
# once, every cache's /sys/kernel/slab/<cache>/reclaim_account (SLUB: 1 for caches created
# with SLAB_RECLAIM_ACCOUNT, whose pages nr_slab_reclaimable counts; the others count in
# nr_slab_unreclaimable).  A cache's pages are num_slabs * pagesperslab (SLUB's slabinfo counts
# every slab, per-CPU partial ones included).  The counters are read just outside the two
# slabinfo reads, so the windows differ by one cat of slabinfo and the reads themselves.


def load_slab(version: str) -> dict | None:
    """``results/hvoslab-<version>.json`` if it was measured."""
    f = RESULTS / f"hvoslab-{version}.json"
    return json.loads(f.read_text()) if f.exists() else None


def parse_slabinfo(text: str) -> dict[str, dict[str, int]]:
    """``/proc/slabinfo`` (version 2.1) -> {cache: active_objs, num_objs, objsize, pagesperslab,
    num_slabs, pages}."""
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith(("slabinfo", "#")):
            continue
        f = line.split()
        active, num, objsize, _per_slab, pps = (int(v) for v in f[1:6])
        i = f.index("slabdata")
        slabs = int(f[i + 2])
        out[f[0]] = {"active_objs": active, "num_objs": num, "objsize": objsize,
                     "pagesperslab": pps, "num_slabs": slabs, "pages": slabs * pps}
    return out


def parse_reclaim_account(text: str) -> dict[str, bool]:
    """``name reclaim_account`` lines (``hvo.py``'s listing of /sys/kernel/slab) -> {cache:
    reclaimable}; caches whose file could not be read are left out."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) == 2 and f[1] in ("0", "1"):
            out[f[0]] = f[1] == "1"
    return out


def slab_attribution(result: dict) -> list[dict]:
    """Per ``slab`` cycle: the page change of every cache that changed across ``capture``
    (``caches``: {cache: (pages, reclaimable)}), their sums split by reclaim accounting, and
    the counters' change from the ``before`` to the ``after_capture`` reads."""
    rows = []
    for b in result["boots"]:
        si = b.get("slabinfo") or {}
        reclaim = parse_reclaim_account(si.get("reclaim_account", ""))
        for st in b["steps"]:
            pre, post = si.get(f"{st['name']}-pre"), si.get(f"{st['name']}-post")
            if pre is None or post is None or "after_capture" not in st["phases"]:
                continue
            a, z = parse_slabinfo(pre), parse_slabinfo(post)
            caches = {}
            for name in sorted(set(a) | set(z)):
                d = z.get(name, {"pages": 0})["pages"] - a.get(name, {"pages": 0})["pages"]
                if d:
                    caches[name] = (d, reclaim.get(name))
            before, after = _ph(st, "before"), _ph(st, "after_capture")
            rows.append({
                "cycle": st["name"], "caches": caches,
                "slabinfo_unreclaimable": sum(d for d, r in caches.values() if r is False),
                "slabinfo_reclaimable": sum(d for d, r in caches.values() if r is True),
                "slabinfo_unknown": sum(d for d, r in caches.values() if r is None),
                "counter_unreclaimable": after["nr_slab_unreclaimable"]
                - before["nr_slab_unreclaimable"],
                "counter_reclaimable": after["nr_slab_reclaimable"] - before["nr_slab_reclaimable"],
            })
    return rows


def print_slab(result: dict, rows: list[dict]) -> None:
    """The :func:`slab_attribution` table of one kernel, largest change first per cycle."""
    print(f"kernel {result['kernel']['version']}: slab pages across capture, by cache")
    for r in rows:
        print(f"  {r['cycle']}: unreclaimable slabinfo {r['slabinfo_unreclaimable']:+d} "
              f"(counter {r['counter_unreclaimable']:+d}), reclaimable slabinfo "
              f"{r['slabinfo_reclaimable']:+d} (counter {r['counter_reclaimable']:+d})"
              + (f", unknown {r['slabinfo_unknown']:+d}" if r["slabinfo_unknown"] else ""))
        for name, (d, rec) in sorted(r["caches"].items(), key=lambda kv: -abs(kv[1][0])):
            kind = {True: "reclaimable", False: "unreclaimable", None: "?"}[rec]
            print(f"      {name:<28} {d:+4d}  {kind}")


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", type=Path)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    files = a.files or sorted(RESULTS.glob("hvo-*.json"))
    out = []
    for f in files:
        res = json.loads(f.read_text())
        rows = compare(res)
        slab = load_slab(res["kernel"]["version"])
        slab_rows = slab_attribution(slab) if slab else []
        out.append({"file": f.name, "rows": rows, "slab": slab_rows})
        if not a.json:
            print_rows(res, rows)
            print_residuals(res, rows)
            if slab:
                print_slab(slab, slab_rows)
    if a.json:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
