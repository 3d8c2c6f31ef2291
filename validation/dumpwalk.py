#!/usr/bin/env python3
"""Page-for-page check: dump a real guest's memory after creating device-dax namespaces and
walk its vmemmap page tables with drgn.

``run`` boots the packaged Debian kernel exactly as ``harness.py`` does (same initramfs,
same qemu machine, ``nokaslr``) plus

* ``-device vmcoreinfo`` and the guest module ``qemu_fw_cfg`` (it hands the kernel's
  VMCOREINFO to qemu, so the ELF dump names its kernel and drgn can open it);
* ``-qmp unix:…`` (the host's monitor) and a second serial port ``ttyS1`` on a unix socket
  (the guest's "dump me now" channel).

The guest creates the namespaces of ``STEPS`` one after another and keeps them live.  After
each create it copies the sysfs/proc files ``vmemlab inspect`` reads (``captured/``); after
the last create it writes ``DUMP <ranges>`` to ttyS1 and blocks reading ttyS1.  The host runs
``dump-guest-memory`` (ELF, ``paging=false``) once per range -- guest RAM, and the start of
every ``map=dev`` namespace where its memmap lives -- then answers ``go``.  Namespaces are
then destroyed and the guest powers off.

``extract`` opens the RAM dump with drgn (the -dbg ``vmlinux`` for types and symbols), adds
the device ranges as physical memory segments, finds every ``struct dev_pagemap`` in
``pgmap_array`` and walks ``init_mm.pgd`` over its vmemmap: it writes
``results/pagewalk-<kernel>.json`` (statistics and raw struct-page words; no dumps) and
deletes the dumps.  ``compare_words.py`` puts the result beside the model.

    python3 validation/dumpwalk.py run --kernel-package linux-image-6.12.117+deb12-amd64
    python3 validation/dumpwalk.py extract --kernel-version 6.12.117+deb12-amd64
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CAPTURED = HERE / "captured"
PAGE_SIZE = 4096
SP = 64  # sizeof(struct page), checked against the debug info in extract
MIB, GIB = 1 << 20, 1 << 30


@dataclasses.dataclass(frozen=True)
class Step:
    """One namespace created and kept live (``pad``: a raw namespace created first)."""

    name: str
    size_mib: int
    align: str
    map: str
    pad_mib: int = 0


#: device-dax namespaces in creation order: map=dev ones first so that their memmaps (at
#: each namespace's start) sit low in the region; ``mid`` starts 64 MiB into a section.
STEPS = (
    Step("1G-dev", 4096, "1G", "dev"),
    Step("2M-dev", 2048, "2M", "dev"),
    Step("4K-dev", 1024, "4K", "dev"),
    Step("2M-mem", 2048, "2M", "mem"),
    Step("1G-mem", 4096, "1G", "mem"),
    Step("4K-mem", 1024, "4K", "mem"),
    Step("2M-mem-mid", 1024, "2M", "mem", pad_mib=64),
)

GUEST_MODULES = (*harness.GUEST_MODULES, "qemu_fw_cfg")

GUEST_STEPS = r"""
stty -F /dev/ttyS1 raw -echo 115200 2>/dev/null
capture() { # scenario: copy the files vmemlab inspect reads, as VML-FILE blobs
  for f in /proc/vmstat /proc/meminfo /proc/sys/vm/hugetlb_optimize_vmemmap \
           /proc/sys/vm/nr_hugepages /sys/kernel/mm/hugepages/*/*; do
    [ -f "$f" ] && fileblob "$1" "$f"
  done
  for d in /sys/bus/dax/devices/* /sys/bus/nd/devices/*; do
    [ -d "$d" ] || continue
    for f in "$d"/* "$d"/mapping*/*; do
      [ -f "$f" ] && [ -r "$f" ] && fileblob "$1" "$f"
    done
  done
}
fileblob() { # scenario path
  if cat "$2" > /tmp/fb 2>/dev/null; then
    echo "VML-FILE-BEGIN	$1	$2"
    sed 's/^/|/' /tmp/fb
    echo "VML-FILE-END"
  fi
}
ranges=""
mkns() { # name size align map pad
  if [ "$5" != 0 ]; then
    ndctl create-namespace -r region0 --mode=raw --size="$5" > /tmp/pad.json 2>&1 \
      || rec error "$1" "pad failed: $(tr '\n' ' ' < /tmp/pad.json)"
    blob "$1" pad /tmp/pad.json
  fi
  t0=$(now)
  if ndctl create-namespace -r region0 --mode=devdax --align="$3" --map="$4" \
       --size="$2" > /tmp/create.json 2> /tmp/create.err; then
    rec time "$1" create_s "$t0" "$(now)"
    blob "$1" ndctl_create /tmp/create.json
    ns=$(grep -o '"dev":"[^"]*"' /tmp/create.json | head -n 1 | cut -d'"' -f4)
    attrs "$1" namespace "/sys/bus/nd/devices/$ns"
    holder=$(cat "/sys/bus/nd/devices/$ns/holder" 2>/dev/null)
    [ -n "$holder" ] && attrs "$1" nd_dax "/sys/bus/nd/devices/$holder"
    echo "$ns" >> /tmp/namespaces
    if [ "$4" = dev ]; then
      res=$(cat /sys/bus/nd/devices/$ns/resource)
      sz=$(cat /sys/bus/nd/devices/$ns/size)
      # the memmap of the whole raw range (64 bytes per 4 KiB page) plus slack for the
      # info block and 2 MiB alignment of the altmap allocations
      len=$(( (sz / 4096) * 64 + 8 * 1048576 ))
      ranges="$ranges $(printf '%x:%x' $res $len)"
    fi
  else
    rec error "$1" "create failed: $(tr '\n' ' ' < /tmp/create.err)"
  fi
  capture "$1"
}
"""

GUEST_AFTER = r"""
dmesg > /tmp/dmesg.all
blob dump dmesg_before_dump /tmp/dmesg.all
rec time dump request "$(now)"
echo "DUMP 0:__RAM__$ranges" > /dev/ttyS1
read -r answer < /dev/ttyS1
rec fact dump answer "$answer"
rec time dump done "$(now)"
for ns in $(cat /tmp/namespaces); do ndctl destroy-namespace -f "$ns" > /dev/null 2>&1; done
"""


def guest_script(steps: tuple[Step, ...], ram_bytes: int) -> str:
    """The guest's /init: harness prelude, the namespaces, one dump, the epilogue."""
    prelude = harness.guest_script([], 1).split(harness.MARK_END)[0]
    prelude = prelude[: prelude.rfind("\nattrs end region")]
    body = [GUEST_STEPS]
    for s in steps:
        body.append(f"rec config {s.name} namespace {s.size_mib * MIB} {s.align} {s.map} 0 "
                    f"{s.pad_mib * MIB}")
        body.append(f"mkns {s.name} {s.size_mib}M {s.align} {s.map} "
                    f"{str(s.pad_mib) + 'M' if s.pad_mib else 0}")
    body.append(GUEST_AFTER.replace("__RAM__", f"{ram_bytes:x}"))
    epilogue = harness.GUEST_EPILOGUE.replace("__END__", harness.MARK_END)
    return prelude + "\n".join(body) + epilogue


