"""Harness step 1, fetch: host tools (qemu, apt-get) and the Debian packages, downloaded with
``apt-get download`` and unpacked (never installed on the host)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from harness_common import HarnessError, run_cmd

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
