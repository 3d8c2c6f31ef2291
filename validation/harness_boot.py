"""Harness step 3, boot: the QEMU machine (NVDIMM backing file, command line) and a boot with a
timeout that kills the guest and reports."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from harness_common import GIB, KIB, MARK_BEGIN, MIB, HarnessError


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
