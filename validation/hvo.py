#!/usr/bin/env python3
"""HugeTLB Vmemmap Optimization (HVO) measured on the packaged Debian kernel.

Two boots per kernel, same machine and initramfs tools as ``harness.py`` (3 GiB RAM):

* ``off`` boot: kernel command line + ``hugepagesz=2M hugepages=64 hugepagesz=1G hugepages=1
  hugetlb_free_vmemmap=off``.  Steps: ``boot-off`` (the boot-time pages as they are),
  ``boot-off-dissolve`` (``echo 0`` to both ``nr_hugepages``), then runtime pages with
  ``/proc/sys/vm/hugetlb_optimize_vmemmap`` 0 and 1: ``rt-2M-hvo0`` (64 pages),
  ``rt-2M-hvo0-dissolve``, ``rt-2M-hvo1``, …, ``rt-1G-hvo1-dissolve`` (1 page).
* ``on`` boot: the same boot-time pages with ``hugetlb_free_vmemmap=on``; ``boot-on``,
  ``boot-on-dissolve``.

The runtime steps run in the ``off`` boot, so no earlier HVO has split vmemmap PMDs.  After
every step: free pages the harness's way (``nr_free_pages`` + per-CPU lists after
``drop_caches``/``stat_refresh``, median of ``--reads`` reads), ``nr_memmap_pages``,
``nr_memmap_boot_pages``, MemTotal, HugeTLB counters, ``dmesg -c`` (new kernel messages), and
while huge pages exist the head pfns from ``/proc/kpageflags`` (KPF_HUGE + KPF_COMPOUND_HEAD),
which give the 128 MiB vmemmap regions (one PTE table each once split) they sit in.

* ``off-boot`` boot: the ``off`` boot's boot-time steps alone (``boot-off``, its dissolve);
  with ``on`` it gives more boot pairs (``--boots off-boot on --no-captured --out
  results/hvoboot-<version>.json``), for the boot-to-boot noise of the on-vs-off difference
  (``compare_hvo.boot_spread_row``).
* ``repeat`` boot (``--boots repeat --reps "n0 a0 a0 a0 n0"``, no boot-time pages): identical
  2 MiB cycles, read also after the kpageflags scan (``after_kpf``), after ``capture``
  (``after_capture``) and twice after the dissolve (``dissolved``, ``settled``), so the
  harness's own cost inside a dissolve's interval is measured part by part
  (``compare_hvo.harness_costs``); written with ``--out results/hvorepeat-<version>.json``.
* ``slab`` boot (``--boots slab --reps "s s s s"``, no boot-time pages, nothing allocated):
  ``/proc/slabinfo`` right before and right after each ``capture``, besides the reads before
  and after it, so the slab pages ``capture`` leaves behind are attributed to their caches
  (``compare_hvo.slab_attribution``); ``--out results/hvoslab-<version>.json``.

Boot parameters: Debian's defaults (the package's config has ``INIT_ON_ALLOC_DEFAULT_ON=y``,
``HUGETLB_PAGE_OPTIMIZE_VMEMMAP_DEFAULT_ON`` unset) plus the harness's ``console=ttyS0
rdinit=/init nokaslr quiet loglevel=3 panic=-1``; nothing is added for speed.

    python3 validation/hvo.py run --kernel-package linux-image-6.12.117+deb12-amd64
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dumpwalk  # noqa: E402
import harness  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BOOT_PAGES = "hugepagesz=2M hugepages=64 hugepagesz=1G hugepages=1"

HVO_FUNCS = r"""
H2=/sys/kernel/mm/hugepages/hugepages-2048kB
H1=/sys/kernel/mm/hugepages/hugepages-1048576kB
hpstate() { # config phase
  hs="h2=$(cat $H2/nr_hugepages) f2=$(cat $H2/free_hugepages)"
  hs="$hs h1=$(cat $H1/nr_hugepages) f1=$(cat $H1/free_hugepages)"
  hs="$hs hvo=$(cat /proc/sys/vm/hugetlb_optimize_vmemmap)"
  hs="$hs memtotal=$(awk '/^MemTotal/ {print $2}' /proc/meminfo)"
  hs="$hs hugetlb_kb=$(awk '/^Hugetlb:/ {print $2}' /proc/meminfo)"
  rec hp "$1" "$2" "$hs"
}
kpf() { # config phase: pfns with KPF_COMPOUND_HEAD (bit 15) and KPF_HUGE (bit 17)
  od -An -v -tx8 -w8 /proc/kpageflags | awk '
    { d15 = index("0123456789abcdef", substr($1, 13, 1)) - 1
      d17 = index("0123456789abcdef", substr($1, 12, 1)) - 1
      if (d15 >= 8 && int(d17 / 2) % 2 == 1) print NR - 1 }' > /tmp/kpf
  blob "$1" "kpf_$2" /tmp/kpf
}
step() { # config phase [kpf]
  readings "$1" "$2"
  hpstate "$1" "$2"
  dmesg -c > /tmp/dm 2>/dev/null
  blob "$1" "dmesg_$2" /tmp/dm
  [ "$3" = kpf ] && kpf "$1" "$2"
  return 0
}
timed() { # config what command...  (HPD/HPN/c must survive capture/readings: no clobbers)
  tc="$1"; tw="$2"; shift 2
  t0=$(now); "$@"; rec time "$tc" "$tw" "$t0" "$(now)"
}
setnr() { echo "$2" > "$1/nr_hugepages"; }
"""

OFF_BOOT = r"""
dmesg -c > /tmp/dm 2>/dev/null; blob boot dmesg_boot /tmp/dm
rec config boot-off hugetlb 0 boot off 0 0
step boot-off boot kpf
capture hugetlb-boot-hvo-off
timed boot-off dissolve_s sh -c "echo 0 > $H2/nr_hugepages; echo 0 > $H1/nr_hugepages"
step boot-off dissolved
for sz in 2M 1G; do
  for hvo in 0 1; do
    c=rt-$sz-hvo$hvo
    rec config $c hugetlb 0 $sz $hvo 0 0
    echo $hvo > /proc/sys/vm/hugetlb_optimize_vmemmap
    step $c before
    if [ $sz = 2M ]; then HPD=$H2; HPN=64; else HPD=$H1; HPN=1; fi
    timed $c alloc_s setnr $HPD $HPN
    step $c allocated kpf
    [ $sz = 2M ] && capture hugetlb-2M-hvo$hvo
    [ $sz = 1G ] && capture hugetlb-1G-hvo$hvo
    timed $c dissolve_s setnr $HPD 0
    step $c dissolved
  done
