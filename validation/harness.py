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
import io
import json
import lzma
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = HERE / ".cache"
DEFAULT_OUT = HERE / "results" / "linux-6.12.json"

GIB = 1 << 30
MIB = 1 << 20
KIB = 1 << 10

#: Debian packages the guest user space needs (closure of ndctl/daxctl Depends).
USERSPACE_PACKAGES = (
    "busybox-static",
    "ndctl",
    "daxctl",
    "libndctl6",
    "libdaxctl1",
    "libcxl1",
    "libiniparser1",
    "libjson-c5",
    "libkeyutils1",
    "libtraceevent1",
    "libtracefs1",
    "libuuid1",
    "libkmod2",
    "libudev1",
    "libzstd1",
    "liblzma5",
    "libssl3",
    "libc6",
    "libgcc-s1",
)

#: Kernel series to try, newest first: (series, meta package naming the image).
KERNEL_SERIES = (("6.12", "linux-image-6.12-amd64"), ("6.1", "linux-image-amd64"))

#: Modules for the emulated NVDIMM device-dax path (dependencies added from .modinfo).
GUEST_MODULES = ("libnvdimm", "nfit", "nd_btt", "nd_pmem", "device_dax", "dax_pmem")

GUEST_BINARIES = ("usr/bin/ndctl", "usr/bin/daxctl")

MARK_BEGIN = "VMLAB-BEGIN"
MARK_END = "VMLAB-END"
RECORD = "VML"

VMSTAT_KEYS = (
    "nr_free_pages",
    "nr_memmap_pages",
    "nr_memmap_boot_pages",
    "nr_slab_reclaimable",
    "nr_slab_unreclaimable",
    "nr_page_table_pages",
    "nr_sec_page_table_pages",
    "nr_kernel_stack",
    "nr_file_pages",
    "nr_anon_pages",
    "nr_shmem",
    "nr_kernel_misc_reclaimable",
)
MEMINFO_KEYS = (
    "MemFree",
    "Slab",
    "SReclaimable",
    "SUnreclaim",
    "Percpu",
    "VmallocUsed",
    "KernelStack",
    "PageTables",
    "DirectMap4k",
    "DirectMap2M",
    "DirectMap1G",
)
SYSFS_ATTRS = (
    "resource",
    "size",
    "align",
    "mode",
    "holder",
    "namespace",
    "supported_alignments",
    "available_size",
    "max_available_extent",
    "numa_node",
    "target_node",
    "dax_seed",
    "pfn_seed",
    "start",
    "end",
    "page_offset",
)


class HarnessError(Exception):
    """A failure that ends the run with one clear message."""


# --------------------------------------------------------------------------- configs


@dataclasses.dataclass(frozen=True)
class Config:
    """One measured step: a namespace create/destroy cycle or a do-nothing control.

    ``pad`` (bytes) is the size of a raw-mode namespace created before the
    "before" readings (and destroyed after the last readings) so that the
    measured namespace starts ``pad`` bytes into the region instead of at its start.
    """

    name: str
    kind: str  # "namespace" or "control"
    size: int = 0
    align: str = "2M"
    map: str = "mem"
    warmup: bool = False
    pad: int = 0

    def to_dict(self) -> dict:
        """Plain-dict form."""
        return dataclasses.asdict(self)


def _human(nbytes: int) -> str:
    """16 GiB -> "16G", 4160 MiB -> "4160M"."""
    return f"{nbytes // GIB}G" if nbytes % GIB == 0 else f"{nbytes // MIB}M"


def _ns(
    size_mib: int, align: str, mapping: str, rep: int = 0, warmup: bool = False, pad_mib: int = 0
) -> Config:
    """A namespace configuration named like ``16G-2M-mem`` (``-padNM``, ``-rN`` suffixes)."""
    size = size_mib * MIB
    name = f"{_human(size)}-{align}-{mapping}"
    if pad_mib:
        name += f"-pad{pad_mib}M"
    if rep:
        name += f"-r{rep}"
    if warmup:
        name = "warmup-" + name
    return Config(name, "namespace", size, align, mapping, warmup, pad_mib * MIB)


