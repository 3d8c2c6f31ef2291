#!/usr/bin/env python3
"""Measure what a real Linux kernel spends on struct pages for device-dax namespaces.

The harness fetches a packaged Debian kernel plus ndctl/daxctl/busybox with
``apt-get download`` (never installing a kernel on the host), builds a tiny
initramfs whose ``/init`` creates and destroys device-dax namespaces on a
QEMU-emulated NVDIMM, boots it under ``qemu-system-x86_64`` (TCG) and writes
the raw readings to a JSON file.

Usage::

    python3 validation/harness.py run [--out validation/results/linux-6.12.json]
                                      [--configs tiny|quick|full]

Only the Python standard library is used.  Any failure ends with ONE message
on stderr naming the missing piece and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import re
import sys
from collections.abc import Sequence
from pathlib import Path

# The steps, one module each; every name stays importable from here (hvo.py, dumpwalk.py,
# arm64_directmap.py and test_compare.py use ``harness.<name>``).
from harness_boot import Machine, boot, make_backing, qemu_command  # noqa: F401
from harness_common import (  # noqa: F401
    DEFAULT_CACHE,
    DEFAULT_OUT,
    GIB,
    HERE,
    KIB,
    MARK_BEGIN,
    MARK_END,
    MIB,
    RECORD,
    HarnessError,
    run_cmd,
)
from harness_fetch import (  # noqa: F401
    KERNEL_SERIES,
    USERSPACE_PACKAGES,
    apt_update,
    ensure_host_tools,
    ensure_qemu,
    fetch_packages,
    resolve_kernel_package,
    unpack,
)
from harness_initramfs import (  # noqa: F401
    GUEST_BINARIES,
    GUEST_MODULES,
    Cpio,
    build_initramfs,
    guest_path,
    module_depends,
    module_index,
    module_load_order,
    read_module,
    shared_libs,
)
from harness_measure import (  # noqa: F401
    GUEST_EPILOGUE,
    GUEST_PRELUDE,
    MEMINFO_KEYS,
    SYSFS_ATTRS,
    VMSTAT_KEYS,
    Config,
    _human,
    _ns,
    _parse_kv,
    columnar,
    config_list,
    guest_script,
    parse_console,
    reading_fields,
)

# --------------------------------------------------------------------------- main flow


def host_facts(qemu: str) -> dict:
    """Facts about the host the guest ran on."""
    ver = run_cmd([qemu, "--version"], "qemu --version").splitlines()[0]
    return {
        "uname": " ".join(platform.uname()),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "qemu_version": ver,
        "kvm": "not used (TCG)",
    }


def prepare(args: argparse.Namespace) -> tuple[Path, Path, str, str]:
    """Fetch and unpack packages; return (kernel image, root dir, kernel version, pkg)."""
    cache: Path = args.cache
    kpkg = resolve_kernel_package(args.kernel_package)
    debs = fetch_packages([kpkg, *USERSPACE_PACKAGES], cache / "debs")
    root = cache / "root"
    unpack(debs, root)
    images = sorted((root / "boot").glob(f"vmlinuz-*{kpkg.removeprefix('linux-image-')}*"))
    if not images:
        raise HarnessError(f"no vmlinuz found after unpacking {kpkg}")
    kernel = images[-1]
    kver = kernel.name.removeprefix("vmlinuz-")
    if not (root / "lib/modules" / kver).is_dir():
        raise HarnessError(f"modules for {kver} missing after unpacking {kpkg}")
    return kernel, root, kver, kpkg


def cmd_run(args: argparse.Namespace) -> int:
    """The ``run`` sub-command."""
    started = dt.datetime.now(dt.timezone.utc)
    qemu = ensure_qemu(install=not args.no_install)
    ensure_host_tools()
    configs = config_list(args.configs)
    kernel, root, kver, kpkg = prepare(args)
    script = guest_script(configs, args.reads)
    initrd = args.cache / "initramfs.cpio"
    initrd.write_bytes(build_initramfs(root, kver, script))
    machine = Machine(ram_mib=args.ram_mib, nvdimm_gib=args.nvdimm_gib, cpu=args.cpu)
    backing = args.cache / "nvdimm.img"
    make_backing(backing, machine)
    cmd = qemu_command(qemu, kernel, initrd, backing, machine)
    log = args.cache / "console.log"
    print(
        f"harness: booting {kver} with {len(configs)} configs "
        f"(timeout {args.timeout:.0f} s, console log {log})",
        file=sys.stderr,
    )
    try:
        console, seconds = boot(cmd, log, args.timeout)
    finally:
        backing.unlink(missing_ok=True)
    parsed = parse_console(console)
    result = {
        "schema": 1,
        "generated_utc": started.isoformat(timespec="seconds"),
        "config_list": args.configs,
        "reads_per_phase": args.reads,
        "kernel": {"package": kpkg, "version": kver, "uname_r": parsed["facts"].get("uname_r")},
        "qemu": {"command": [Path(cmd[0]).name, *cmd[1:]], "boot_seconds": round(seconds, 1)},
        "machine": dataclasses.asdict(machine),
        "host": host_facts(qemu),
        "guest": {**parsed["facts"], **parsed["blobs"]},
        "errors": parsed["errors"],
        "reading_fields": reading_fields(),
        "configs": [columnar(c) for c in parsed["configs"]],
    }
    _relativize_paths(result, args.cache)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dump_json(result))
    print(
        f"harness: wrote {args.out} ({len(parsed['configs'])} configs, boot {seconds:.0f} s)",
        file=sys.stderr,
    )
    return 0


def dump_json(result: dict) -> str:
    """Indented JSON with each innermost list of numbers kept on one line."""
    text = json.dumps(result, indent=1)
    flat = re.compile(r"\[(\s*(?:-?[0-9.]+|null)(?:,\s*(?:-?[0-9.]+|null))*\s*)\]")
    return flat.sub(lambda m: "[" + re.sub(r"\s+", "", m.group(1)) + "]", text) + "\n"


def _relativize_paths(result: dict, cache: Path) -> None:
    """Replace host cache paths in the recorded qemu command with placeholders."""
    result["qemu"]["command"] = [a.replace(str(cache), "$CACHE") for a in result["qemu"]["command"]]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="fetch, build, boot, measure, write JSON")
    r.add_argument("--out", type=Path, default=DEFAULT_OUT)
    r.add_argument(
        "--configs",
        default="full",
        choices=("tiny", "quick", "full"),
        help="tiny: 1 namespace; quick: 16G x 3 aligns x 2 maps; full (default, ~70 s): 35 steps",
    )
    r.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    r.add_argument(
        "--no-install",
        action="store_true",
        help="never apt-get install qemu; fail if it is missing",
    )
    r.add_argument("--timeout", type=float, default=1500.0, help="hard qemu timeout, seconds")
    r.add_argument("--reads", type=int, default=7, help="free-page reads per phase")
    r.add_argument("--ram-mib", type=int, default=2048)
    r.add_argument("--cpu", default="max", help="qemu -cpu model, e.g. max,-pdpe1gb")
    r.add_argument("--nvdimm-gib", type=int, default=18)
    r.add_argument("--kernel-package", default=None, help="override the linux-image package")
    args = p.parse_args(argv)
    args.cache = args.cache.resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: one clear message and exit status 2 on any HarnessError."""
    args = parse_args(argv)
    try:
        return cmd_run(args)
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