class Qmp:
    """A minimal QMP client over a unix socket."""

    def __init__(self, path: Path, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(str(path))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise harness.HarnessError(f"QMP socket {path} never came up") from None
                time.sleep(0.2)
        self.f = self.sock.makefile("rwb", buffering=0)
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self) -> dict:
        while True:
            line = self.f.readline()
            if not line:
                raise harness.HarnessError("QMP connection closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def cmd(self, name: str, **arguments) -> dict:
        """Run one command; raise on an error reply."""
        self.f.write(json.dumps({"execute": name, "arguments": arguments}).encode() + b"\n")
        reply = self._read()
        if "error" in reply:
            raise harness.HarnessError(f"QMP {name}: {reply['error']}")
        return reply.get("return", {})


def control_loop(ctl: Path, qmp: Path, dumpdir: Path, log: list) -> None:
    """Serve the guest's DUMP requests on the ttyS1 socket (runs in a thread)."""
    try:
        mon = Qmp(qmp)
        deadline = time.monotonic() + 120
        while True:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(str(ctl))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        f = s.makefile("rwb", buffering=0)
        while True:
            line = f.readline()
            if not line:
                return
            text = line.decode(errors="replace").strip()
            if not text.startswith("DUMP"):
                log.append({"ttyS1": text[:200]})
                continue
            files = []
            for i, item in enumerate(text.split()[1:]):
                start, length = (int(x, 16) for x in item.split(":"))
                out = dumpdir / f"dump{i}.elf"
                out.unlink(missing_ok=True)
                t0 = time.monotonic()
                mon.cmd("dump-guest-memory", paging=False, protocol=f"file:{out}",
                        begin=start, length=length)
                files.append({"file": out.name, "begin": start, "length": length,
                              "seconds": round(time.monotonic() - t0, 1),
                              "bytes": out.stat().st_size})
            log.append({"request": text, "dumps": files})
            f.write(b"go\n")
    except Exception as exc:  # noqa: BLE001 - reported by the main thread
        log.append({"error": repr(exc)})


def parse_files(console: str) -> dict[str, dict[str, str]]:
    """VML-FILE blobs -> {scenario: {path: text}}."""
    out: dict[str, dict[str, str]] = collections.defaultdict(dict)
    lines = iter(console.replace("\r", "").splitlines())
    for line in lines:
        if line.startswith("VML-FILE-BEGIN\t"):
            _, scen, path = line.split("\t", 2)
            chunk = []
            for inner in lines:
                if inner == "VML-FILE-END":
                    break
                chunk.append(inner[1:] if inner.startswith("|") else inner)
            out[scen][path] = "\n".join(chunk) + ("\n" if chunk else "")
    return out


def write_captured(files: dict[str, dict[str, str]], kver: str, prefix: str = "devdax") -> list:
    """Write captured trees under validation/captured/<kver>/<prefix>-<scenario>/<path>."""
    written = []
    for scen, tree in files.items():
        base = CAPTURED / kver / f"{prefix}-{scen}"
        for path, text in tree.items():
            dest = base / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text)
        written.append(str(base.relative_to(HERE)))
    return written