def config_list(which: str) -> list[Config]:
    """Return the named configuration list (tiny, quick or full)."""
    warm = _ns(2048, "2M", "mem", warmup=True)
    ctl = [Config(f"control-{i}", "control") for i in range(4)]
    aligns_maps = [(a, m) for a in ("4K", "2M", "1G") for m in ("mem", "dev")]
    if which == "tiny":
        return [ctl[0], _ns(2048, "2M", "mem")]
    if which == "quick":
        body = [_ns(16384, a, m) for a, m in aligns_maps]
        return [warm, ctl[0], *body, ctl[1]]
    if which == "full":
        reps = [[_ns(s, a, m, rep) for s in (4096, 16384) for a, m in aligns_maps] for rep in (0, 1)]
        # Sizes that end inside a 128 MiB section (4 GiB + 64 MiB), and namespaces that
        # start 64 MiB into a section (so 1G alignment also truncates their end).
        odd = [
            *[_ns(4160, a, m) for a in ("4K", "2M") for m in ("mem", "dev")],
            *[_ns(4096, a, m, pad_mib=64) for a, m in aligns_maps],
        ]
        return [warm, ctl[0], *reps[0], ctl[1], *reps[1], ctl[2], *odd, ctl[3]]
    raise HarnessError(f"unknown config list {which!r} (use tiny, quick or full)")


def reading_fields() -> list[str]:
    """Column names of one free-page reading, in the order stored in the JSON."""
    return ["i", "pcp", *VMSTAT_KEYS, *(f"{k}_kb" for k in MEMINFO_KEYS)]


# --------------------------------------------------------------------------- host tools


