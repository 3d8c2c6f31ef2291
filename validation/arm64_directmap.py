#!/usr/bin/env python3
"""Measure the arm64 direct map of a hot-added pmem range on Debian's arm64 kernel.

Boots ``linux-image-6.12.*-arm64`` under ``qemu-system-aarch64 -M virt`` (TCG) with 6 GiB of
guest RAM of which the kernel uses 2 GiB (``mem=2G``: QEMU rewrites the device tree's memory
node to the whole RAM, so the limit is on the command line) and sees 4 GiB, at 3 GiB, as a
``pmem-region`` (``drivers/nvdimm/of_pmem.c``): no UEFI or ACPI NFIT needed.  The region's
label-less raw namespace is bound to nd_pmem at boot, which ``devm_memremap_pages`` it
(MEMORY_DEVICE_FS_DAX: ``pagemap_range`` -> ``arch_add_memory``, direct map + memmap in RAM).
The guest reads free pages (buddy + per-CPU lists, after drop_caches; 5 reads per phase) bound
(``before``), after unbinding it from nd_pmem (``unbound``: hot-remove) and after binding it
again (``rebound``: hot-add).  Each change is the memmap (4 GiB / 64 = 16384 pages, also in
``nr_memmap_pages``) plus the page tables, of which the direct map's are all but a handful.
(Turning the namespace into device-dax through the nd dax seed's sysfs files failed in this
guest with -ENODEV on bind, so the fsdax-style pgmap of the raw namespace is measured; it is
hot-added by the same ``arch_add_memory``.)  Two boots: the packaged defaults, and
``rodata=on kfence.sample_interval=100``, where ``can_set_direct_map()`` is false (rodata not
full, KFENCE initialised early) and block mappings are allowed.  By the source, Debian's
``CONFIG_KFENCE_SAMPLE_INTERVAL=0`` alone keeps it true (``arm64_kfence_can_set_direct_map``),
so ``rodata=on`` by itself would not allow blocks.

Writes ``validation/results/arm64-directmap-<release>.json``.  Needs qemu-system-arm,
device-tree-compiler, and the arm64 packages (``dpkg --add-architecture arm64``); the
.debs go to ``--cache`` (default /tmp/vmemlab-arm64).

    python3 validation/arm64_directmap.py [--cache DIR] [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import harness  # noqa: E402  (module loading, cpio writer: arch-independent parts)

MODULES = ["libnvdimm", "of_pmem", "nd_pmem", "nd_btt", "dax_pmem", "device_dax"]
RAM_GIB, PMEM_START_GIB, PMEM_GIB = 2, 3, 4   # RAM at 1 GiB (virt), pmem [3 GiB, 7 GiB)
READS = 5
#: the packaged defaults, then a boot where can_set_direct_map() is false: rodata not full
#: AND KFENCE initialised early (Debian's CONFIG_KFENCE_SAMPLE_INTERVAL=0 leaves it to late
#: init, and arm64_kfence_can_set_direct_map() is then true whatever rodata says)
BOOTS = (("default", ""), ("blocks", "rodata=on kfence.sample_interval=100"))

INIT = r"""#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev
mkdir -p /tmp
for m in $(cat /modules.order); do insmod /lib/modules/$m.ko; done
sleep 1
reads() {
  for i in 1 2 3 4 5; do sync; echo 3 > /proc/sys/vm/drop_caches
    echo "VML $1 $(grep -E '^nr_free_pages ' /proc/vmstat | cut -d' ' -f2) \
$(grep -E '^ +count: ' /proc/zoneinfo | awk '{s+=$2} END {print s}') \
$(grep -E '^nr_memmap_pages ' /proc/vmstat | cut -d' ' -f2) \
$(grep -E '^nr_memmap_boot_pages ' /proc/vmstat | cut -d' ' -f2) \
$(grep -E '^nr_slab_unreclaimable ' /proc/vmstat | cut -d' ' -f2) \
$(grep -E '^nr_page_table_pages ' /proc/vmstat | cut -d' ' -f2) \
$(grep VmallocUsed /proc/meminfo | tr -s ' ' | cut -d' ' -f2) \
$(grep Percpu /proc/meminfo | tr -s ' ' | cut -d' ' -f2)"
  done
}
echo VMLAB-BEGIN
echo "VMLCMD $(cat /proc/cmdline)"
ls /sys/bus/nd/devices/ | tr '\n' ' ' | sed 's/^/VMLND /'; echo
reads before
NS=$(cd /sys/bus/nd/devices && ls -d namespace* | head -1)
echo "VMLNS $NS $(cat /sys/bus/nd/devices/$NS/size) $(cat /sys/bus/nd/devices/$NS/resource)"
echo $NS > /sys/bus/nd/drivers/nd_pmem/unbind
reads unbound
sleep 1
echo $NS > /sys/bus/nd/drivers/nd_pmem/bind 2>/tmp/err || echo "VMLERR bind $(cat /tmp/err)"
echo "VMLBOUND $(ls /sys/bus/nd/drivers/nd_pmem | tr '\n' ',') $(grep -E '^nr_memmap_pages ' /proc/vmstat)"
reads rebound
echo VMLAB-END
poweroff -f
"""


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def fetch(cache: Path) -> tuple[Path, str]:
    """Download and unpack the arm64 kernel and busybox; return (root, kernel release)."""
    deb = cache / "deb"
    deb.mkdir(parents=True, exist_ok=True)
    dep = run(["apt-cache", "depends", "linux-image-6.12-arm64:arm64"])
    pkg = re.search(r"Depends: (linux-image-6\.12[^\s:]*-arm64)", dep).group(1)
    if not list(deb.glob(f"{pkg}_*.deb")):
        run(["apt-get", "download", f"{pkg}:arm64", "busybox-static:arm64"], cwd=deb)
    root = cache / "root"
    if not root.is_dir():
        for d in deb.glob("*.deb"):
            run(["dpkg-deb", "-x", str(d), str(root)])
    kver = pkg[len("linux-image-"):]
    return root, kver


def initramfs(root: Path, kver: str) -> bytes:
    index = harness.module_index(root / "lib/modules" / kver)
    mods = harness.module_load_order(index, MODULES)
    cpio = harness.Cpio()
    for d in ("bin", "proc", "sys", "dev", "lib", "lib/modules"):
        cpio.dir(d)
    cpio.file("bin/busybox", (root / "bin/busybox").read_bytes(), 0o755)
    cpio.symlink("bin/sh", "busybox")
    for name, blob in mods:
        cpio.file(f"lib/modules/{name}.ko", blob)
    cpio.file("modules.order", "\n".join(n for n, _ in mods).encode() + b"\n")
    cpio.file("init", INIT.encode(), 0o755)
    return cpio.finish()


def dtb(cache: Path) -> Path:
    """The virt machine's device tree with a pmem-region above the RAM the kernel uses."""
    raw = cache / "virt.dtb"
    run(["qemu-system-aarch64", "-M", f"virt,dumpdtb={raw}", "-cpu", "max", "-m",
         f"{RAM_GIB + PMEM_GIB + 1}G", "-smp", "2", "-nographic"])
    dts = run(["dtc", "-q", "-I", "dtb", "-O", "dts", str(raw)])
    node = (f"\n\tpmem@{PMEM_START_GIB << 30:x} {{\n\t\tcompatible = \"pmem-region\";\n"
            f"\t\treg = <0x00 {PMEM_START_GIB << 30:#x} 0x01 0x00>;\n\t}};\n")
    dts = dts.rstrip().rstrip("};").rstrip() + node + "};\n"
    out = cache / "pmem.dtb"
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(out)], input=dts,
                   text=True, check=True)
    return out


