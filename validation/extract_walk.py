"""Walk a dumped guest's vmemmap with drgn (the ``extract`` half of ``dumpwalk.py``).

Opens ``dump0.elf`` (guest RAM, with the VMCOREINFO note qemu's vmcoreinfo device stores) as a
Linux kernel core, loads the -dbg ``vmlinux`` of the same build, and adds ``dump1.elf``, … (the
memmap-holding start of every ``map=dev`` namespace) as extra physical memory segments.  For
every ``struct dev_pagemap`` in ``pgmap_array`` it walks the page tables of ``init_mm`` from
``pgd`` (4- or 5-level as the guest ran) over the vmemmap of each range, and records per
namespace the statistics and the sampled struct-page words listed in ``validation/README.md``
("Page-for-page").  All values come from the dump; nothing is derived from the model.
"""

from __future__ import annotations

import collections
import json
import struct
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PAGE = 4096
PTE_PFN_MASK = 0x000FFFFFFFFFF000
PRESENT, PSE, RW, NX = 1, 0x80, 2, 1 << 63


def elf_loads(path: Path) -> list[tuple[int, int, int]]:
    """(paddr, file offset, filesz) of every PT_LOAD of an ELF64 core."""
    with open(path, "rb") as f:
        hdr = f.read(64)
        phoff, = struct.unpack_from("<Q", hdr, 32)
        phentsize, phnum = struct.unpack_from("<HH", hdr, 54)
        f.seek(phoff)
        ph = f.read(phentsize * phnum)
    out = []
    for i in range(phnum):
        p_type, _flags, off, _vaddr, paddr, filesz, _memsz, _align = struct.unpack_from(
            "<IIQQQQQQ", ph, i * phentsize)
        if p_type == 1 and filesz:
            out.append((paddr, off, filesz))
    return out


class PhysMem:
    """Physical memory of the dumps, read with numpy memmaps (page tables, frames)."""

    def __init__(self, files: list[Path]) -> None:
        self.segs = []
        for f in files:
            mm = np.memmap(f, dtype=np.uint8, mode="r")
            for paddr, off, size in elf_loads(f):
                self.segs.append((paddr, paddr + size, mm, off))
        self.segs.sort(key=lambda s: s[0])

    def read(self, addr: int, size: int) -> bytes:
        for lo, hi, mm, off in self.segs:
            if lo <= addr and addr + size <= hi:
                return bytes(mm[off + addr - lo: off + addr - lo + size])
        raise LookupError(f"physical {addr:#x}+{size:#x} not in the dumps")

    def has(self, addr: int) -> bool:
        return any(lo <= addr < hi for lo, hi, _m, _o in self.segs)

    def u64s(self, addr: int, n: int) -> np.ndarray:
        return np.frombuffer(self.read(addr, 8 * n), dtype="<u8")


def open_program(dumps: list[Path], vmlinux: Path):
    """drgn Program on dump0 + vmlinux, with the other dumps added as physical segments."""
    import drgn

    prog = drgn.Program()
    prog.set_core_dump(str(dumps[0]))
    try:
        prog.load_debug_info([str(vmlinux)])
    except drgn.MissingDebugInfoError:
        pass
    for extra in dumps[1:]:
        mm = np.memmap(extra, dtype=np.uint8, mode="r")
        for paddr, off, size in elf_loads(extra):
            def reader(address, count, offset, physical, _mm=mm, _off=off):
                return bytes(_mm[_off + offset: _off + offset + count])
            prog.add_memory_segment(paddr, size, reader, True)
    return prog


class Walker:
    """init_mm page-table walk over physical memory (x86_64, 4 or 5 levels)."""

    def __init__(self, mem: PhysMem, pgd_phys: int, l5: bool) -> None:
        self.mem, self.pgd, self.l5 = mem, pgd_phys, l5
        self.cache: dict[int, np.ndarray] = {}

    def table(self, phys: int) -> np.ndarray:
        t = self.cache.get(phys)
        if t is None:
            t = self.cache[phys] = self.mem.u64s(phys, 512)
        return t

    def pmd_entry(self, va: int) -> tuple[int, int, list[int]]:
        """(PMD entry value, PMD table phys, upper tables phys) for ``va``."""
        shifts = [48, 39, 30] if self.l5 else [39, 30]
        tab = self.pgd
        uppers = [tab]
        for sh in shifts:
            e = int(self.table(tab)[(va >> sh) & 511])
            if not e & PRESENT:
                return 0, 0, uppers
            if e & PSE and sh == 30:
                raise ValueError(f"PUD leaf at {va:#x}")
            tab = e & PTE_PFN_MASK
            uppers.append(tab)
        return int(self.table(tab)[(va >> 21) & 511]), tab, uppers


