"""Harness step 4, measure: the configurations, the guest script that creates, reads and
destroys namespaces, and the parser of what it prints on the console."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence

from harness_common import GIB, MARK_BEGIN, MARK_END, MIB, RECORD, HarnessError

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


def columnar(config: dict) -> dict:
    """Store each reading as a list in ``reading_fields()`` order (keeps the JSON small)."""
    fields = reading_fields()
    out = dict(config)
    out["readings"] = {
        phase: [[r.get(f) for f in fields] for r in rows] for phase, rows in config["readings"].items()
    }
    return out
