#!/usr/bin/env python3
"""Generate ``vmemlab/layouts/linux-<version>.json`` from a packaged kernel's debug info.

Reads the DWARF of the ``vmlinux`` shipped in Debian's ``linux-image-<version>-dbg`` package
with drgn's type API (no kernel is run) and writes, per kernel:

* ``struct page`` and ``struct folio``: every named member, flattened through anonymous
  unions/structs, with byte offset, size and C type (folio members also as page index and
  offset inside that struct page);
* enumerators of ``enum pageflags``, ``enum zone_type``, ``enum pagetype`` (6.12) and
  ``enum compound_dtor_id`` (6.1) -- whichever the debug info has;
* the ``page->flags`` field positions (node, zone, last_cpupid, LRU gen/refs).  These are
  preprocessor macros (include/linux/page-flags-layout.h, include/linux/mm.h ``*_PGOFF``), absent
  from DWARF, so they are *computed* here from the package's ``/boot/config-<version>``
  (``CONFIG_NODES_SHIFT``, ``CONFIG_NR_CPUS``, ``CONFIG_NUMA_BALANCING``, ``CONFIG_LRU_GEN``,
  ``CONFIG_KASAN_SW_TAGS``, ``CONFIG_SPARSEMEM_VMEMMAP``) plus the DWARF enumerators
  ``__NR_PAGEFLAGS`` and ``__MAX_NR_ZONES``, following the header's arithmetic; the values are
  then checked against dumped struct pages (``validation/test_layouts.py``: ZONE_DEVICE pages'
  zone bits, and the all-ones last_cpupid field that ``page_cpupid_reset_last()`` writes);
* a few config values the model uses (``CONFIG_ILLEGAL_POINTER_VALUE`` for ``TAIL_MAPPING``).

The schema is described in ``validation/README.md`` ("Layouts") and in the JSON's own
``schema`` key.  Usage::

    python3 validation/gen_layouts.py VMLINUX CONFIG [--package P] [--out FILE]
    python3 validation/gen_layouts.py --all      # every vmlinux under validation/.cache/dbg
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE.parent / "vmemlab" / "layouts"
CACHE = HERE / ".cache"
SCHEMA = 1
BITS_PER_LONG = 64


def read_config(path: Path) -> dict[str, str]:
    """``CONFIG_X=value`` lines of a kernel .config (``is not set`` lines are skipped)."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"(CONFIG_\w+)=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip('"')
    return out


def _type_name(t) -> str:
    try:
        return t.type_name()
    except Exception:  # noqa: BLE001 - drgn raises for some anonymous types
        return str(t.kind)


def flatten(t, base: int = 0, prefix: str = "", depth: int = 0) -> list[dict]:
    """Named members of struct/union ``t`` (recursing through anonymous ones and, to depth 3,
    into named struct/union members other than the ``struct page __page_N`` overlays of
    ``struct folio``) as {path, offset, size, type}; bit fields get ``bits``."""
    import drgn

    out = []
    for mem in t.members:
        off = base + mem.bit_offset // 8
        mt = mem.type
        under = mt.unaliased() if hasattr(mt, "unaliased") else mt
        if mem.name is None:
            out += flatten(under, off, prefix, depth)
            continue
        path = prefix + mem.name
        entry = {"path": path, "offset": off, "size": _safe_size(under), "type": _type_name(mt)}
        if mem.bit_field_size:
            entry["bit_offset"] = mem.bit_offset % 8
            entry["bits"] = mem.bit_field_size
        out.append(entry)
        if (under.kind in (drgn.TypeKind.STRUCT, drgn.TypeKind.UNION) and depth < 3
                and under.type_name() != "struct page"):
            out += flatten(under, off, path + ".", depth + 1)
    return out


def _safe_size(t) -> int | None:
    try:
        return t.size if t.size is not None else None
    except Exception:  # noqa: BLE001
        return None


