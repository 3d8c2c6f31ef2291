#!/usr/bin/env python3
"""Which slab caches keep the pages the harness's ``capture`` leaves behind (issue 12 leftover).

The HVO runs found ``nr_slab_unreclaimable`` 6-13 pages higher after every ``capture`` (the
copy of some 95 /proc and /sys files to the console, two processes per file), never given back,
and ``nr_slab_reclaimable`` swinging either way (``compare_hvo.harness_costs``).  The ``slab``
boot of ``hvo.py`` reads ``/proc/slabinfo`` right before and right after each ``capture`` and,
once, every cache's ``/sys/kernel/slab/<cache>/reclaim_account`` (SLUB: 1 for caches created
with ``SLAB_RECLAIM_ACCOUNT``, whose pages ``nr_slab_reclaimable`` counts; the others count in
``nr_slab_unreclaimable``).  A cache's pages are ``num_slabs * pagesperslab`` (SLUB's slabinfo
reports every slab, per-CPU partial ones included, in ``num_slabs``).  Each cycle prints the
caches whose pages changed, and the two sums beside the counters' change over the same
``capture`` (the counters are read just outside the two slabinfo reads, so the windows differ by
one ``cat`` of slabinfo and the reads themselves).

    python3 validation/compare_slab.py [results/hvoslab-….json] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


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


def _phase(step: dict, phase: str) -> dict:
    return step["phases"][phase]


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
            before, after = _phase(st, "before"), _phase(st, "after_capture")
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


def print_rows(result: dict, rows: list[dict]) -> None:
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
    files = a.files or sorted(RESULTS.glob("hvoslab-*.json"))
    out = []
    for f in files:
        res = json.loads(f.read_text())
        rows = slab_attribution(res)
        out.append({"file": f.name, "rows": rows})
        if not a.json:
            print_rows(res, rows)
    if a.json:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