done
"""

ON_BOOT = r"""
dmesg -c > /tmp/dm 2>/dev/null; blob boot dmesg_boot /tmp/dm
rec config boot-on hugetlb 0 boot on 0 0
step boot-on boot kpf
capture hugetlb-boot-hvo-on
timed boot-on dissolve_s sh -c "echo 0 > $H2/nr_hugepages; echo 0 > $H1/nr_hugepages"
step boot-on dissolved
"""

#: ``off-boot``: the ``off`` boot's boot-time steps alone (the same steps as ``on``, with
#: ``hugetlb_free_vmemmap=off``), for more on-vs-off boot pairs without the runtime scenarios
OFF_BOOT_ONLY = ON_BOOT.replace("boot-on", "boot-off").replace("hvo-on", "hvo-off").replace(
    "boot on 0 0", "boot off 0 0")


RT1G_BOOT = r"""
dmesg -c > /tmp/dm 2>/dev/null; blob boot dmesg_boot /tmp/dm
for hvo in 0 1; do
  c=rt-1G-hvo$hvo
  rec config $c hugetlb 0 1G $hvo 0 0
  echo $hvo > /proc/sys/vm/hugetlb_optimize_vmemmap
  step $c before
  HPD=$H1
  timed $c alloc_s setnr $HPD 1
  step $c allocated kpf
  timed $c dissolve_s setnr $HPD 0
  step $c dissolved