def enum_values(prog, name: str) -> dict[str, int] | None:
    """Enumerators of ``name`` in declaration order, or None when the debug info lacks it."""
    try:
        t = prog.type(name)
    except LookupError:
        return None
    return {e.name: int(e.value) for e in t.enumerators}


def order_base_2(n: int) -> int:
    """include/linux/log2.h ``order_base_2``: ceil(log2(n)), 0 for n <= 1."""
    return 0 if n <= 1 else (n - 1).bit_length()


def page_flags_layout(cfg: dict[str, str], nr_pageflags: int, max_nr_zones: int,
                      lru_gen: dict[str, int] | None) -> dict:
    """``page->flags`` field widths and shifts, by include/linux/page-flags-layout.h and the
    ``*_PGOFF``/``*_PGSHIFT`` macros of include/linux/mm.h (6.1 and 6.12 read the same way for
    x86_64 with SPARSEMEM_VMEMMAP: SECTIONS_WIDTH 0)."""
    if max_nr_zones < 2:
        zones_shift = 0
    elif max_nr_zones <= 2:
        zones_shift = 1
    elif max_nr_zones <= 4:
        zones_shift = 2
    else:
        zones_shift = 3
    sections_width = 0 if cfg.get("CONFIG_SPARSEMEM_VMEMMAP") == "y" else None
    if sections_width is None:
        raise SystemExit("gen_layouts: only SPARSEMEM_VMEMMAP kernels are handled")
    nodes_shift = int(cfg.get("CONFIG_NODES_SHIFT", "0"))
    room = BITS_PER_LONG - nr_pageflags
    lru_gen_width = lru_refs_max = 0
    if cfg.get("CONFIG_LRU_GEN") == "y":
        # bounds.c: LRU_GEN_WIDTH = order_base_2(MAX_NR_GENS + 1); __LRU_REFS_WIDTH =
        # MAX_NR_TIERS - 2 (include/linux/mmzone.h: MAX_NR_GENS 4, MAX_NR_TIERS 4)
        gens = (lru_gen or {}).get("MAX_NR_GENS", 4)
        tiers = (lru_gen or {}).get("MAX_NR_TIERS", 4)
        lru_gen_width = order_base_2(gens + 1)
        lru_refs_max = tiers - 2
    kasan_tag_width = 8 if cfg.get("CONFIG_KASAN_SW_TAGS") == "y" else 0
    if zones_shift + lru_gen_width + sections_width + nodes_shift <= room:
        nodes_width = nodes_shift
    else:
        nodes_width = 0
    if cfg.get("CONFIG_NUMA_BALANCING") == "y":
        nr_cpus = int(cfg["CONFIG_NR_CPUS"])
        last_cpupid_shift = 8 + order_base_2(nr_cpus)  # LAST__PID_SHIFT + NR_CPUS_BITS
    else:
        last_cpupid_shift = 0
    used = zones_shift + lru_gen_width + sections_width + nodes_width + kasan_tag_width
    last_cpupid_width = last_cpupid_shift if used + last_cpupid_shift <= room else 0
    lru_refs_width = min(lru_refs_max, room - used - last_cpupid_width)
    sections_pgoff = BITS_PER_LONG - sections_width
    nodes_pgoff = sections_pgoff - nodes_width
    zones_pgoff = nodes_pgoff - zones_shift
    last_cpupid_pgoff = zones_pgoff - last_cpupid_width
    kasan_tag_pgoff = last_cpupid_pgoff - kasan_tag_width
    lru_gen_pgoff = kasan_tag_pgoff - lru_gen_width
    lru_refs_pgoff = lru_gen_pgoff - lru_refs_width

    def shift(off: int, width: int) -> int:
        return off * (width != 0)

    return {
        "how": ("computed: include/linux/page-flags-layout.h + include/linux/mm.h *_PGOFF "
                "arithmetic from /boot/config and the DWARF enumerators __NR_PAGEFLAGS, "
                "__MAX_NR_ZONES; checked against dumped struct pages"),
        "inputs": {"NR_PAGEFLAGS": nr_pageflags, "MAX_NR_ZONES": max_nr_zones,
                   "CONFIG_NODES_SHIFT": nodes_shift,
                   "CONFIG_NR_CPUS": int(cfg.get("CONFIG_NR_CPUS", "1")),
                   "CONFIG_NUMA_BALANCING": cfg.get("CONFIG_NUMA_BALANCING") == "y",
                   "CONFIG_LRU_GEN": cfg.get("CONFIG_LRU_GEN") == "y"},
        "SECTIONS_WIDTH": sections_width, "NODES_WIDTH": nodes_width,
        "ZONES_WIDTH": zones_shift, "LAST_CPUPID_WIDTH": last_cpupid_width,
        "KASAN_TAG_WIDTH": kasan_tag_width, "LRU_GEN_WIDTH": lru_gen_width,
        "LRU_REFS_WIDTH": lru_refs_width,
        "NODES_PGSHIFT": shift(nodes_pgoff, nodes_width),
        "ZONES_PGSHIFT": shift(zones_pgoff, zones_shift),
        "LAST_CPUPID_PGSHIFT": shift(last_cpupid_pgoff, last_cpupid_width),
        "KASAN_TAG_PGSHIFT": shift(kasan_tag_pgoff, kasan_tag_width),
        "LRU_GEN_PGOFF": lru_gen_pgoff, "LRU_REFS_PGOFF": lru_refs_pgoff,
    }


