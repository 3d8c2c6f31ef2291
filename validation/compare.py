#!/usr/bin/env python3
"""Compare the vmemlab planner with what a real kernel spent (see harness.py).

Usage::

    python3 validation/compare.py [validation/results/linux-6.12.json] [--json] [--kernel 6.6]

For each measured configuration this prints the measured drop in free pages
(median of the reads, with the measured noise), what ``vmemlab.plan`` predicts
(``ram_data_pages + ram_pagetable_pages``), their difference, the measured and
predicted ``nr_memmap_pages`` deltas, the pages given back on destroy, and an
``explain`` text naming the known extra costs, each computed from the readings
(slab, vmalloc, percpu... growth) or from the namespace geometry (direct-map
page tables), never typed in.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / "results" / "linux-6.12.json"

PAGE = 4096
GIB = 1 << 30
PMD = 2 << 20
SUBSECTION = 2 << 20

Reading = dict[str, Any]

#: Counters the kernel does account, converted to 4 KiB pages: name -> function of a reading.
ACCOUNTED: dict[str, Callable[[Reading], float]] = {
    "slab": lambda r: r["nr_slab_reclaimable"] + r["nr_slab_unreclaimable"],
    "percpu": lambda r: r["Percpu_kb"] / 4,
    "vmalloc": lambda r: r["VmallocUsed_kb"] / 4,
    "kernel_stack": lambda r: r["nr_kernel_stack"] / 4,
    "user_page_tables": lambda r: r["nr_page_table_pages"],
}

#: Shown but not subtracted: user-space pages of the measuring shell flip by ~20 pages
#: between reads without a matching change in free pages.
INFORMATIONAL: dict[str, Callable[[Reading], float]] = {
    "anon": lambda r: r["nr_anon_pages"],
    "file": lambda r: r["nr_file_pages"],
}

PHASES = ("before", "after_create", "after_destroy")


# --------------------------------------------------------------------------- readings


def load(path: str | Path) -> dict:
    """Load a results file written by harness.py."""
    return json.loads(Path(path).read_text())


def readings(results: dict, config: dict, phase: str) -> list[Reading]:
    """The reads of one phase as dicts keyed by ``results["reading_fields"]``."""
    fields = results["reading_fields"]
    return [dict(zip(fields, row, strict=True)) for row in config["readings"].get(phase, [])]


def free_pages(r: Reading) -> int:
    """Free pages: buddy free pages plus the pages on the per-CPU lists."""
    return r["nr_free_pages"] + r["pcp"]


def unaccounted_used(r: Reading) -> float:
    """Minus (free pages + pages in counters the kernel keeps): grows with unaccounted use."""
    return -(free_pages(r) + sum(f(r) for f in ACCOUNTED.values()))


def median_of(rows: Sequence[Reading], f: Callable[[Reading], float]) -> float:
    """Median of ``f`` over the reads."""
    return statistics.median(f(r) for r in rows)


def median_uncertainty(rows: Sequence[Reading], f: Callable[[Reading], float]) -> float:
    """How far the neighbours of the median lie from it (a robust per-phase spread)."""
    vals = sorted(f(r) for r in rows)
    if len(vals) < 3:
        return float(vals[-1] - vals[0]) if vals else 0.0
    med = statistics.median(vals)
    k = len(vals) // 4
    return float(max(med - vals[k], vals[-1 - k] - med))


def phase_rows(results: dict, config: dict) -> dict[str, list[Reading]]:
    """All three phases of a configuration."""
    return {p: readings(results, config, p) for p in PHASES}


def delta(rows: dict[str, list[Reading]], f: Callable[[Reading], float], a: str, b: str) -> float:
    """median(f) in phase b minus median(f) in phase a."""
    return median_of(rows[b], f) - median_of(rows[a], f)


# --------------------------------------------------------------------------- noise


def control_noise(results: dict) -> float:
    """Largest |change| of unaccounted use across the do-nothing controls (at least 1)."""
    worst = 1.0
    for c in results["configs"]:
        if c["kind"] != "control":
            continue
        rows = phase_rows(results, c)
        for a, b in (("before", "after_create"), ("before", "after_destroy")):
            worst = max(worst, abs(delta(rows, unaccounted_used, a, b)))
    return worst


def read_scatter(results: dict, quantile: float = 0.95) -> float:
    """The ``quantile`` of |read - its phase median| of unaccounted use over all reads."""
    devs = []
    for c in results["configs"]:
        for rows in phase_rows(results, c).values():
            med = median_of(rows, unaccounted_used)
            devs.extend(abs(unaccounted_used(r) - med) for r in rows)
    devs.sort()
    return float(devs[int(quantile * (len(devs) - 1))]) if devs else 0.0


def noise(results: dict) -> float:
    """The stated noise in pages for a before/after difference of medians.

    The larger of the control pairs' worst change and twice the 95th percentile of the
    single-read scatter (each of the two medians may be off by that much).
    """
    return max(control_noise(results), 2 * read_scatter(results))


def config_spread(results: dict, config: dict) -> float:
    """Informational: how far the reads next to the medians lie (before + after create)."""
    rows = phase_rows(results, config)
    return median_uncertainty(rows["before"], unaccounted_used) + median_uncertainty(
        rows["after_create"], unaccounted_used
    )


# --------------------------------------------------------------------------- geometry


def parse_size(text: str) -> int:
    """Parse "4K"/"2M"/"1G" or a plain number of bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = str(text).strip()
    if text and text[-1].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


