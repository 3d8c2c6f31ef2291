"""Harness step 2, initramfs: kernel modules in load order, the shared libraries of the guest
binaries, and the newc cpio archive with ``/init``."""

from __future__ import annotations

import io
import lzma
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

from harness_common import HarnessError, run_cmd

#: Modules for the emulated NVDIMM device-dax path (dependencies added from .modinfo).
GUEST_MODULES = ("libnvdimm", "nfit", "nd_btt", "nd_pmem", "device_dax", "dax_pmem")


GUEST_BINARIES = ("usr/bin/ndctl", "usr/bin/daxctl")


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