def _is_atomic(t) -> bool:
    """atomic_t / atomic_long_t: a struct whose only member is ``counter``."""
    import drgn

    u = t.unaliased()
    return (u.kind == drgn.TypeKind.STRUCT and len(u.members) == 1
            and u.members[0].name == "counter")


def _signed(t) -> bool:
    import drgn

    u = t.unaliased()
    if _is_atomic(u):
        u = u.members[0].type.unaliased()
    if u.kind == drgn.TypeKind.ENUM:
        u = u.type
    return bool(getattr(u, "is_signed", False)) if u.kind == drgn.TypeKind.INT else False


def leaves(t, base: int = 0, prefix: str = "") -> dict[str, list]:
    """Leaf members of ``t`` as {name: [offset, size, signed]}: nested names joined with
    ``_`` (``lru.next`` -> ``lru_next``), atomics kept whole, anonymous members flattened; the
    first occurrence of a name wins.  ``struct page __page_N`` overlays are skipped."""
    import drgn

    out: dict[str, list] = {}
    for mem in t.members:
        off = base + mem.bit_offset // 8
        u = mem.type.unaliased()
        if mem.name is None:
            for k, v in leaves(u, off, prefix).items():
                out.setdefault(k, v)
            continue
        name = prefix + mem.name
        if u.kind in (drgn.TypeKind.STRUCT, drgn.TypeKind.UNION) and not _is_atomic(u):
            if u.type_name() == "struct page":
                continue
            for k, v in leaves(u, off, name + "_").items():
                out.setdefault(k, v)
            continue
        if mem.bit_field_size:
            continue
        out.setdefault(name, [off, u.size if u.kind != drgn.TypeKind.ARRAY else u.size,
                              _signed(mem.type)])
    return out


def _tail_union_structs(page) -> dict[str, dict[str, list]]:
    """<= 6.1: the anonymous structs of struct page's big union that describe the first tail
    ("compound_dtor") and second tail ("_compound_pad_1") pages, as leaves."""
    import drgn

    found: dict[str, dict[str, list]] = {}

    def walk(t, base: int) -> None:
        for mem in t.members:
            u = mem.type.unaliased()
            off = base + mem.bit_offset // 8
            if mem.name is None and u.kind == drgn.TypeKind.STRUCT:
                names = {m.name for m in u.members}
                if "compound_dtor" in names:
                    found["page1"] = leaves(u, off)
                elif "_compound_pad_1" in names:
                    found["page2"] = leaves(u, off)
            if mem.name is None and u.kind == drgn.TypeKind.UNION:
                walk(u, off)

    walk(page, 0)
    return found