def run_cmd(cmd: Sequence[str], what: str, timeout: float = 600, **kw) -> str:
    """Run a host command; raise HarnessError naming ``what`` if it fails."""
    try:
        res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False, **kw)
    except FileNotFoundError as exc:
        raise HarnessError(f"{what}: command not found: {cmd[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"{what}: timed out after {timeout:.0f} s") from exc
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise HarnessError(f"{what}: {' '.join(cmd[:3])} exited {res.returncode}: {tail[0]}")
    return res.stdout


def ensure_qemu(install: bool) -> str:
    """Return the path of qemu-system-x86_64, installing qemu-system-x86 if allowed."""
    found = shutil.which("qemu-system-x86_64")
    if found:
        return found
    if not install:
        raise HarnessError(
            "qemu-system-x86_64 not found on PATH (install package qemu-system-x86, or drop --no-install)"
        )
    if not shutil.which("apt-get"):
        raise HarnessError("qemu-system-x86_64 not found and apt-get is missing to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run_cmd(
        ["apt-get", "install", "-y", "qemu-system-x86"],
        "installing qemu-system-x86",
        timeout=1200,
        env=env,
    )
    found = shutil.which("qemu-system-x86_64")
    if not found:
        raise HarnessError("qemu-system-x86 installed but qemu-system-x86_64 still not on PATH")
    return found


def ensure_host_tools() -> None:
    """Check the host tools used to fetch and unpack packages."""
    for tool in ("apt-get", "apt-cache", "dpkg-deb", "ldd"):
        if not shutil.which(tool):
            raise HarnessError(f"host tool {tool!r} not found on PATH (needs a Debian host)")


def apt_update() -> None:
    """Refresh the apt package lists."""
    run_cmd(["apt-get", "update"], "apt-get update", timeout=600)


def resolve_kernel_package(override: str | None) -> str:
    """Return the concrete linux-image package name to fetch (6.12, else 6.1)."""
    if override:
        return override
    for attempt in (0, 1):
        for _series, meta in KERNEL_SERIES:
            out = subprocess.run(
                ["apt-cache", "depends", meta], capture_output=True, text=True, check=False
            ).stdout
            m = re.search(r"Depends: (linux-image-[0-9][^\s]*-amd64)\s*$", out, re.M)
            if m:
                return m.group(1)
        if attempt == 0:
            apt_update()
    raise HarnessError(
        "no Debian linux-image 6.12 or 6.1 package found by apt-cache "
        f"(tried {', '.join(meta for _, meta in KERNEL_SERIES)})"
    )


def fetch_packages(names: Iterable[str], debdir: Path) -> list[Path]:
    """Download .deb files with ``apt-get download`` into ``debdir`` (cached)."""
    debdir.mkdir(parents=True, exist_ok=True)
    os.chmod(debdir, 0o777)  # lets apt's _apt user write without the sandbox warning
    paths = []
    for name in names:
        existing = sorted(debdir.glob(f"{name}_*.deb"))
        if not existing:
            try:
                run_cmd(["apt-get", "download", name], f"fetching package {name}", cwd=debdir)
            except HarnessError:
                apt_update()
                run_cmd(["apt-get", "download", name], f"fetching package {name}", cwd=debdir)
            existing = sorted(debdir.glob(f"{name}_*.deb"))
        if not existing:
            raise HarnessError(f"package {name} not fetchable: apt-get download left no .deb")
        paths.append(existing[-1])
    return paths


def unpack(debs: Iterable[Path], root: Path) -> None:
    """Unpack .deb files with ``dpkg-deb -x`` into ``root`` (skipping done ones)."""
    root.mkdir(parents=True, exist_ok=True)
    stamp_dir = root / ".unpacked"
    stamp_dir.mkdir(exist_ok=True)
    for deb in debs:
        stamp = stamp_dir / deb.name
        if not stamp.exists():
            run_cmd(["dpkg-deb", "-x", str(deb), str(root)], f"unpacking {deb.name}")
            stamp.touch()


# --------------------------------------------------------------------------- modules


def module_index(moddir: Path) -> dict[str, Path]:
    """Map module name (underscored) to its file under ``moddir/kernel``."""
    index = {}
    for path in (moddir / "kernel").rglob("*.ko*"):
        name = path.name.split(".ko")[0].replace("-", "_")
        index[name] = path
    return index


def read_module(path: Path) -> bytes:
    """Return the decompressed bytes of a kernel module."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko"):
        return data
    raise HarnessError(f"module {path.name}: unsupported compression (only .ko and .ko.xz)")


def module_depends(blob: bytes) -> list[str]:
    """Parse the ``depends=`` entry of a module's .modinfo section."""
    m = re.search(rb"(?:^|\x00)depends=([^\x00]*)\x00", blob)
    if not m or not m.group(1):
        return []
    return [d.decode().replace("-", "_") for d in m.group(1).split(b",") if d]


def module_load_order(index: dict[str, Path], wanted: Iterable[str]) -> list[tuple[str, bytes]]:
    """Return (name, decompressed module) for ``wanted`` plus deps, dependencies first."""
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        if name not in index:
            raise HarnessError(f"kernel module {name} not in the kernel package (built in?)")
        blob = read_module(index[name])
        for dep in module_depends(blob):
            visit(dep)
        order.append((name, blob))

    for name in wanted:
        visit(name)
    return order


# --------------------------------------------------------------------------- initramfs


class Cpio:
    """Minimal writer for the ``newc`` cpio format used by initramfs."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1
        self.names: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes) -> None:
        name = name.lstrip("/")
        if name in self.names:
            return
        self.names.add(name)
        nb = name.encode() + b"\x00"
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0)
        hdr = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
        self.buf.write(hdr + nb)
        self.buf.write(b"\x00" * (-(len(hdr) + len(nb)) % 4))
        self.buf.write(data)
        self.buf.write(b"\x00" * (-len(data) % 4))
        self.ino += 1

    def dir(self, name: str) -> None:
        """Add a directory and its parents."""
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            self._entry("/".join(parts[:i]), stat.S_IFDIR | 0o755, b"")

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        """Add a regular file (parent directories are created)."""
        parent = os.path.dirname(name.strip("/"))
        if parent:
            self.dir(parent)
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        """Add a symbolic link."""
        parent = os.path.dirname(name.strip("/"))
        if parent:
            self.dir(parent)
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def finish(self) -> bytes:
        """Return the archive with its trailer."""
        self._entry("TRAILER!!!", 0, b"")
        data = self.buf.getvalue()
        return data + b"\x00" * (-len(data) % 512)


def shared_libs(root: Path, binaries: Iterable[Path]) -> list[Path]:
    """Return the shared libraries (from ``root`` when present) that ``binaries`` need."""
    libdirs = [root / "lib/x86_64-linux-gnu", root / "usr/lib/x86_64-linux-gnu"]
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(map(str, libdirs)))
    libs: list[Path] = []
    for binary in binaries:
        out = run_cmd(["ldd", str(binary)], f"ldd {binary.name}", env=env)
        for line in out.splitlines():
            if "not found" in line:
                raise HarnessError(f"{binary.name} needs a library not fetched: {line.strip()}")
            m = re.search(r"=>\s*(/\S+)", line)
            if m:
                libs.append(Path(m.group(1)))
    return sorted(set(libs))


def guest_path(root: Path, lib: Path) -> str:
    """Path of a library inside the guest: relative to ``root`` or kept as on the host."""
    try:
        return "/" + str(lib.relative_to(root))
    except ValueError:
        return str(lib)


def build_initramfs(root: Path, kver: str, init_script: str) -> bytes:
    """Build the initramfs: busybox, ndctl/daxctl + libs, NVDIMM modules and /init."""
    cpio = Cpio()
    for d in (
        "bin",
        "sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "etc",
        "lib64",
        "usr/bin",
        "usr/sbin",
        f"lib/modules/{kver}",
    ):
        cpio.dir(d)
    busybox = root / "bin/busybox"
    if not busybox.exists():
        raise HarnessError("busybox binary missing from the unpacked busybox-static package")
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    cpio.symlink("bin/sh", "busybox")
    binaries = [root / b for b in GUEST_BINARIES]
    for b in binaries:
        if not b.exists():
            raise HarnessError(f"{b.name} missing from the unpacked ndctl/daxctl packages")
        cpio.file(str(b.relative_to(root)), b.read_bytes(), 0o755)
    for lib in shared_libs(root, binaries):
        cpio.file(guest_path(root, lib), lib.resolve().read_bytes(), 0o755)
    loader = root / "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    if not loader.exists():
        raise HarnessError("dynamic loader missing from the unpacked libc6 package")
    cpio.file("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", loader.resolve().read_bytes(), 0o755)
    cpio.symlink("lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    moddir = root / "lib/modules" / kver
    deps_lines = []
    mods = module_load_order(module_index(moddir), GUEST_MODULES)
    for name, blob in mods:
        cpio.file(f"lib/modules/{kver}/{name}.ko", blob)
        deps_lines.append(f"{name}.ko:")
    cpio.file(f"lib/modules/{kver}/modules.dep", ("\n".join(deps_lines) + "\n").encode())
    cpio.file(f"lib/modules/{kver}/load-order", " ".join(n for n, _ in mods).encode())
    cpio.file("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n")
    cpio.file("init", init_script.encode(), 0o755)
    return cpio.finish()


# --------------------------------------------------------------------------- guest script

GUEST_PRELUDE = r"""#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
TAB="$(printf '\t')"
KVER="$(uname -r)"
NREADS=__NREADS__

rec() { # kind config key value...
  printf 'VML\t%s\n' "$(IFS="$TAB"; echo "$*")"
}
blob() { # config name file
  echo "VML-BLOB-BEGIN	$1	$2"
  cat "$3"
  echo "VML-BLOB-END"
}
now() { cut -d' ' -f1 /proc/uptime; }
reading() { # config phase index
  sync
  echo 3 > /proc/sys/vm/drop_caches
  echo 1 > /proc/sys/vm/stat_refresh 2>/dev/null
  awk -v c="$1" -v p="$2" -v i="$3" -v vk="__VMSTAT__" -v mk="__MEMINFO__" '
    BEGIN { split(vk, vks, " "); split(mk, mks, " "); pcp = 0 }
    FILENAME == "/proc/vmstat" { v[$1] = $2 }
    FILENAME == "/proc/zoneinfo" && $1 == "count:" { pcp += $2 }
    FILENAME == "/proc/meminfo" { k = $1; sub(":", "", k); m[k] = $2 }
    END {
      line = "VML\tread\t" c "\t" p "\t" i "\tpcp=" pcp
      for (j in vks) if (vks[j] in v) line = line " " vks[j] "=" v[vks[j]]
      for (j in mks) if (mks[j] in m) line = line " " mks[j] "_kb=" m[mks[j]]
      print line
    }' /proc/vmstat /proc/zoneinfo /proc/meminfo
}
readings() { # config phase
  n=0
  while [ $n -lt $NREADS ]; do reading "$1" "$2" $n; n=$((n + 1)); done
}
attrs() { # config tag dir
  [ -d "$3" ] || return 0
  rec path "$1" "$2" "$(readlink -f "$3")"
  for a in __ATTRS__; do
    if [ -f "$3/$a" ]; then
      rec attr "$1" "$2" "$a" "$(tr '\n' ' ' < "$3/$a" 2>/dev/null)"
    fi
  done
}
dax_attrs() { # config
  for d in /sys/bus/dax/devices/*; do
    [ -d "$d" ] || continue
    b="${d##*/}"
    attrs "$1" "dax:$b" "$d"
    for mp in "$d"/mapping*; do
      [ -d "$mp" ] && attrs "$1" "dax:$b:${mp##*/}" "$mp"
    done
  done
}
measure_ns() { # config size align map pad
  padns=""
  if [ "$5" != 0 ]; then
    if ndctl create-namespace -r region0 --mode=raw --size="$5" > /tmp/pad.json 2> /tmp/pad.err
    then
      padns=$(grep -o '"dev":"[^"]*"' /tmp/pad.json | head -n 1 | cut -d'"' -f4)
      attrs "$1" pad "/sys/bus/nd/devices/$padns"
    else
      rec error "$1" "pad create failed: $(tr '\n' ' ' < /tmp/pad.err)"
    fi
  fi
  readings "$1" before
  t0=$(now)
  if ndctl create-namespace -r region0 --mode=devdax --align="$3" --map="$4" \
       --size="$2" > /tmp/create.json 2> /tmp/create.err; then
    t1=$(now)
    rec time "$1" create_s "$t0" "$t1"
    blob "$1" ndctl_create /tmp/create.json
    ns=$(grep -o '"dev":"[^"]*"' /tmp/create.json | head -n 1 | cut -d'"' -f4)
    attrs "$1" namespace "/sys/bus/nd/devices/$ns"
    holder=$(cat "/sys/bus/nd/devices/$ns/holder" 2>/dev/null)
    [ -n "$holder" ] && attrs "$1" nd_dax "/sys/bus/nd/devices/$holder"
    dax_attrs "$1"
    readings "$1" after_create
    t0=$(now)
    if ndctl destroy-namespace -f "$ns" > /tmp/destroy.out 2>&1; then
      rec time "$1" destroy_s "$t0" "$(now)"
    else
      rec error "$1" "destroy failed: $(tr '\n' ' ' < /tmp/destroy.out)"
    fi
  else
    rec error "$1" "create failed: $(tr '\n' ' ' < /tmp/create.err)"
  fi
  readings "$1" after_destroy
  [ -n "$padns" ] && ndctl destroy-namespace -f "$padns" > /dev/null 2>&1
  return 0
}
measure_control() { # config
  readings "$1" before
  readings "$1" after_create
  readings "$1" after_destroy
}

