"""``python -m vmemlab``: capacity planning from the command line.

    python -m vmemlab plan --size 1T --align 2M --map mem [--arch x86_64] [--kernel 6.6]
                           [--start 0x1000000000] [--ram 512G] [--json]
    python -m vmemlab compare --size 1T [--arch ...]       # every align x map x kernel
    python -m vmemlab plan --ram 512G --hugetlb 2M:1024 --namespace 1T:2M:mem [--hvo off]
    python -m vmemlab inspect [--root DIR] [--baseline DIR] [--json]   # this machine

Errors print one line (``vmemlab: error: ...``) and exit with status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import NoReturn

from .arch import ARCHES, get_arch
from .errors import ParameterError, VmemlabError
from .inspect import inspect
from .kernels import KERNELS, get_kernel, kernel_names
from .machine_plan import plan_machine
from .plan import plan
from .units import format_size


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error convention: one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"vmemlab: error: {message} (see: python -m vmemlab -h)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vmemlab", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    common = _Parser(add_help=False)
    common.add_argument("--size", required=True, help="namespace size, e.g. 16G, 1T")
    common.add_argument("--arch", default="x86_64", choices=list(ARCHES))
    common.add_argument("--start", default=None,
                        help="physical start address (default: 64 GiB or above --ram)")
    common.add_argument("--ram", default=None, help="the machine's RAM, e.g. 256G")
    common.add_argument("--json", action="store_true", help="print one JSON object")
    pl = sub.add_parser("plan", parents=[common], help="cost of one namespace configuration")
    pl.add_argument("--align", default="2M", help="device-dax align: 4K, 2M, 1G (per arch)")
    pl.add_argument("--map", default="mem", choices=["mem", "dev"],
                    help="struct pages in RAM (mem) or on the device (dev)")
    pl.add_argument("--kernel", default="6.6", choices=kernel_names())
    _add_machine_plan_args(pl)
    _add_inspect_parser(sub)
    cmp_ = sub.add_parser("compare", parents=[common],
                          help="RAM cost for every align, map and kernel variant")
    cmp_.add_argument("--kernel", action="append", choices=kernel_names(),
                      help="kernel variant(s) to compare (default: all)")
    return p


def _int_or_size(v: str | None, name: str = "start") -> int | str | None:
    """``--start`` as given: a hex address (``0x1000000000``) or a size (``64G``)."""
    if v is None:
        return None
    if v.lower().startswith("0x"):
        try:
            return int(v, 16)
        except ValueError:
            raise ParameterError(name, v, "a hex address such as 0x1000000000, or a size "
                                 "such as 64G") from None
    return v


def _cmd_plan(args: argparse.Namespace) -> int:
    if args.hugetlb or args.namespace or args.size is None:
        return _cmd_plan_machine(args)
    p = plan(args.size, align=args.align, map=args.map, arch=args.arch, kernel=args.kernel,
             start=_int_or_size(args.start), ram=args.ram)
    if args.json:
        print(json.dumps(p.to_dict(), sort_keys=True))
    else:
        print(p.table())
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    arch = get_arch(args.arch)
    kernels = args.kernel or list(KERNELS)
    resolved = {k: get_kernel(k) for k in kernels}  # each name looked up once, here at the edge
    start = _int_or_size(args.start)
    rows = []
    for align in arch.dax_aligns:
        for map_ in ("mem", "dev"):
            for k in kernels:
                row: dict = {"align": align, "map": map_, "kernel": k}
                try:
                    p = plan(args.size, align=align, map=map_, arch=arch, kernel=resolved[k],
                             start=start, ram=args.ram)
                except VmemlabError as e:  # one refused cell does not end the table
                    row.update(ram_bytes=None, device_bytes=None, optimised=None,
                               refused=str(e))
                else:
                    row.update(ram_bytes=p.ram_bytes, device_bytes=(
                        p.device_data_pages + p.device_align_pages) * p.page_size,
                        optimised=p.optimised)
                rows.append(row)
    if all("refused" in r for r in rows):
        raise VmemlabError(rows[0]["refused"])
    if args.json:
        print(json.dumps(rows, sort_keys=True))
        return 0
    print(f"{'align':>6} {'map':>4} {'kernel':>8} {'RAM':>10} {'device':>10}  dedup")
    refused = []
    for r in rows:
        if "refused" in r:
            refused.append(r)
            print(f"{format_size(r['align']):>6} {r['map']:>4} {r['kernel']:>8} "
                  f"{'refused':>10} {'-':>10}  [{len(refused)}]")
            continue
        print(f"{format_size(r['align']):>6} {r['map']:>4} {r['kernel']:>8} "
              f"{format_size(r['ram_bytes']):>10} {format_size(r['device_bytes']):>10}  "
              f"{'yes' if r['optimised'] else 'no'}")
    for i, r in enumerate(refused, 1):
        print(f"[{i}] {r['refused']}")
    return 0


def _add_machine_plan_args(pl: argparse.ArgumentParser) -> None:
    """``plan`` of a whole machine: HugeTLB pools and several namespaces (vmemlab.machine_plan).
    --size becomes optional: without it, --hugetlb/--namespace describe the machine."""
    for act in pl._actions:
        if act.dest == "size":
            act.required = False
            act.help = "one namespace's size (or use --namespace/--hugetlb with --ram)"
    pl.add_argument("--hugetlb", action="append", default=[], metavar="SIZE:COUNT",
                    help="a HugeTLB pool, e.g. 2M:1024 or 1G:4 (repeatable)")
    pl.add_argument("--namespace", action="append", default=[], metavar="SIZE:ALIGN:MAP",
                    help="a device-dax namespace, e.g. 1T:2M:mem (repeatable)")
    pl.add_argument("--hvo", choices=["on", "off"], default="on",
                    help="HugeTLB Vmemmap Optimization (default on)")
    pl.add_argument("--when", choices=["runtime", "boot"], default="runtime",
                    help="HugeTLB pool allocated at boot (hugepages=) or at runtime")
    pl.add_argument("--placement", choices=["packed", "spread"], default="packed",
                    help="headline figure: pages packed into the fewest 128 MiB regions "
                         "(best) or each in its own (worst); both are shown")
    pl.add_argument("--direct-map", default=None, dest="direct_map",
                    help="direct-map variant (x86_64: gbpages, 2m; arm64: pages, blocks); "
                         "default: the packaged kernel's")


def _cmd_plan_machine(args: argparse.Namespace) -> int:
    if args.ram is None:
        raise ParameterError("--ram", None, "the machine's RAM (e.g. --ram 512G) when "
                             "planning --hugetlb pools or --namespace specs")
    if args.start is not None:
        raise ParameterError("--start", args.start, "nothing with --namespace/--hugetlb "
                             "(namespaces are placed above RAM, 1 GiB-aligned)")
    specs = list(args.namespace)
    if args.size is not None:
        specs.insert(0, f"{args.size}:{args.align}:{args.map}")
    mp = plan_machine(args.ram, specs, args.hugetlb, arch=args.arch, kernel=args.kernel,
                      hvo=args.hvo == "on", when=args.when, placement=args.placement,
                      direct_map=args.direct_map)
    if args.json:
        print(json.dumps(mp.to_dict(), sort_keys=True))
    else:
        print(mp.table())
    return 0


def _add_inspect_parser(sub: argparse._SubParsersAction) -> None:
    ins = sub.add_parser("inspect", help="what struct pages cost on this (or a captured) "
                                         "machine, read from /proc and /sys without root")
    ins.add_argument("--root", default="/", help="a directory holding a copy of /proc and /sys "
                                                 "files (default: the running system)")
    ins.add_argument("--baseline", default=None,
                     help="a tree captured before the namespaces/pools: compare counter deltas")
    ins.add_argument("--kernel", default=None, choices=list(KERNELS),
                     help="kernel variant (default: from osrelease and kallsyms)")
    ins.add_argument("--direct-map", default=None, dest="direct_map",
                     help="direct-map variant (default: from pdpe1gb / the arch)")
    ins.add_argument("--arch", default=None, choices=list(ARCHES),
                     help="arch, for a tree without /proc/sys/kernel/arch or /proc/cpuinfo")
    ins.add_argument("--release", default=None,
                     help="kernel release, for a tree without /proc/sys/kernel/osrelease")
    ins.add_argument("--strict", action="store_true",
                     help="fail (exit 2) on a file that exists but cannot be read")
    ins.add_argument("--json", action="store_true", help="print one JSON object")


def _cmd_inspect(args: argparse.Namespace) -> int:
    r = inspect(args.root, baseline=args.baseline, strict=args.strict, kernel=args.kernel,
                direct_map=args.direct_map, arch=args.arch, release=args.release)
    if args.json:
        print(json.dumps(r.to_dict(), sort_keys=True))
    else:
        print(r.table())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return {"plan": _cmd_plan, "compare": _cmd_compare,
                "inspect": _cmd_inspect}[args.command](args)
    except VmemlabError as e:
        print(f"vmemlab: error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        print("vmemlab: error: the model ran out of host memory for this size", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