def boot(cache: Path, root: Path, kver: str, extra: str, timeout: float) -> dict:
    kernel = root / "boot" / f"vmlinuz-{kver}"
    initrd = cache / "initrd.cpio"
    initrd.write_bytes(initramfs(root, kver))
    cmd = ["qemu-system-aarch64", "-M", "virt", "-cpu", "max", "-smp", "2", "-accel", "tcg",
           "-m", f"{RAM_GIB + PMEM_GIB + 1}G", "-nographic", "-no-reboot",
           "-kernel", str(kernel), "-initrd", str(initrd), "-dtb", str(dtb(cache)),
           "-append", f"console=ttyAMA0 rdinit=/init quiet loglevel=3 panic=-1 mem={RAM_GIB}G "
           f"{extra}".strip()]
    t = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout
    secs = time.monotonic() - t
    if "VMLAB-END" not in out:
        raise SystemExit("arm64_directmap: error: the guest did not finish: "
                         + out[-400:].replace("\n", " | "))
    fields = ["nr_free_pages", "pcp", "nr_memmap_pages", "nr_memmap_boot_pages",
              "nr_slab_unreclaimable", "nr_page_table_pages", "VmallocUsed_kb", "Percpu_kb"]
    reads: dict[str, list[dict]] = {}
    info: dict = {"cmdline_added": extra, "boot_seconds": round(secs, 1)}
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["VML"]:
            reads.setdefault(parts[1], []).append(
                dict(zip(fields, (int(x) for x in parts[2:]), strict=False)))
        elif parts[:1] in (["VMLNS"], ["VMLDAX"], ["VMLCMD"], ["VMLND"]):
            info[parts[0][3:].lower()] = parts[1:]
        elif parts[:1] in (["VMLIOMEM"], ["VMLDMESG"], ["VMLERR"], ["VMLDRV"], ["VMLBOUND"]):
            info.setdefault(parts[0][3:].lower(), []).append(" ".join(parts[1:]))
    info["reads"] = reads
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache", type=Path, default=Path("/tmp/vmemlab-arm64"))
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    root, kver = fetch(args.cache)
    result = {"schema": 1, "kernel": kver, "machine": {
        "qemu": "virt, -cpu max, TCG", "ram_gib": RAM_GIB, "ram_start": 1 << 30,
        "pmem_start": PMEM_START_GIB << 30, "pmem_bytes": PMEM_GIB << 30},
        "config": {k: v for k, v in re.findall(
            r"^(CONFIG_(?:RODATA_FULL_DEFAULT_ENABLED|KFENCE|KFENCE_SAMPLE_INTERVAL|"
            r"ARM64_4K_PAGES|DEBUG_PAGEALLOC))=(.*)$",
            (root / "boot" / f"config-{kver}").read_text(), re.M)},
        "boots": {}}
    for name, extra in BOOTS:
        result["boots"][name] = boot(args.cache, root, kver, extra, args.timeout)
    out = args.out or HERE / "results" / f"arm64-directmap-{kver}.json"
    out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