def brief_keys(prog, version: str, package: str, page, folio, pageflags: dict,
               zones: dict, layout: dict, config_note: str) -> dict:
    """The keys of the shared layout schema (/work/wt/_brief/layout-schema.md, agreed with the
    page.py loader): variant, release, page, page1.., pageflags, zones, flags_layout."""
    import drgn

    sp = page.size
    fl = leaves(folio)
    tails: dict[str, dict[str, list]] = {}
    for key, (lo, hi) in {"page1": (sp, 2 * sp), "page2": (2 * sp, 3 * sp),
                          "page3": (3 * sp, 4 * sp)}.items():
        d = {k: [v[0] - lo, v[1], v[2]] for k, v in fl.items() if lo <= v[0] < hi}
        if d:
            tails[key] = d
    for key, d in _tail_union_structs(page).items():
        merged = dict(tails.get(key, {}))
        for k, v in d.items():
            merged.setdefault(k, v)
        tails[key] = merged
    nr = pageflags["__NR_PAGEFLAGS"]
    seen: set[int] = set()
    pf = {}
    for k, v in pageflags.items():
        if v < nr and v not in seen:
            pf[k] = v
            seen.add(v)
    pf["__NR_PAGEFLAGS"] = nr
    subpage = {}
    for name in ("SUBPAGE_INDEX_SUBPOOL", "SUBPAGE_INDEX_CGROUP", "SUBPAGE_INDEX_CGROUP_RSVD",
                 "__MAX_CGROUP_SUBPAGE_INDEX", "SUBPAGE_INDEX_HWPOISON", "__NR_USED_SUBPAGE"):
        try:
            subpage[name] = int(prog.object(name).value_())
        except (LookupError, ValueError):
            pass
    release = re.match(r"(\d+\.\d+(?:\.\d+)?)", version).group(1)
    variant = "6.1" if release.startswith("6.1.") or release == "6.1" else release
    if variant.startswith("6.1.0"):
        variant = "6.1"
    return {
        "variant": variant,
        "release": version,
        "package": package,
        "generator": f"validation/gen_layouts.py (drgn {drgn.__version__})",
        "page": leaves(page),
        **{k: tails.get(k, {}) for k in ("page1", "page2", "page3")},
        "pageflags": pf,
        "pagetype": enum_values(prog, "enum pagetype") or {},
        "zones": {k: v for k, v in zones.items() if not k.startswith("__")},
        "hugetlb_subpage_index": subpage,
        "flags_layout": {k: layout[k] for k in (
            "NODES_PGSHIFT", "NODES_WIDTH", "ZONES_PGSHIFT", "ZONES_WIDTH",
            "LAST_CPUPID_PGSHIFT", "LAST_CPUPID_WIDTH", "SECTIONS_WIDTH", "KASAN_TAG_WIDTH",
            "LRU_GEN_WIDTH", "LRU_GEN_PGOFF", "LRU_REFS_WIDTH", "LRU_REFS_PGOFF")},
        "flags_layout_source": layout["how"] + "; " + config_note,
    }


