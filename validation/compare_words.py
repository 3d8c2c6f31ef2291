#!/usr/bin/env python3
"""Page-for-page and word-for-word: the dumped kernel's vmemmap beside the vmemlab model.

For every namespace in ``results/pagewalk-*.json`` (written by ``dumpwalk.py extract`` from a
real guest's memory dump) the model is built for the same raw start, raw size, align, map and
kernel variant (``vmemlab.plan``), its ``init_mm`` vmemmap tables are walked the same way, and

* the page-table statistics (PMD leaves / PTEs / PTE tables / distinct frames / frames on the
  device, the per-compound-page frame signature, tables shared between PMD entries, frames
  spanning sections) must be identical;
* the eight 64-bit words of every sampled struct page must be identical, except words whose
  kernel value is the address of a kernel allocation.  Exactly one kind is skipped: word 1 of
  a ``ZONE_DEVICE`` head or base page is ``page->pgmap``, the address of the namespace's
  kmalloc'ed ``struct dev_pagemap``.  It is not compared with the model's stand-in token;
  instead it is checked to *equal* the ``dev_pagemap`` the walk found in ``pgmap_array``.
  ``compound_head`` (``vmemmap_base + head * 64 + 1``) is compared: ``vmemmap_base`` is
  fixed with ``nokaslr`` (the dump records it) and the model uses the same constant.

    python3 validation/compare_words.py [results/pagewalk-….json …] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from extract_walk import compound_stats  # noqa: E402

RESULTS = HERE / "results"
PAGE = 4096
SP = 64
SECTION_PAGES = 1 << 15


def kernel_variant(result: dict) -> tuple[str, str]:
    """(vmemlab variant, why) for the dumped kernel."""
    from vmemlab.kernels import KERNELS

    rel = result["kernel"]["version"]
    if rel.startswith("6.12"):
        return "6.12.117", "Debian 6.12.117 (section_nr_vmemmap_pages present)"
    if rel.startswith("6.1."):
        if "6.1" in KERNELS:
            return "6.1", "Debian bookworm 6.1"
        return "5.19", "no 6.1 variant yet: 5.19 rules (nr>1 can-optimize, pincount in page1)"
    return "6.6", "default"


def model_walk(m, spfn: int, epfn: int) -> dict:
    """The model's init_mm walk over the vmemmap of pfns [spfn, epfn), in the same shape as
    ``extract_walk.walk_range`` (frame ids instead of physical pfns; device frames as pfns)."""
    from vmemlab.frames import DEVICE

    pt = m.pgtables
    lo = (spfn * SP) // PAGE
    hi = -(-(epfn * SP) // PAGE)
    vpns = np.arange(lo, hi, dtype=np.int64)
    frame, sub = pt.resolve(vpns)
    kind = np.zeros(vpns.size, np.int8)
    ptab = np.full(vpns.size, -1, np.int64)
    ks = vpns >> pt.pte_bits
    for k in np.unique(ks).tolist():
        sel = ks == k
        e = pt.pmd_entry(k)
        if e is None:
            continue
        if e[0] == "leaf":
            kind[sel] = 2
        else:
            kind[sel] = np.where(frame[sel] >= 0, 1, 0)
            ptab[sel] = np.where(frame[sel] >= 0, e[1], -1)
    ok = frame >= 0
    # a frame's identity: (frame id, page inside a PMD block)
    ident = np.where(ok, frame * 512 + sub, -1)
    home = np.zeros(vpns.size, np.int8)
    pfn = np.full(vpns.size, -1, np.int64)
    home[ok] = m.frames.home[frame[ok]]
    pfn[ok] = m.frames.pfn[frame[ok]] + sub[ok]
    return {"kind": kind, "frame": ident, "ptab": ptab, "pmd": ks, "home": home,
            "devpfn": np.where(home == DEVICE, pfn, -1)}


def model_stats(wk: dict, spfn: int, epfn: int) -> dict:
    """The subset of the kernel's ``stats`` that the model can state (same definitions)."""
    import collections

    mapped = wk["kind"] > 0
    uf = np.unique(wk["frame"][mapped])
    dev = np.unique(wk["devpfn"][wk["devpfn"] >= 0])
    tabs = wk["ptab"][wk["ptab"] >= 0]
    tab_pmds = collections.defaultdict(set)
    for t, p in zip(tabs.tolist(), wk["pmd"][wk["ptab"] >= 0].tolist()):
        tab_pmds[t].add(p)
    return {
        "vmemmap_pages": int(wk["kind"].size),
        "unmapped": int((wk["kind"] == 0).sum()),
        "pte_mapped": int((wk["kind"] == 1).sum()),
        "pmd_leaf_mapped": int((wk["kind"] == 2).sum()),
        "pmd_leaf_entries": len(set(wk["pmd"][wk["kind"] == 2].tolist())),
        "pte_tables": len(tab_pmds),
        "pte_tables_shared_by_pmd_entries": sum(1 for s in tab_pmds.values() if len(s) > 1),
        "distinct_frames": int(uf.size),
        "frames_on_device": int(dev.size),
        "frames_in_ram": int(uf.size - dev.size),
        "device_frame_offsets": [int(dev.min() - spfn), int(dev.max() - spfn)] if dev.size
        else None,
        "device_frames_contiguous": bool(dev.max() - dev.min() + 1 == dev.size) if dev.size
        else None,
    }