done
"""


#: ``repeat`` boot (issue 12 §2, the 2 MiB dissolve residual): no boot-time pages; each
#: ``__REPS__`` item is ``a<hvo>`` (64 x 2M allocated and dissolved with the sysctl at <hvo>) or
#: ``n<hvo>`` (the same steps with nothing allocated: the harness alone).  Besides the ``off``
#: boot's phases it reads ``after_kpf`` (after the /proc/kpageflags scan), ``after_capture``
#: (after ``capture``) and ``settled`` (a second read right after ``dissolved``), so each part
#: of the allocated -> dissolved interval gets its own delta, and identical cycles repeat.
REPEAT_BOOT = r"""
dmesg -c > /tmp/dm 2>/dev/null; blob boot dmesg_boot /tmp/dm
i=0
for spec in __REPS__; do
  i=$((i + 1)); kind=${spec%?}; hvo=${spec#?}
  c=rep$i-$spec
  rec config $c hugetlb 0 2M $hvo 0 0
  echo $hvo > /proc/sys/vm/hugetlb_optimize_vmemmap
  step $c before
  HPN=64; [ $kind = n ] && HPN=0
  timed $c alloc_s setnr $H2 $HPN
  step $c allocated kpf
  step $c after_kpf
  capture hugetlb-rep$i
  step $c after_capture
  timed $c dissolve_s setnr $H2 0
  step $c dissolved
  step $c settled
done
"""


#: ``slab`` boot (issue 12 leftover: which caches hold the slab pages ``capture`` keeps): per
#: ``__REPS__`` item one cycle of reads before, ``/proc/slabinfo``, ``capture``,
#: ``/proc/slabinfo`` again and reads after, with nothing allocated; first each cache's
#: ``/sys/kernel/slab/*/reclaim_account`` (which of ``nr_slab_reclaimable`` and
#: ``nr_slab_unreclaimable`` its pages count in)
SLAB_BOOT = r"""
dmesg -c > /tmp/dm 2>/dev/null; blob boot dmesg_boot /tmp/dm
for d in /sys/kernel/slab/*; do
  echo "$(basename "$d") $(cat "$d/reclaim_account" 2>/dev/null)"
done > /tmp/ra
fileblob slab-reclaim /tmp/ra
i=0
for spec in __REPS__; do
  i=$((i + 1)); c=slab$i
  rec config $c hugetlb 0 2M 0 0 0
  step $c before
  fileblob slab$i-pre /proc/slabinfo
  capture hugetlb-slab$i
  fileblob slab$i-post /proc/slabinfo
  step $c after_capture
done
"""


def guest_script(body: str, nreads: int) -> str:
    """harness prelude (functions, modules, labels) + capture helpers + body + epilogue."""
    prelude = harness.guest_script([], nreads).split(harness.MARK_END)[0]
    prelude = prelude[: prelude.rfind("\nattrs end region")]
    helpers = dumpwalk.GUEST_STEPS.split("ranges=\"\"")[0]
    epilogue = harness.GUEST_EPILOGUE.replace("__END__", harness.MARK_END)
    return prelude + helpers + HVO_FUNCS + body + epilogue


def parse_hvo(console: str) -> dict:
    """hp records and blobs per config, with the harness's parser for the rest."""
    parsed = harness.parse_console(console)
    text = console.split(harness.MARK_BEGIN, 1)[1].split(harness.MARK_END, 1)[0]
    hp: dict = {}
    for line in text.replace("\r", "").splitlines():
        parts = line.split("\t")
        if len(parts) >= 5 and parts[0] == "VML" and parts[1] == "hp":
            hp.setdefault(parts[2], {})[parts[3]] = harness._parse_kv(parts[4])
    for c in parsed["configs"]:
        c["hugetlb"] = hp.get(c["name"], {})
    return parsed


def summarize(parsed: dict) -> list[dict]:
    """Per config and phase: median free pages, counters, kpageflags regions."""
    out = []
    for c in parsed["configs"]:
        phases = {}
        for phase, rows in c["readings"].items():
            free = [r["nr_free_pages"] + r["pcp"] for r in rows]
            # every recorded field (the first runs kept only these six; the ``repeat`` boot
            # needs slab reclaimable, anon/file/shmem and kernel stacks too)
            keys = ("nr_memmap_pages", "nr_memmap_boot_pages", "nr_slab_unreclaimable",
                    "nr_page_table_pages", "Percpu_kb", "VmallocUsed_kb",
                    *sorted({k for r in rows for k in r} - {"i", "nr_memmap_pages",
                            "nr_memmap_boot_pages", "nr_slab_unreclaimable",
                            "nr_page_table_pages", "Percpu_kb", "VmallocUsed_kb"}))
            med = {k: statistics.median(r.get(k, 0) for r in rows) for k in keys}
            all_reads = {k: [r.get(k, 0) for r in rows] for k in keys if k in rows[0]}
            heads = []
            kp = c.get(f"kpf_{phase}")
            if isinstance(kp, str):
                heads = [int(x) for x in kp.split()]
            elif isinstance(kp, int):
                heads = [kp]
            phases[phase] = {
                "free_median": statistics.median(free),
                "free_reads": free,
                "reads": all_reads,
                **{k: v for k, v in med.items()},
                "hugetlb": c["hugetlb"].get(phase),
                "kpf_heads": heads,
                "kpf_regions_128M": sorted({h >> 15 for h in heads}),
                "dmesg": c.get(f"dmesg_{phase}", ""),
            }
        out.append({"name": c["name"], "size": c["align"], "hvo": c["map"],
                    "timing": c["timing"], "errors": c["errors"], "phases": phases})
    return out


def boot_one(args: argparse.Namespace, which: str) -> dict:
    """One boot (``off`` or ``on``); returns the parsed result."""
    qemu = harness.ensure_qemu(install=False)
    kernel, root, kver, kpkg = harness.prepare(args)
    work = args.cache / f"hvo-{kver}"
    work.mkdir(parents=True, exist_ok=True)
    machine = harness.Machine(ram_mib=args.ram_mib, nvdimm_gib=1, cpu=args.cpu)
    body = {"off": OFF_BOOT, "on": ON_BOOT, "off-boot": OFF_BOOT_ONLY, "rt1g": RT1G_BOOT,
            "repeat": REPEAT_BOOT.replace("__REPS__", args.reps),
            "slab": SLAB_BOOT.replace("__REPS__", args.reps)}[which]
    initrd = work / f"initramfs-{which}.cpio"
    initrd.write_bytes(harness.build_initramfs(root, kver, guest_script(body, args.reads)))
    backing = work / "nvdimm.img"
    harness.make_backing(backing, machine)
    cmd = harness.qemu_command(qemu, kernel, initrd, backing, machine)
    # rt1g: a fresh boot with no boot-time pages, 1 GiB runtime pages first (for kernels
    # whose runtime 1 GiB allocation fails after the other scenarios)
    hvo = {"off-boot": "off"}.get(which, which)
    extra = ("" if which in ("rt1g", "repeat", "slab")
             else f"{BOOT_PAGES} hugetlb_free_vmemmap={hvo}")
    if extra:
        cmd[cmd.index("-append") + 1] += " " + extra
    log = work / f"console-{which}.log"
    print(f"hvo: booting {kver} ({which})", file=sys.stderr)
    try:
        console, seconds = harness.boot(cmd, log, args.timeout)
    finally:
        backing.unlink(missing_ok=True)
    parsed = parse_hvo(console)
    files = dumpwalk.parse_files(console)
    # the repeat boot's captures only reproduce the off boot's steps; they are not kept
    keep = which not in ("repeat", "slab") and not args.no_captured
    captured = dumpwalk.write_captured(files, kver, prefix="hvo") if keep else []
    slabinfo = {sc: f["/proc/slabinfo"] for sc, f in files.items() if "/proc/slabinfo" in f}
    if "slab-reclaim" in files:  # SLUB's reclaim_account per cache name
        slabinfo["reclaim_account"] = files["slab-reclaim"]["/tmp/ra"]  # merged caches too
    return {"which": which, "kernel": {"package": kpkg, "version": kver},
            "cmdline_added": extra, "boot_seconds": round(seconds, 1),
            "qemu": {"command": [Path(cmd[0]).name, *[a.replace(str(args.cache), "$CACHE")
                                                      for a in cmd[1:]]]},
            "machine": dataclasses.asdict(machine),
            "guest": {**parsed["facts"], **{k: v for k, v in parsed["blobs"].items()
                                             if k != "boot_labels"}},
            "errors": parsed["errors"], "captured": captured,
            **({"slabinfo": slabinfo} if slabinfo else {}),
            "steps": summarize(parsed)}


def cmd_run(args: argparse.Namespace) -> int:
    """Both boots; write results/hvo-<version>.json."""
    boots = [boot_one(args, w) for w in args.boots]
    kver = boots[0]["kernel"]["version"]
    out = args.out or RESULTS / f"hvo-{kver}.json"
    if args.merge and out.exists():
        boots = json.loads(out.read_text())["boots"] + boots
    out.write_text(json.dumps({"schema": 1, "kernel": boots[0]["kernel"],
                               "reads_per_phase": args.reads, "boots": boots}, indent=1) + "\n")
    print(f"hvo: wrote {out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--kernel-package", default=None)
    r.add_argument("--cache", type=Path, default=harness.DEFAULT_CACHE)
    r.add_argument("--ram-mib", type=int, default=3072)
    r.add_argument("--cpu", default="max")
    r.add_argument("--reads", type=int, default=5)
    r.add_argument("--timeout", type=float, default=1500.0)
    r.add_argument("--boots", nargs="+", default=["off", "on"])
    r.add_argument("--reps", default="n0 a0 a0 a0 n0",
                   help="repeat boot: a<hvo> = 64 x 2M cycle, n<hvo> = the same with nothing")
    r.add_argument("--out", type=Path, default=None)
    r.add_argument("--merge", action="store_true", help="append these boots to --out's boots")
    r.add_argument("--no-captured", action="store_true",
                   help="keep validation/captured/ as it is (boots that repeat measured steps)")
    a = p.parse_args(argv)
    a.cache = a.cache.resolve()
    try:
        return cmd_run(a)
    except harness.HarnessError as exc:
        print(f"hvo: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