def geometry(config: dict) -> dict:
    """Namespace geometry from sysfs: raw start/size, data offset, dax size."""
    sysfs = config.get("sysfs", {})
    ns = sysfs.get("namespace", {})
    nd_dax = sysfs.get("nd_dax", {})
    start = int(ns["resource"], 16) if "resource" in ns else None
    size = int(ns["size"]) if "size" in ns else config["size"]
    data = int(nd_dax["resource"], 16) if "resource" in nd_dax else None
    align = parse_size(config["align"])
    end = (start or 0) + size
    map_align = max(align, SUBSECTION)
    end_trunc = end - (end // map_align) * map_align
    return {
        "start": start,
        "size": size,
        "dataoff": None if data is None or start is None else data - start,
        "dax_size": int(nd_dax["size"]) if "size" in nd_dax else None,
        "end_trunc": end_trunc,
        "mapped_start": start,
        "mapped_end": None if start is None else end - end_trunc,
    }


def direct_map_tables(start: int, end: int, gbpages: bool, ram_bytes: int) -> dict:
    """Page-table pages x86 needs to direct-map [start, end) (independent arithmetic).

    A 1 GiB slot fully covered is mapped by one PUD entry when the CPU has 1 GiB
    pages; any other covered 1 GiB slot needs a PMD table (unless boot RAM already
    has one there); a 2 MiB slot only partly covered needs a PTE table.
    """
    pmd_tables = pte_tables = mapped_2m = mapped_4k = 0
    for slot in range(start // GIB, -(-end // GIB)):
        lo, hi = max(start, slot * GIB), min(end, (slot + 1) * GIB)
        if gbpages and lo == slot * GIB and hi == (slot + 1) * GIB:
            continue
        if slot * GIB >= ram_bytes:
            pmd_tables += 1
        lo2, hi2 = -(-lo // PMD) * PMD, (hi // PMD) * PMD
        mapped_2m += max(0, hi2 - lo2)
        mapped_4k += (hi - lo) - max(0, hi2 - lo2)
        pte_tables += len({x // PMD for x in (lo, hi) if x % PMD})
    return {
        "pmd_tables": pmd_tables,
        "pte_tables": pte_tables,
        "pages": pmd_tables + pte_tables,
        "mapped_2m_kb": mapped_2m // 1024,
        "mapped_4k_kb": mapped_4k // 1024,
    }


# --------------------------------------------------------------------------- planner


def planner() -> Callable[..., Any] | None:
    """Return ``vmemlab.plan`` if the package provides it, else None."""
    try:
        import vmemlab
    except ImportError:
        return None
    return getattr(vmemlab, "plan", None)


def predict(geo: dict, config: dict, kernel: str, ram: int | None) -> dict | None:
    """Call the planner for one configuration; None if the planner is not available."""
    plan = planner()
    if plan is None:
        return None
    kwargs = {
        "align": config["align"],
        "map": config["map"],
        "arch": "x86_64",
        "kernel": kernel,
        "start": geo["start"],
    }
    try:
        res = plan(geo["size"], ram=ram, **kwargs)
    except TypeError:
        res = plan(geo["size"], **kwargs)
    out = {
        k: int(getattr(res, k))
        for k in (
            "struct_pages",
            "ram_data_pages",
            "ram_pagetable_pages",
            "device_data_pages",
            "nr_memmap_pages",
        )
    }
    out["optimised"] = bool(getattr(res, "optimised", False))
    return out


# --------------------------------------------------------------------------- comparison


def explain_text(extras: dict[str, float], dm: dict) -> str:
    """Name the known extra costs that are non-zero."""
    parts = [f"{k} {v:+g}" for k, v in extras.items() if v]
    if dm["pages"]:
        parts.append(
            f"direct-map page tables +{dm['pages']} ({dm['pmd_tables']} PMD, "
            f"{dm['pte_tables']} PTE; {dm['mapped_2m_kb'] // 1024} MiB not on 1 GiB pages)"
        )
    return ", ".join(parts) or "none"


def compare_config(results: dict, config: dict, noise_pages: float, kernel: str) -> dict:
    """One comparison row."""
    rows = phase_rows(results, config)
    geo = geometry(config) if config["kind"] == "namespace" else {}
    free_drop = -delta(rows, free_pages, "before", "after_create")
    returned = delta(rows, free_pages, "after_create", "after_destroy")
    unaccounted = delta(rows, unaccounted_used, "before", "after_create")
    leak = delta(rows, unaccounted_used, "before", "after_destroy")
    extras = {k: delta(rows, f, "before", "after_create") for k, f in ACCOUNTED.items()}
    info = {k: delta(rows, f, "before", "after_create") for k, f in INFORMATIONAL.items()}
    memmap = delta(rows, lambda r: r["nr_memmap_pages"], "before", "after_create")
    guest = results.get("guest", {})
    gbpages = str(guest.get("pdpe1gb", "0")) not in ("0", "")
    ram = results.get("machine", {}).get("ram_mib", 0) << 20
    dm = {"pages": 0, "pmd_tables": 0, "pte_tables": 0, "mapped_2m_kb": 0, "mapped_4k_kb": 0}
    if geo.get("start") is not None:
        dm = direct_map_tables(geo["mapped_start"], geo["mapped_end"], gbpages, ram)
    dm_measured = {
        k: delta(rows, lambda r, k=k: r.get(k) or 0, "before", "after_create")
        for k in ("DirectMap2M_kb", "DirectMap4k_kb", "DirectMap1G_kb")
    }
    pred = predict(geo, config, kernel, ram or None) if geo.get("start") is not None else None
    row: dict[str, Any] = {
        "config": config["name"],
        "kind": config["kind"],
        "warmup": config.get("warmup", False),
        "align": config.get("align"),
        "map": config.get("map"),
        "geometry": geo,
        "noise": noise_pages,
        "spread": config_spread(results, config),
        "free_drop": free_drop,
        "unaccounted_drop": unaccounted,
        "extras": extras,
        "user_space": info,
        "direct_map": {
            **dm,
            "measured": dm_measured,
            "consistent": dm_measured["DirectMap2M_kb"] == dm["mapped_2m_kb"]
            and dm_measured["DirectMap4k_kb"] == dm["mapped_4k_kb"],
        },
        # what the kernel's own counters plus the direct-map tables explain, as one median
        # over per-read sums (medians do not add, so this is not exactly sum(extras)):
        "explained_extra": free_drop - (unaccounted - dm["pages"]),
        "explain": explain_text(extras, dm),
        "measured_vmemmap": unaccounted - dm["pages"],
        "returned": returned,
        "leak": leak,
        "nr_memmap_delta": memmap,
        "predicted": None,
        "difference": None,
        "residual": None,
        "predicted_nr_memmap_delta": None,
        "agrees": None,
        "memmap_agrees": None,
        "planner": pred,
    }
    if pred is not None:
        predicted = pred["ram_data_pages"] + pred["ram_pagetable_pages"]
        row.update(
            predicted=predicted,
            difference=free_drop - predicted,
            residual=row["measured_vmemmap"] - predicted,
            predicted_nr_memmap_delta=pred["nr_memmap_pages"],
        )
        row["memmap_agrees"] = memmap == pred["nr_memmap_pages"]
        row["agrees"] = abs(row["difference"]) <= row["noise"] or abs(row["residual"]) <= row["noise"]
    return row


def kernel_variant(results: dict) -> str:
    """The vmemlab kernel variant that matches the measured kernel: ``6.12.117`` when the guest
    has ``section_nr_vmemmap_pages`` (the 2026 nr_memmap_pages fix, backported to 6.12.107+),
    otherwise ``6.12`` (6.12 before that fix: the full memmap counted); ``6.1`` for a Debian
    bookworm 6.1 guest.  Where the engine lacks ``6.12``/``6.1`` (before issue 12's variants
    land) the nearest older rules stand in: ``6.6`` and ``5.19``."""
    from vmemlab.kernels import KERNELS

    release = str(results.get("kernel", {}).get("version") or "")
    if release.startswith("6.1.") or release.startswith("6.1-"):
        return "6.1" if "6.1" in KERNELS else "5.19"
    if "section_nr_vmemmap_pages" in results.get("guest", {}).get("kallsyms", ""):
        return "6.12.117"
    return "6.12" if "6.12" in KERNELS else "6.6"


def compare(results: dict, kernel: str | None = None) -> list[dict]:
    """Rows of predicted vs measured for every configuration in ``results`` (kernel variant
    from :func:`kernel_variant` unless given)."""
    kernel = kernel or kernel_variant(results)
    noise_pages = noise(results)
    return [compare_config(results, c, noise_pages, kernel) for c in results["configs"]]


# --------------------------------------------------------------------------- output


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def table(rows: Sequence[dict]) -> str:
    """Plain-text table of the comparison rows."""
    cols = [
        ("config", "config"),
        ("free_drop", "drop"),
        ("measured_vmemmap", "vmemmap"),
        ("predicted", "pred"),
        ("difference", "diff"),
        ("residual", "resid"),
        ("nr_memmap_delta", "memmap"),
        ("predicted_nr_memmap_delta", "pred_mm"),
        ("memmap_agrees", "mm_ok"),
        ("returned", "back"),
        ("leak", "leak"),
        ("agrees", "ok"),
        ("explain", "explain"),
    ]
    data = [[_fmt(r.get(k)) for k, _ in cols] for r in rows]
    widths = [max(len(h), *(len(d[i]) for d in data)) for i, (_, h) in enumerate(cols)]
    widths[-1] = 0
    lines = [" ".join(h.ljust(w) for (_, h), w in zip(cols, widths, strict=True)).rstrip()]
    lines += [" ".join(v.ljust(w) for v, w in zip(d, widths, strict=True)).rstrip() for d in data]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the comparison for a results file."""
    p = argparse.ArgumentParser(description="compare vmemlab.plan with kernel measurements")
    p.add_argument("results", nargs="?", type=Path, default=DEFAULT_RESULTS)
    p.add_argument("--json", action="store_true", help="print rows as JSON")
    p.add_argument("--kernel", default=None,
                   help="vmemlab kernel variant (default: chosen from the guest's symbols)")
    args = p.parse_args(argv)
    results = load(args.results)
    rows = compare(results, args.kernel)
    variant = args.kernel or kernel_variant(results)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    k = results["kernel"]
    print(f"kernel {k.get('uname_r')} ({k.get('package')}); qemu {results['host']['qemu_version']}")
    print(
        f"pdpe1gb in guest: {results['guest'].get('pdpe1gb')}; noise {noise(results):g} pages "
        f"(control pairs {control_noise(results):g}, 2 x read scatter p95 {read_scatter(results):g}); "
        "planner: "
        f"{'vmemlab.plan, kernel ' + variant if planner() else 'NOT AVAILABLE (vmemlab.plan missing)'}"
    )
    print(
        "drop = free pages lost on create (median); vmemmap = drop minus accounted kernel "
        "counters minus direct-map tables"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