def _pointer_skip(role: str, word: int, kval: int, pgmap: int, shift: int) -> str | None:
    """Why word ``word`` of a sample is not compared with the model, or None."""
    if word == 1 and not kval & 1 and kval == pgmap:
        return "page->pgmap: address of the kmalloc'ed struct dev_pagemap (equals pgmap_array's)"
    return None


def compare_namespace(ns: dict, result: dict, variant: str) -> dict:
    """Model one namespace and compare stats and words."""
    from vmemlab.page import read_field
    from vmemlab.plan import plan

    cfg = next(c for c in result["configs"] if c["name"] == ns["name"])
    sysfs = cfg["sysfs"]["namespace"]
    start = int(sysfs["resource"], 0)
    size = int(sysfs["size"])
    p = plan(size, cfg["align"], cfg["map"], kernel=variant, start=start, strict=False)
    m = p._machine  # type: ignore[attr-defined]
    spfn, epfn = ns["pfn_range"]
    wk = model_walk(m, spfn, epfn)
    mst = model_stats(wk, spfn, epfn)
    rows = []
    for key, mv in mst.items():
        kv = ns["stats"].get(key)
        rows.append({"stat": key, "kernel": kv, "model": mv, "same": kv == mv})
    if ns["compound"]:
        shift = ns["vmemmap_shift"]
        nr = 1 << shift
        nvm = nr * SP // PAGE
        lo = (spfn * SP) // PAGE
        first = ns["pfn_first"]
        heads = list(range(first, epfn - nr + 1, nr))
        idx = [(h * SP) // PAGE - lo for h in heads]
        mc = compound_stats(wk, idx, nvm, (SECTION_PAGES * SP) // PAGE)
        for key in ("compound_pages", "signatures", "pte_tables_per_compound",
                    "pmd_entries_per_compound", "frames_spanning_sections_per_compound",
                    "ptes_reusing_another_compound_pages_frame"):
            kv, mv = ns["compound"][key], mc[key]
            rows.append({"stat": "compound." + key, "kernel": kv, "model": mv, "same": kv == mv})
    pgmap = int(ns["pgmap"], 16)
    kbase = int(result["kernel_facts"]["vmemmap_base"], 16)
    mbase = m.arch.vmemmap_start
    words = {"compared": 0, "identical": 0, "skipped": 0, "skip_reasons": {}, "mismatches": [],
             "rebased": 0}
    for s in ns["samples"]:
        kw = [int(x, 16) for x in s["words"]]
        try:
            mw = [int(x) for x in read_field(m, s["pfn"], "words")[0]]
        except Exception as exc:  # noqa: BLE001 - the model refuses: count as mismatch
            words["mismatches"].append({"role": s["role"], "pfn": s["pfn"],
                                        "model_error": repr(exc)})
            continue
        for i in range(8):
            why = _pointer_skip(s["role"], i, kw[i], pgmap, ns["vmemmap_shift"])
            if why:
                words["skipped"] += 1
                words["skip_reasons"][why] = words["skip_reasons"].get(why, 0) + 1
                continue
            words["compared"] += 1
            if kw[i] == mw[i]:
                words["identical"] += 1
            elif (kbase != mbase and 0 <= kw[i] - kbase < 1 << 44
                  and kw[i] - kbase == mw[i] - mbase):
                # a vmemmap address (compound_head, lru self-pointer): identical once the
                # dump's vmemmap_base (5-level paging: 0xffd4000000000000) replaces the
                # model's 4-level VMEMMAP_START; counted, and shown in the table
                words["identical"] += 1
                words["rebased"] += 1
            else:
                words["mismatches"].append({"role": s["role"], "pfn": s["pfn"], "word": i,
                                            "kernel": f"{kw[i]:#018x}", "model": f"{mw[i]:#018x}"})
    return {"name": ns["name"], "start": start, "size": size, "align": cfg["align"],
            "map": cfg["map"], "variant": variant, "rows": rows, "words": words}


def compare_file(path: Path) -> dict:
    """Compare every namespace of one pagewalk result."""
    result = json.loads(path.read_text())
    variant, why = kernel_variant(result)
    out = [compare_namespace(ns, result, variant) for ns in result["namespaces"] if ns["name"]]
    return {"file": path.name, "kernel": result["kernel"]["version"], "variant": variant,
            "variant_why": why, "vmemmap_base": result["kernel_facts"]["vmemmap_base"],
            "l5": result["kernel_facts"]["pgtable_l5_enabled"], "namespaces": out}


def _short(v) -> str:
    if isinstance(v, list) and v and isinstance(v[0], dict):
        return ";".join(" ".join(f"{a}x{b}" for a, b in d["frames"]) + f"[{d['compound_pages']}]"
                        for d in v)
    return json.dumps(v, separators=(",", ":")) if not isinstance(v, (int, str)) else str(v)


def print_table(res: dict) -> None:
    """The human table."""
    print(f"\n== {res['file']}: kernel {res['kernel']} vs model variant {res['variant']} "
          f"({res['variant_why']})")
    print(f"{'namespace':<12} {'stats same':>10} {'words cmp':>9} {'same':>6} {'rebased':>7} "
          f"{'skipped':>7} {'diff':>5}")
    for ns in res["namespaces"]:
        same = sum(r["same"] for r in ns["rows"])
        w = ns["words"]
        print(f"{ns['name']:<12} {same:>4}/{len(ns['rows']):<5} {w['compared']:>9} "
              f"{w['identical']:>6} {w['rebased']:>7} {w['skipped']:>7} "
              f"{len(w['mismatches']):>5}")
    for ns in res["namespaces"]:
        bad = [r for r in ns["rows"] if not r["same"]]
        for r in bad:
            print(f"  {ns['name']}: {r['stat']}: kernel {_short(r['kernel'])} "
                  f"model {_short(r['model'])}")
        seen: dict = {}
        for mm in ns["words"]["mismatches"]:
            key = (mm.get("word"), int(mm.get("kernel", "0"), 16) ^ int(mm.get("model", "0"), 16))
            seen.setdefault(key, []).append(mm)
        for group in seen.values():
            mm = group[0]
            roles = ",".join(sorted({g["role"] for g in group}))
            print(f"  {ns['name']}: word {mm.get('word')} kernel {mm.get('kernel')} model "
                  f"{mm.get('model')} {mm.get('model_error', '')}x{len(group)} ({roles[:70]})")
    if any(ns["words"]["rebased"] for ns in res["namespaces"]):
        print("  rebased: vmemmap addresses equal after replacing the model's VMEMMAP_START "
              f"with the dump's vmemmap_base {res['vmemmap_base']} (guest used "
              f"{'5' if res['l5'] else '4'}-level paging)")
    reasons = {}
    for ns in res["namespaces"]:
        for k, v in ns["words"]["skip_reasons"].items():
            reasons[k] = reasons.get(k, 0) + v
    for k, v in reasons.items():
        print(f"  skipped {v} words: {k}")


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", type=Path)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    files = a.files or sorted(RESULTS.glob("pagewalk-*.json"))
    out = [compare_file(f) for f in files]
    if a.json:
        print(json.dumps(out, indent=1))
    else:
        for r in out:
            print_table(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def decode_runs(runs: list) -> np.ndarray:
    """Inverse of ``extract_walk.map_excerpt``'s run-length lists."""
    out = []
    for v, n, step in runs:
        out.extend(v + step * i for i in range(n))
    return np.array(out, dtype=np.int64)


def excerpts(path: Path, name: str) -> dict[str, dict[str, np.ndarray]]:
    """Kernel and model vmemmap excerpts of namespace ``name`` (the window the dump stored):
    per vmemmap page the mapping kind (1 PTE, 2 PMD leaf), the frame and the PTE table, both
    renumbered in order of first appearance, so equal arrays mean the same sharing pattern."""
    from extract_walk import map_excerpt

    from vmemlab.plan import plan

    result = json.loads(Path(path).read_text())
    ns = next(n for n in result["namespaces"] if n["name"] == name)
    cfg = next(c for c in result["configs"] if c["name"] == name)
    variant, _ = kernel_variant(result)
    sysfs = cfg["sysfs"]["namespace"]
    p = plan(int(sysfs["size"]), cfg["align"], cfg["map"], kernel=variant,
             start=int(sysfs["resource"], 0), strict=False)
    spfn, epfn = ns["pfn_range"]
    wk = model_walk(p._machine, spfn, epfn)  # type: ignore[attr-defined]
    ex = ns["map_excerpt"]
    mex = map_excerpt(wk, ex["start_index"], ex["n"])
    return {who: {k: decode_runs(e[k]) for k in ("kind", "frame", "pte_table")}
            for who, e in (("kernel", ex), ("model", mex))}