echo "__BEGIN__"
rec time boot uptime "$(now)"
for m in $(cat /lib/modules/$KVER/load-order); do
  insmod /lib/modules/$KVER/$m.ko || rec error boot "insmod $m failed"
done
i=0
while [ ! -d /sys/bus/nd/devices/region0 ] && [ $i -lt 120 ]; do sleep 1; i=$((i + 1)); done
rec fact boot uname_r "$KVER"
rec fact boot cmdline "$(cat /proc/cmdline)"
rec fact boot pdpe1gb "$(grep -c -w pdpe1gb /proc/cpuinfo)"
rec fact boot nr_cpus "$(grep -c ^processor /proc/cpuinfo)"
rec fact boot ndctl_version "$(ndctl --version)"
SYMS='section_nr_vmemmap_pages|memmap_pages_add|memmap_boot_pages_add'
SYMS="$SYMS|vmemmap_populate_compound_pages|vmemmap_can_optimize"
rec fact boot kallsyms "$(grep -o -w -E "(__)?($SYMS)" /proc/kallsyms | sort -u | tr '\n' ' ')"
grep -i -E 'persistent|pmem' /proc/iomem > /tmp/iomem
blob boot iomem /tmp/iomem
ndctl disable-region all > /tmp/lbl 2>&1
ndctl init-labels -f all >> /tmp/lbl 2>&1
ndctl enable-region all >> /tmp/lbl 2>&1
blob boot labels /tmp/lbl
attrs boot region /sys/bus/nd/devices/region0
ndctl list -R -N -D > /tmp/list.json 2>&1
blob boot ndctl_list /tmp/list.json
"""

GUEST_EPILOGUE = r"""
attrs end region /sys/bus/nd/devices/region0
dmesg | grep -i -E 'nvdimm|nd_|dax|pfn|memmap|warn|bug|call trace|oom' | tail -n 60 > /tmp/dmesg
blob end dmesg /tmp/dmesg
rec time end uptime "$(now)"
echo "__END__"
sync
poweroff -f
"""


def guest_script(configs: Sequence[Config], nreads: int) -> str:
    """Return the guest /init: prelude, one measure call per config, epilogue."""
    body = []
    for c in configs:
        rec = f"rec config {c.name} {c.kind} {c.size} {c.align} {c.map} {int(c.warmup)} {c.pad}"
        body.append(rec)
        if c.kind == "control":
            body.append(f"measure_control {c.name}")
        else:
            body.append(f"measure_ns {c.name} {c.size} {c.align} {c.map} {c.pad}")
    prelude = (
        GUEST_PRELUDE.replace("__NREADS__", str(nreads))
        .replace("__VMSTAT__", " ".join(VMSTAT_KEYS))
        .replace("__MEMINFO__", " ".join(MEMINFO_KEYS))
        .replace("__ATTRS__", " ".join(SYSFS_ATTRS))
        .replace("__BEGIN__", MARK_BEGIN)
    )
    return prelude + "\n".join(body) + GUEST_EPILOGUE.replace("__END__", MARK_END)


# --------------------------------------------------------------------------- qemu


@dataclasses.dataclass
class Machine:
    """Guest machine geometry."""

    ram_mib: int = 2048
    nvdimm_gib: int = 18
    cpu: str = "max"
    label_kib: int = 128
    smp: int = 2


def qemu_command(qemu: str, kernel: Path, initrd: Path, backing: Path, m: Machine) -> list[str]:
    """Return the qemu-system-x86_64 command line."""
    nv_bytes = m.nvdimm_gib * GIB + m.label_kib * KIB
    maxmem_mib = m.ram_mib + (nv_bytes + 2 * GIB) // MIB
    append = "console=ttyS0 rdinit=/init nokaslr quiet loglevel=3 panic=-1"
    return [
        qemu,
        "-machine",
        "pc,nvdimm=on",
        "-cpu",
        m.cpu,
        "-smp",
        str(m.smp),
        "-m",
        f"{m.ram_mib}M,slots=4,maxmem={maxmem_mib}M",
        "-accel",
        "tcg",
        "-nographic",
        "-no-reboot",
        "-object",
        f"memory-backend-file,id=nvmem0,share=on,mem-path={backing},size={nv_bytes},align=1G",
        "-device",
        f"nvdimm,id=nvdimm0,memdev=nvmem0,label-size={m.label_kib}K",
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        "-append",
        append,
    ]


def make_backing(path: Path, m: Machine) -> None:
    """Create a fresh sparse NVDIMM backing file."""
    if path.exists():
        path.unlink()
    with open(path, "wb") as f:
        f.truncate(m.nvdimm_gib * GIB + m.label_kib * KIB)


def boot(cmd: Sequence[str], log: Path, timeout: float) -> tuple[str, float]:
    """Run qemu with a hard timeout; return (console text, seconds)."""
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            text = log.read_text(errors="replace")
            where = "after its start marker" if MARK_BEGIN in text else "before its start marker"
            raise HarnessError(
                f"guest did not finish in {timeout:.0f} s (stopped {where}); console log kept at {log}"
            ) from None
    return log.read_text(errors="replace"), time.monotonic() - t0


# --------------------------------------------------------------------------- parsing


def _parse_kv(text: str) -> dict[str, int]:
    out = {}
    for item in text.split():
        key, _, val = item.partition("=")
        if val.lstrip("-").isdigit():
            out[key] = int(val)
    return out


def parse_console(text: str) -> dict:
    """Turn the guest's records into a structured dict."""
    panic = re.search(r"Kernel panic - [^\r\n]*", text)
    why = f": {panic.group(0)}" if panic else ""
    if MARK_BEGIN not in text:
        raise HarnessError(f"start marker not found in the guest console output{why or ' (boot failed?)'}")
    if MARK_END not in text:
        raise HarnessError(f"end marker not found in the guest console output{why or ' (guest died?)'}")
    text = text.split(MARK_BEGIN, 1)[1].split(MARK_END, 1)[0].replace("\r", "")
    facts: dict = {}
    blobs: dict = {}
    errors: list[dict] = []
    configs: dict[str, dict] = {}
    order: list[str] = []

    def cfg(name: str) -> dict:
        return configs.setdefault(
            name, {"readings": {}, "sysfs": {}, "sysfs_paths": {}, "timing": {}, "errors": []}
        )

    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("VML-BLOB-BEGIN\t"):
            _, owner, name = line.split("\t")
            chunk = []
            for inner in lines:
                if inner == "VML-BLOB-END":
                    break
                chunk.append(inner)
            blob_text = "\n".join(chunk)
            try:
                value = json.loads(blob_text)
            except ValueError:
                value = blob_text
            if owner in ("boot", "end"):
                blobs[f"{owner}_{name}"] = value
            else:
                cfg(owner)[name] = value
            continue
        if not line.startswith(RECORD + "\t"):
            continue
        parts = line.split("\t")[1:]
        kind = parts[0]
        if kind == "read":
            _, name, phase, idx, kv = parts[:5]
            reading = {"i": int(idx), **_parse_kv(kv)}
            cfg(name)["readings"].setdefault(phase, []).append(reading)
        elif kind == "config":
            name, ckind, size, align, mapping, warm, pad = parts[1:8]
            order.append(name)
            cfg(name).update(
                name=name,
                kind=ckind,
                size=int(size),
                align=align,
                map=mapping,
                warmup=warm == "1",
                pad=int(pad),
            )
        elif kind == "attr":
            name, tag, attr, value = (parts[1:5] + [""])[:4]
            if name in ("boot", "end"):
                target, key = facts.setdefault("sysfs", {}), f"{name}:{tag}"
            else:
                target, key = cfg(name)["sysfs"], tag
            target.setdefault(key, {})[attr] = value.strip()
        elif kind == "path":
            name, tag, value = parts[1:4]
            if name not in ("boot", "end"):
                cfg(name)["sysfs_paths"][tag] = value
        elif kind == "time":
            name, key = parts[1:3]
            vals = [float(v) for v in parts[3:]]
            if name in ("boot", "end"):
                facts[f"uptime_{name}"] = vals[0]
            else:
                cfg(name)["timing"][key] = round(vals[-1] - vals[0], 2)
        elif kind == "fact":
            facts[parts[2]] = parts[3] if len(parts) > 3 else ""
        elif kind == "error":
            entry = {"where": parts[1], "message": "\t".join(parts[2:])}
            (cfg(parts[1])["errors"] if parts[1] in configs else errors).append(entry)
    return {
        "facts": facts,
        "blobs": blobs,
        "errors": errors,
        "configs": [configs[n] for n in order],
    }


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


def columnar(config: dict) -> dict:
    """Store each reading as a list in ``reading_fields()`` order (keeps the JSON small)."""
    fields = reading_fields()
    out = dict(config)
    out["readings"] = {
        phase: [[r.get(f) for f in fields] for r in rows] for phase, rows in config["readings"].items()
    }
    return out


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