def generate(vmlinux: Path, config: Path, package: str | None = None) -> dict:
    """Build the layout dict for one kernel."""
    import drgn

    prog = drgn.Program()
    mod = prog.extra_module(str(vmlinux), create=True)
    mod.try_file(str(vmlinux), force=True)
    cfg = read_config(config)
    version = vmlinux.name.removeprefix("vmlinux-")
    page = prog.type("struct page")
    folio = prog.type("struct folio")
    sp = page.size
    folio_fields = flatten(folio)
    for f in folio_fields:
        f["page"], f["page_offset"] = divmod(f["offset"], sp)
    pageflags = enum_values(prog, "enum pageflags")
    zones = enum_values(prog, "enum zone_type")
    layout = page_flags_layout(cfg, pageflags["__NR_PAGEFLAGS"], zones["__MAX_NR_ZONES"], None)
    enums = {}
    for name in ("enum pageflags", "enum zone_type", "enum pagetype", "enum compound_dtor_id",
                 "enum pageblock_bits"):
        vals = enum_values(prog, name)
        if vals is not None:
            enums[name] = vals
    illegal = int(cfg.get("CONFIG_ILLEGAL_POINTER_VALUE", "0"), 0)
    release = re.match(r"(\d+\.\d+(?:\.\d+)?)", version).group(1)
    pkg = package or f"linux-image-{version}-dbg"
    inputs = layout["inputs"]
    note = ("inputs " + ", ".join(f"{k}={v}" for k, v in inputs.items())
            + f" (config-{version})")
    return {
        "schema": SCHEMA,
        **brief_keys(prog, version, pkg, page, folio, pageflags, zones, layout, note),
        "kernel": {
            "version": version,
            "release": release,
            "package": pkg,
            "arch": "x86_64",
        },
        "source": {
            "debug_info": f"usr/lib/debug/boot/vmlinux-{version} (DWARF, read with drgn "
                          f"{drgn.__version__} type API)",
            "config": f"boot/config-{version} from linux-image-{version}",
            "generator": "validation/gen_layouts.py",
        },
        "sizeof": {"struct page": sp, "struct folio": folio.size},
        "struct_page": flatten(page),
        "struct_folio": folio_fields,
        "enums": enums,
        "page_flags_layout": layout,
        "config": {k: cfg.get(k) for k in (
            "CONFIG_ILLEGAL_POINTER_VALUE", "CONFIG_NODES_SHIFT", "CONFIG_NR_CPUS",
            "CONFIG_NUMA_BALANCING", "CONFIG_LRU_GEN", "CONFIG_SPARSEMEM_VMEMMAP",
            "CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP", "CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP_DEFAULT_ON",
            "CONFIG_INIT_ON_ALLOC_DEFAULT_ON", "CONFIG_INIT_ON_FREE_DEFAULT_ON",
            "CONFIG_ZONE_DEVICE", "CONFIG_MEMORY_FAILURE", "CONFIG_PGTABLE_LEVELS",
            "CONFIG_X86_5LEVEL", "CONFIG_MEMCG", "CONFIG_PAGE_EXTENSION")},
        "constants": {
            "POISON_POINTER_DELTA": illegal,
            "TAIL_MAPPING": illegal + 0x400,
            "TAIL_MAPPING_note": "include/linux/poison.h: (void *)0x400 + POISON_POINTER_DELTA",
        },
    }


def dump(layout: dict) -> str:
    """Compact JSON: one field per line."""
    text = json.dumps(layout, indent=1)
    text = re.sub(r"\{\n\s+(\"path\"[^{}]*?)\n\s+\}",
                  lambda m: "{" + re.sub(r"\n\s+", " ", m.group(1)) + "}", text)
    return text + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("vmlinux", nargs="?", type=Path)
    p.add_argument("config", nargs="?", type=Path)
    p.add_argument("--package")
    p.add_argument("--out", type=Path)
    p.add_argument("--all", action="store_true", help="every vmlinux under validation/.cache/dbg")
    a = p.parse_args(argv)
    jobs = []
    if a.all:
        for vm in sorted((CACHE / "dbg/usr/lib/debug/boot").glob("vmlinux-*")):
            ver = vm.name.removeprefix("vmlinux-")
            jobs.append((vm, CACHE / "cfg/boot" / f"config-{ver}", None, None))
    elif a.vmlinux and a.config:
        jobs.append((a.vmlinux, a.config, a.package, a.out))
    else:
        p.error("give VMLINUX CONFIG or --all")
    for vm, cf, pkg, out in jobs:
        lay = generate(vm, cf, pkg)
        out = out or OUT_DIR / f"linux-{lay['kernel']['version']}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(dump(lay))
        print(f"gen_layouts: wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