def walk_range(w: Walker, va_lo: int, va_hi: int) -> dict[str, np.ndarray]:
    """Per 4 KiB vmemmap page in [va_lo, va_hi): kind (0 none, 1 PTE, 2 PMD leaf), frame pfn,
    PTE table pfn (-1 for leaves), PMD entry index (va >> 21), PTE writable bit."""
    n = (va_hi - va_lo) // PAGE
    kind = np.zeros(n, np.int8)
    frame = np.full(n, -1, np.int64)
    ptab = np.full(n, -1, np.int64)
    rw = np.zeros(n, np.int8)
    pmd_idx = ((va_lo >> 12) + np.arange(n, dtype=np.int64)) >> 9
    pmd_tables = set()
    uppers_all = set()
    va = va_lo
    while va < va_hi:
        blk_lo = va & ~((1 << 21) - 1)
        blk_hi = min(blk_lo + (1 << 21), va_hi)
        i0, i1 = (va - va_lo) // PAGE, (blk_hi - va_lo) // PAGE
        e, pmdt, ups = w.pmd_entry(va)
        uppers_all.update(ups)
        if pmdt:
            pmd_tables.add(pmdt)
        if e & PRESENT:
            base = (e & PTE_PFN_MASK) >> 12
            if e & PSE:
                kind[i0:i1] = 2
                frame[i0:i1] = base + ((va - blk_lo) // PAGE) + np.arange(i1 - i0)
                rw[i0:i1] = 1 if e & RW else 0
            else:
                ptes = w.table(base << 12)
                j0 = (va >> 12) & 511
                sel = ptes[j0: j0 + (i1 - i0)].astype(np.int64)
                present = (sel & PRESENT) != 0
                kind[i0:i1] = np.where(present, 1, 0)
                frame[i0:i1] = np.where(present, (sel & PTE_PFN_MASK) >> 12, -1)
                ptab[i0:i1] = np.where(present, base, -1)
                rw[i0:i1] = (sel & RW) != 0
        va = blk_hi
    return {"kind": kind, "frame": frame, "ptab": ptab, "pmd": pmd_idx, "rw": rw,
            "pmd_tables": sorted(pmd_tables), "upper_tables": sorted(uppers_all)}


def compound_stats(wk: dict[str, np.ndarray], head_idx: list[int], nvm: int,
                   sect_vm: int) -> dict:
    """Per compound page (its vmemmap pages ``[h, h + nvm)`` in walk index units): signature =
    for each distinct frame (first vmemmap index inside the compound page, PTE count); plus
    PTE tables, PMD entries, and frames whose PTEs span more than one section."""
    sigs: collections.Counter = collections.Counter()
    tables: collections.Counter = collections.Counter()
    pmds: collections.Counter = collections.Counter()
    cross: collections.Counter = collections.Counter()
    cross_compound = 0
    owner: dict[int, int] = {}
    for c, h in enumerate(head_idx):
        fr = wk["frame"][h: h + nvm]
        first: dict[int, int] = {}
        count: collections.Counter = collections.Counter()
        secs: dict[int, set] = collections.defaultdict(set)
        for i, f in enumerate(fr.tolist()):
            first.setdefault(f, i)
            count[f] += 1
            secs[f].add((h + i) // sect_vm if sect_vm else 0)
            if f in owner and owner[f] != c:
                cross_compound += 1
        for f in first:
            owner.setdefault(f, c)
        sig = tuple(sorted((first[f], count[f]) for f in first))
        sigs[sig] += 1
        t = wk["ptab"][h: h + nvm]
        tables[len(set(t[t >= 0].tolist()))] += 1
        pmds[len(set(wk["pmd"][h: h + nvm].tolist()))] += 1
        cross[sum(1 for f in secs if len(secs[f]) > 1)] += 1
    return {
        "compound_pages": len(head_idx),
        "vmemmap_pages_per_compound": nvm,
        "signatures": [{"frames": [list(x) for x in sig], "compound_pages": n}
                       for sig, n in sorted(sigs.items(), key=lambda kv: -kv[1])],
        "pte_tables_per_compound": {str(k): v for k, v in sorted(tables.items())},
        "pmd_entries_per_compound": {str(k): v for k, v in sorted(pmds.items())},
        "frames_spanning_sections_per_compound": {str(k): v for k, v in sorted(cross.items())},
        "ptes_reusing_another_compound_pages_frame": cross_compound,
    }


def map_excerpt(wk: dict, i0: int, n: int) -> dict:
    """Run-length excerpt of the walk from walk index ``i0``: frames and PTE tables renumbered
    in order of first appearance (0, 1, ...), kind 1 = PTE, 2 = PMD leaf, 0 = none."""
    def runs(vals: list) -> list:
        # [value, count, step]: value, value + step, ... (step 0 = repeats, 1 = new ids)
        out: list = []
        for v in vals:
            if out:
                last = out[-1]
                if last[1] == 1 and (v == last[0] or (v == last[0] + 1 and v >= 0)):
                    last[2] = v - last[0]
                    last[1] += 1
                    continue
                if last[1] > 1 and v == last[0] + last[1] * last[2]:
                    last[1] += 1
                    continue
            out.append([v, 1, 0])
        return out

    def renumber(arr) -> list:
        ids: dict = {}
        return [-1 if v < 0 else ids.setdefault(v, len(ids)) for v in arr.tolist()]

    sl = slice(i0, i0 + n)
    return {"start_index": i0, "n": int(len(wk["kind"][sl])),
            "kind": runs(wk["kind"][sl].tolist()),
            "frame": runs(renumber(wk["frame"][sl])),
            "pte_table": runs(renumber(wk["ptab"][sl]))}


def _sig_short(sig: list) -> str:
    return " ".join(f"{a}x{b}" for a, b in sig)


def cmd_extract(args) -> int:
    """``dumpwalk.py extract``: walk, write results/pagewalk-<version>.json, delete dumps."""
    import drgn
    from drgn.helpers.linux.xarray import xa_for_each

    kver = args.kernel_version
    tag = f"-{args.tag}" if getattr(args, "tag", "") else ""
    work = args.cache / f"dump-{kver}{tag}"
    run = json.loads((work / "run.json").read_text())
    req = next(e for e in run["dumps"] if "dumps" in e)
    dumps = [work / d["file"] for d in req["dumps"]]
    vmlinux = args.cache / "dbg/usr/lib/debug/boot" / f"vmlinux-{kver}"
    t0 = time.monotonic()
    prog = open_program(dumps, vmlinux)
    mem = PhysMem(dumps)
    sp = prog.type("struct page").size
    vmemmap_base = int(prog["vmemmap_base"].value_())
    page_offset_base = int(prog["page_offset_base"].value_())
    try:
        l5 = bool(prog["__pgtable_l5_enabled"].value_())
    except KeyError:
        l5 = False
    pgd_va = int(prog["init_mm"].pgd.value_())
    start_kernel_map = 0xFFFFFFFF80000000
    phys_base = prog.read_u64(prog.symbol("phys_base").address)  # asm symbol, no DWARF
    pgd_phys = pgd_va - start_kernel_map + phys_base
    w = Walker(mem, pgd_phys, l5)
    pageflags = {e.name: e.value for e in prog.type("enum pageflags").enumerators}
    pg_head = 1 << pageflags["PG_head"]
    # every dev_pagemap, once
    pgmaps = {}
    for _idx, entry in xa_for_each(prog["pgmap_array"].address_of_()):
        pm = drgn.Object(prog, "struct dev_pagemap *", entry.value_())
        pgmaps[pm.value_()] = pm
    configs = {c["name"]: c for c in run["configs"]}
    out_ns = []
    for addr, pm in sorted(pgmaps.items(), key=lambda kv: int(kv[1].range.start)):
        nr_range = int(pm.nr_range)
        shift = int(pm.vmemmap_shift)
        flags = int(pm.flags)
        altmap_valid = bool(flags & 1)  # PGMAP_ALTMAP_VALID (include/linux/memremap.h)
        alt = pm.altmap
        altmap = {k: int(getattr(alt, k)) for k in ("base_pfn", "end_pfn", "reserve", "free",
                                                     "align", "alloc")} if altmap_valid else None
        for r in range(nr_range):
            rng = pm.ranges[r] if nr_range > 1 else pm.range
            start, end = int(rng.start), int(rng.end) + 1
            spfn, epfn = start // PAGE, end // PAGE
            name = next((n for n, c in configs.items()
                         if int(c["sysfs"].get("namespace", {}).get("resource", "0"), 0) == start),
                        None)
            va_lo = vmemmap_base + spfn * sp
            va_hi = vmemmap_base + epfn * sp
            va_lo_p = va_lo & ~(PAGE - 1)
            va_hi_p = -(-va_hi // PAGE) * PAGE
            wk = walk_range(w, va_lo_p, va_hi_p)
            nvp = len(wk["kind"])
            mapped = wk["kind"] > 0
            frames = wk["frame"][mapped]
            uframes = np.unique(frames)
            on_dev = (uframes >= spfn) & (uframes < epfn)
            utabs = np.unique(wk["ptab"][wk["ptab"] >= 0])
            # PTE tables pointed to by more than one PMD entry
            tab_pmds = collections.defaultdict(set)
            for t_, p_ in zip(wk["ptab"][wk["ptab"] >= 0].tolist(),
                              wk["pmd"][wk["ptab"] >= 0].tolist()):
                tab_pmds[t_].add(p_)
            shared_tables = sum(1 for s in tab_pmds.values() if len(s) > 1)
            pmd_leaf_entries = len(set(wk["pmd"][wk["kind"] == 2].tolist()))
            # struct pages, read through the vmemmap (drgn translates the virtual address)
            first_pfn = spfn + ((altmap["reserve"] + altmap["free"]) if altmap else 0)
            nr = 1 << shift
            heads = []
            if shift:
                p = first_pfn
                while p + nr <= epfn:
                    heads.append(p)
                    p += nr
            def words(pfn: int) -> list[str]:
                raw = prog.read(vmemmap_base + pfn * sp, sp)
                return [f"{x:#018x}" for x in struct.unpack("<8Q", raw)]
            head_flags_ok = None
            if heads:
                hw = [int(words(h)[0], 16) for h in heads[:64]]
                head_flags_ok = all(f & pg_head for f in hw)
            samples = []
            def sample(role: str, pfn: int, spfn=spfn, epfn=epfn, samples=samples) -> None:
                if spfn <= pfn < epfn:
                    samples.append({"role": role, "pfn": pfn, "offset": pfn - spfn,
                                    "words": words(pfn)})
            sample("range_start", spfn)
            if altmap:
                for k_, pf in (("altmap_reserved_0", spfn), ("altmap_reserved_1", spfn + 1),
                               ("altmap_reserve_end", spfn + altmap["reserve"]),
                               ("altmap_free_last", first_pfn - 1)):
                    sample(k_, pf)
            sample("pfn_first", first_pfn)
            sect = 1 << 15  # PAGES_PER_SECTION (SECTION_SIZE_BITS 27, 4 KiB pages)
            if heads:
                h = heads[0]
                nvm = nr * sp // PAGE
                for k_, pf in (("head", h), ("tail1", h + 1), ("tail2", h + 2),
                               ("tail3", h + 3), ("tail_last", h + nr - 1)):
                    sample(k_, pf)
                for k in range(1, min(nvm, 8)):
                    sample(f"tail_vmemmap_page_{k}", h + k * (PAGE // sp))
                if nvm > 8:
                    sample(f"tail_vmemmap_page_{nvm - 1}", h + (nvm - 1) * (PAGE // sp))
                for s in range(1, nr // sect):
                    sample(f"tail_section_{s}", h + s * sect)
                    sample(f"tail_section_{s}_plus1", h + s * sect + 1)
                if len(heads) > 1:
                    sample("head_2", heads[1])
                    sample("head_2_tail1", heads[1] + 1)
                    sample("head_last", heads[-1])
                idx = [((hh * sp) - (va_lo_p - vmemmap_base)) // PAGE for hh in heads]
                cstats = compound_stats(wk, idx, nvm, (sect * sp) // PAGE)
                excerpt = map_excerpt(wk, max(idx[0] - 8, 0), min(2 * nvm, 8192) + 8)
            else:
                for k_, pf in (("base_0", first_pfn), ("base_1", first_pfn + 1),
                               ("base_mid", (first_pfn + epfn) // 2), ("base_last", epfn - 1)):
                    sample(k_, pf)
                cstats = None
                excerpt = map_excerpt(wk, 0, 1024)
            out_ns.append({
                "name": name,
                "pgmap": f"{addr:#x}",
                "pgmap_type": int(pm.type),
                "pgmap_flags": flags,
                "vmemmap_shift": shift,
                "range": [start, end],
                "pfn_range": [spfn, epfn],
                "altmap": altmap,
                "pfn_first": first_pfn,
                "vmemmap_va": [f"{va_lo:#x}", f"{va_hi:#x}"],
                "stats": {
                    "vmemmap_pages": nvp,
                    "unmapped": int((wk["kind"] == 0).sum()),
                    "pte_mapped": int((wk["kind"] == 1).sum()),
                    "pmd_leaf_mapped": int((wk["kind"] == 2).sum()),
                    "pmd_leaf_entries": pmd_leaf_entries,
                    "pte_tables": int(len(utabs)),
                    "pte_tables_on_device": int(((utabs >= spfn) & (utabs < epfn)).sum()),
                    "pte_tables_shared_by_pmd_entries": shared_tables,
                    "pmd_tables": len(wk["pmd_tables"]),
                    "distinct_frames": int(len(uframes)),
                    "frames_on_device": int(on_dev.sum()),
                    "frames_in_ram": int((~on_dev).sum()),
                    "readonly_ptes": int(((wk["kind"] == 1) & (wk["rw"] == 0)).sum()),
                    "device_frame_offsets": ([int(uframes[on_dev].min() - spfn),
                                              int(uframes[on_dev].max() - spfn)]
                                             if on_dev.any() else None),
                    "device_frames_contiguous": (bool(uframes[on_dev].max() - uframes[on_dev].min()
                                                      + 1 == on_dev.sum())
                                                 if on_dev.any() else None),
                },
                "compound": cstats,
                "heads_have_PG_head": head_flags_ok,
                "map_excerpt": excerpt,
                "samples": samples,
            })
    result = {
        "schema": 1,
        "kernel": run["kernel"],
        "qemu": run["qemu"],
        "machine": run["machine"],
        "dumps": run["dumps"],
        "guest": {k: run["guest"].get(k) for k in ("uname_r", "cmdline", "kallsyms", "pdpe1gb")},
        "kernel_facts": {
            "vmemmap_base": f"{vmemmap_base:#x}",
            "page_offset_base": f"{page_offset_base:#x}",
            "pgtable_l5_enabled": l5,
            "phys_base": f"{phys_base:#x}",
            "init_mm_pgd": f"{pgd_va:#x}",
            "sizeof_struct_page": sp,
            "PG_head": pageflags["PG_head"],
            "drgn": drgn.__version__,
        },
        "configs": [{k: c.get(k) for k in ("name", "size", "align", "map", "pad", "sysfs",
                                           "timing", "errors", "ndctl_create")}
                    for c in run["configs"]],
        "namespaces": out_ns,
        "extract_seconds": round(time.monotonic() - t0, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"pagewalk-{kver}{tag}.json"
    import harness

    out.write_text(harness.dump_json(result))
    print(f"extract: wrote {out} ({len(out_ns)} ranges, {result['extract_seconds']} s)",
          file=sys.stderr)
    for ns in out_ns:
        st = ns["stats"]
        sig = ns["compound"]["signatures"][0]["frames"] if ns["compound"] else None
        print(f"  {ns['name']}: {st} sig0={_sig_short(sig)[:80] if sig else '-'}",
              file=sys.stderr)
    if not args.keep:
        for d in dumps:
            d.unlink(missing_ok=True)
    return 0