def cmd_run(args: argparse.Namespace) -> int:
    """Boot, create, dump, then extract."""
    qemu = harness.ensure_qemu(install=False)
    harness.ensure_host_tools()
    kernel, root, kver, kpkg = harness.prepare(args)
    work = args.cache / (f"dump-{kver}" + (f"-{args.tag}" if args.tag else ""))
    work.mkdir(parents=True, exist_ok=True)
    machine = harness.Machine(ram_mib=args.ram_mib, nvdimm_gib=args.nvdimm_gib, cpu=args.cpu)
    script = guest_script(STEPS, args.ram_mib * MIB)
    old = harness.GUEST_MODULES
    harness.GUEST_MODULES = GUEST_MODULES
    try:
        initrd_bytes = harness.build_initramfs(root, kver, script)
    finally:
        harness.GUEST_MODULES = old
    initrd = work / "initramfs.cpio"
    initrd.write_bytes(initrd_bytes)
    backing = work / "nvdimm.img"
    harness.make_backing(backing, machine)
    qmp, ctl = work / "qmp.sock", work / "ctl.sock"
    for p in (qmp, ctl):
        p.unlink(missing_ok=True)
    cmd = harness.qemu_command(qemu, kernel, initrd, backing, machine)
    cmd += ["-qmp", f"unix:{qmp},server=on,wait=off",
            "-chardev", f"socket,id=ctl,path={ctl},server=on,wait=off",
            "-serial", "mon:stdio", "-serial", "chardev:ctl", "-device", "vmcoreinfo"]
    log: list = []
    t = threading.Thread(target=control_loop, args=(ctl, qmp, work, log), daemon=True)
    t.start()
    console_log = work / "console.log"
    print(f"dumpwalk: booting {kver}", file=sys.stderr)
    try:
        console, seconds = harness.boot(cmd, console_log, args.timeout)
    finally:
        backing.unlink(missing_ok=True)
    parsed = harness.parse_console(console)
    files = parse_files(console)
    captured = write_captured(files, kver)
    meta = {
        "kernel": {"package": kpkg, "version": kver},
        "qemu": {"command": [Path(cmd[0]).name, *[a.replace(str(args.cache), "$CACHE")
                                                   for a in cmd[1:]]],
                 "boot_seconds": round(seconds, 1)},
        "machine": dataclasses.asdict(machine),
        "steps": [dataclasses.asdict(s) for s in STEPS],
        "dumps": log,
        "guest": {**parsed["facts"], **parsed["blobs"]},
        "configs": parsed["configs"],
        "errors": parsed["errors"],
        "captured": captured,
    }
    (work / "run.json").write_text(json.dumps(meta, indent=1))
    print(f"dumpwalk: boot {seconds:.0f} s, dumps {log}", file=sys.stderr)
    if any("error" in e for e in log) or not any("dumps" in e for e in log):
        raise harness.HarnessError(f"no dump taken: {log}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--kernel-package", default=None)
    r.add_argument("--cache", type=Path, default=harness.DEFAULT_CACHE)
    r.add_argument("--ram-mib", type=int, default=1024)
    r.add_argument("--nvdimm-gib", type=int, default=18)
    r.add_argument("--cpu", default="max")
    r.add_argument("--timeout", type=float, default=1500.0)
    r.add_argument("--tag", default="", help="suffix for the work dir / result (e.g. 4level)")
    e = sub.add_parser("extract")
    e.add_argument("--tag", default="")
    e.add_argument("--kernel-version", required=True)
    e.add_argument("--cache", type=Path, default=harness.DEFAULT_CACHE)
    e.add_argument("--keep", action="store_true", help="keep the dumps")
    a = p.parse_args(argv)
    a.cache = a.cache.resolve()
    try:
        if a.command == "run":
            return cmd_run(a)
        import extract_walk
        return extract_walk.cmd_extract(a)
    except harness.HarnessError as exc:
        print(f"dumpwalk: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
