"""What the struct pages of a live Linux system cost, read from /proc and /sys without root.

:func:`inspect` reads the files below under ``root`` (``/`` for the running kernel, or a
directory holding a copy of them) and uses the planners (:func:`vmemlab.plan.plan`,
:func:`vmemlab.hugetlb_plan.plan_hugetlb`, :mod:`vmemlab.direct_map`) for every figure the
kernel does not report itself.  A file it cannot read is listed with the reason, never guessed;
a file whose content does not parse raises :class:`InspectError`.

Formats followed (``Documentation/`` of 6.12):

* ``/proc/vmstat``: ``name value`` lines; ``nr_memmap_pages`` and ``nr_memmap_boot_pages``
  exist from 6.11 (15995a352474 and its 6.11-rc fixes).
* ``/proc/meminfo``: ``Name:   value kB`` (``filesystems/proc.rst``).
* ``/sys/kernel/mm/hugepages/hugepages-<size>kB/{nr_hugepages,free_hugepages,
  surplus_hugepages,resv_hugepages}`` (``ABI/testing/sysfs-kernel-mm-hugepages``).
* ``/proc/sys/vm/hugetlb_optimize_vmemmap`` (5.19+; ``admin-guide/sysctl/vm.rst``): 0/1,
  applies to HugeTLB pages allocated after it is written.
* ``/sys/bus/dax/devices/daxX.Y/{size,align,target_node,resource}``
  (``ABI/testing/sysfs-bus-dax``; ``resource`` is root-only).
* ``/sys/bus/nd/devices/``: ``namespaceX.Y/{mode,size,resource}`` and the nd ``daxX.Y``
  device claiming it: ``{mode,align,size,resource,namespace}``, where ``mode`` is where the
  memmap lives -- ``ram`` (``--map=mem``) or ``pmem`` (``--map=dev``)
  (``drivers/nvdimm/pfn_devs.c`` ``mode_show``; ``ABI/testing/sysfs-bus-nvdimm``).
* ``/proc/cpuinfo`` ``flags`` (``pdpe1gb``: 1 GiB direct-map and HugeTLB pages on x86_64),
  ``/proc/sys/kernel/osrelease``, ``/proc/sys/kernel/arch``, ``/proc/kallsyms`` (names only:
  ``section_nr_vmemmap_pages`` marks the 2026 ``nr_memmap_pages`` fix, see
  :mod:`vmemlab.kernels`).

``baseline``: a second tree read before the namespaces and pools were made; then the counters'
deltas are compared with the planner's predictions.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .arch import get_arch
from .direct_map import DirectMap
from .errors import VmemlabError
from .hugetlb_plan import plan_hugetlb
from .inspect_tree import (
    PATHS,
    InspectError,
    Tree,
    _version,
    cpu_flags,
    kernel_variant,
    parse_meminfo,
    parse_vmstat,
    rebuild_tree,
)
from .kernels import get_kernel
from .plan import plan
from .units import format_size

__all__ = ["PATHS", "InspectError", "Tree", "cpu_flags", "kernel_variant", "parse_meminfo",
           "parse_vmstat", "rebuild_tree", "Inspection", "inspect"]




# -- the report ----------------------------------------------------------------------------
@dataclass
class Inspection:
    """Everything :func:`inspect` read and computed (pages are ``PAGE_SIZE`` pages)."""

    root: str
    release: str | None
    arch: str | None
    arch_source: str
    kernel: str
    kernel_why: str
    page_size: int | None
    pdpe1gb: bool | None
    direct_map: str | None
    counters: dict[str, int | None] = field(default_factory=dict)
    meminfo: dict[str, int] = field(default_factory=dict)
    hvo_sysctl: int | None = None
    hugetlb: list[dict[str, Any]] = field(default_factory=list)
    dax: list[dict[str, Any]] = field(default_factory=list)
    namespaces: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    gbpages_source: str = ""
    notes: list[str] = field(default_factory=list)
    not_read: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain data (the CLI's ``--json``)."""
        return asdict(self)

    def table(self) -> str:
        """The report as text: counters, pools, devices, checks, what was not read."""
        ps = self.page_size or 4096
        out = [f"vmemlab inspect {self.root}: Linux {self.release or '(release not read)'}, "
               f"{self.arch or 'arch unknown'}"]
        out.append(f"  model: {self.arch or '-'} ({self.arch_source}) / kernel variant "
                   f"{self.kernel}: {self.kernel_why}")
        if self.direct_map:
            out.append(f"  direct map: {self.direct_map}"
                       + ("" if self.pdpe1gb is None else
                          f" (1 GiB pages {'on' if self.pdpe1gb else 'off'}: "
                          f"{self.gbpages_source})"))
        out.append("")
        out.append("The kernel's own counters (/proc/vmstat):")
        mem = self.meminfo.get("MemTotal")
        for k in ("nr_memmap_boot_pages", "nr_memmap_pages"):
            v = self.counters.get(k)
            if v is None:
                out.append(f"  {k:<22} not reported (the counters exist from 6.11)")
            else:
                share = f", {100 * v * ps / (mem * 1024):.3f}% of MemTotal" if mem else ""
                out.append(f"  {k:<22} {v:>10} pages = {format_size(v * ps)}{share}")
        if self.counters.get("nr_memmap_pages") and self.dax:
            out.append("  (nr_memmap_pages also counts memmap that lives on the device, map=dev, "
                       "and before the 2026 fix the full memmap of deduplicated namespaces; "
                       "RAM per device below)")
        boot = self.counters.get("nr_memmap_boot_pages")
        planned = [d["current"]["ram_pages"] for d in self.dax if d.get("current")]
        if boot is not None and self.dax and len(planned) == len(self.dax):
            tot = boot + sum(planned)
            share = f", {100 * tot * ps / (mem * 1024):.3f}% of MemTotal" if mem else ""
            out.append(f"  struct pages in RAM now: boot memmap + device-dax vmemmap (planner) "
                       f"= {tot} pages = {format_size(tot * ps)}{share}")
        dms = [(k, self.meminfo[k]) for k in ("DirectMap4k", "DirectMap2M", "DirectMap1G")
               if k in self.meminfo]
        if dms:
            out.append("  direct map now (/proc/meminfo): " + ", ".join(
                f"{k} {format_size(v * 1024)}" for k, v in dms))
        out.append("")
        out.append("HugeTLB pools (/sys/kernel/mm/hugepages):")
        hv = ("not readable" if self.hvo_sysctl is None else
              f"{self.hvo_sysctl} ({'on' if self.hvo_sysctl else 'off'} for pages allocated "
              "from now on)")
        out.append(f"  vm.hugetlb_optimize_vmemmap = {hv}")
        if not self.hugetlb:
            out.append("  no pool sizes listed")
        for h in self.hugetlb:
            line = f"  {format_size(h['size']):>5} pages: {h['nr_hugepages']}"
            if h.get("free_hugepages") is not None:
                line += f" ({h['free_hugepages']} free)"
            out.append(line)
            if "per_gib" in h:
                g = h["per_gib"]
                out.append(f"      a pool of {g['count']} would keep {g['hvo_off_pages']} vmemmap "
                           f"pages without HVO, {g['hvo_on_pages']} with"
                           + (f" (HVO n/a: {g['why_not']})" if g.get("why_not") else ""))
            if h["nr_hugepages"] and "plans" in h:
                for name, p in h["plans"].items():
                    out.append(f"      {name:<9} struct pages occupy {p['ram_pages']['packed']}"
                               f" pages ({format_size(p['ram_pages']['packed'] * ps)})"
                               + (f" to {p['ram_pages']['spread']} spread"
                                  if p['ram_pages']['spread'] != p['ram_pages']['packed']
                                  else "")
                               + (f"; HVO n/a: {p['why_not']}" if p.get("why_not") else ""))
        out.append("")
        out.append("device-dax (/sys/bus/dax/devices, /sys/bus/nd/devices):")
        if not self.dax:
            out.append("  no device-dax devices here: nothing of this kind costs struct pages "
                       "on this machine now")
        for d in self.dax:
            out.append(f"  {d['name']}: {format_size(d['size'])}" if d.get("size") is not None
                       else f"  {d['name']}: size not read")
            out.append(f"      align {format_size(d['align']) if d.get('align') else '?'}, "
                       f"map={d.get('map') or '? (no nd pfn/dax device: not from a namespace)'}")
            cur = d.get("current")
            if cur:
                out.append(f"      now: vmemmap in RAM {cur['ram_pages']} pages "
                           f"({format_size(cur['ram_pages'] * ps)}), direct-map page tables "
                           f"{cur['direct_map_pages'] if cur['direct_map_pages'] is not None else '-'}"
                           f", nr_memmap_pages {cur['nr_memmap_pages']}")
            for alt in d.get("alternatives", []):
                if "error" in alt:
                    why = alt["error"].split(": -", 1)[-1]
                    out.append(f"      {format_size(alt['align']):>4} map={alt['map']}: "
                               f"not possible: -{why}")
                    continue
                mark = "  <- now" if alt.get("current") else ""
                out.append(f"      {format_size(alt['align']):>4} map={alt['map']}: "
                           f"{alt['ram_pages']:>9} pages {format_size(alt['ram_pages'] * ps):>9}"
                           f" in RAM{mark}")
            if d.get("why_no_plan"):
                out.append(f"      not planned: {d['why_no_plan']}")
        if self.checks:
            out.append("")
            out.append("Kernel vs planner:")
            for c in self.checks:
                out.append(f"  {c['what']}: kernel {c['kernel']}, planner {c['planner']} "
                           f"-> {'agree' if c['agree'] else 'DIFFER'}")
        for n in self.notes:
            out.append(f"note: {n}")
        if self.not_read:
            out.append("")
            out.append("Not read (named, not guessed):")
            for p, why in sorted(self.not_read.items()):
                out.append(f"  {p}: {why}")
        return "\n".join(out)


def _detect_arch(t: Tree, live: bool) -> tuple[str | None, str, int | None]:
    """(vmemlab arch name, where it came from, PAGE_SIZE)."""
    raw = t.read(PATHS["arch"])
    machine = raw.strip() if raw else None
    src = "/proc/sys/kernel/arch"
    if machine is None and live:
        machine, src = platform.machine() or None, "uname"
    cpuinfo = t.read(PATHS["cpuinfo"])
    if machine is None and cpuinfo is not None:
        if re.search(r"^flags\s*:", cpuinfo, re.M):
            machine, src = "x86_64", "/proc/cpuinfo (x86 'flags' lines)"
        elif re.search(r"^CPU implementer\s*:", cpuinfo, re.M):
            machine, src = "aarch64", "/proc/cpuinfo (arm64 'CPU implementer' lines)"
    if machine == "x86_64":
        return "x86_64", src, 4096
    if machine == "aarch64":
        ps = os.sysconf("SC_PAGE_SIZE") if live and hasattr(os, "sysconf") else None
        if ps is None:
            sizes = set(t.listdir(PATHS["hugepages"]) or [])
            if "hugepages-524288kB" in sizes:
                ps = 65536
            elif "hugepages-64kB" in sizes:
                ps = 4096
            elif "hugepages-32768kB" in sizes:
                ps = 16384
        name = {4096: "arm64-4k", 16384: "arm64-16k", 65536: "arm64-64k"}.get(ps or 0)
        return name, src + ("" if name else "; page size not determined"), ps
    return None, f"{machine or 'no arch read'}: not an arch the model has", None


def _read_hugepages(t: Tree) -> list[dict[str, Any]]:
    out = []
    for d in t.listdir(PATHS["hugepages"]) or []:
        m = re.fullmatch(r"hugepages-(\d+)kB", d)
        if not m:
            continue
        base = f"{PATHS['hugepages']}/{d}"
        h: dict[str, Any] = {"name": d, "size": int(m.group(1)) * 1024}
        for f in ("nr_hugepages", "free_hugepages", "surplus_hugepages", "resv_hugepages"):
            h[f] = t.read_int(f"{base}/{f}")
        out.append(h)
    return sorted(out, key=lambda h: h["size"])


def _read_attrs(t: Tree, base: str, names: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in names:
        if f in ("mode", "namespace", "devtype", "holder"):
            text = t.read(f"{base}/{f}")
            out[f] = None if text is None else text.strip()
        else:
            out[f] = t.read_int(f"{base}/{f}", 16 if f == "resource" else 10)
    return out


def inspect(root: str | os.PathLike = "/", baseline: str | os.PathLike | None = None,
            strict: bool = False, kernel: str | None = None,
            direct_map: str | None = None, label: str | None = None,
            arch: str | None = None, release: str | None = None) -> Inspection:
    """Read ``root`` (a live ``/`` or a captured copy) and price its struct pages.

    :param baseline: a tree captured before the namespaces/pools existed: compare deltas
    :param strict: an unreadable file raises :class:`InspectError` instead of being listed
    :param kernel: force a kernel variant (default: chosen from the release and kallsyms)
    :param direct_map: force a :data:`vmemlab.direct_map.VARIANTS` name (default: from
        ``pdpe1gb`` on x86_64, base pages on arm64)
    :param label: how the report names the tree (default: ``root``)
    :param arch: a :data:`vmemlab.arch.ARCHES` name for a tree that does not say (no
        ``/proc/sys/kernel/arch`` or ``/proc/cpuinfo``); reported as given by the caller
    :param release: the kernel release for a tree without ``/proc/sys/kernel/osrelease``
    """
    t = Tree(root, strict)
    live = Path(root).resolve() == Path("/")
    rel = t.read(PATHS["osrelease"])
    if rel is not None:
        release = rel.strip()
    if arch is not None:
        a0 = get_arch(arch)
        arch, arch_src, ps = a0.name, "given by the caller", a0.PAGE_SIZE
    else:
        arch, arch_src, ps = _detect_arch(t, live)
    kallsyms = t.read(PATHS["kallsyms"])
    kvar, kwhy = kernel_variant(release, kallsyms)
    if kernel is not None:
        kvar, kwhy = get_kernel(kernel).name, "chosen by the caller"
    cpuinfo = t.read(PATHS["cpuinfo"])
    pdpe1gb = None if cpuinfo is None or arch != "x86_64" else "pdpe1gb" in cpu_flags(cpuinfo)
    vm = t.read(PATHS["vmstat"])
    vmstat = parse_vmstat(vm) if vm is not None else {}
    mi = t.read(PATHS["meminfo"])
    meminfo = parse_meminfo(mi) if mi is not None else {}
    gb_src = "pdpe1gb in /proc/cpuinfo"
    if pdpe1gb is None and arch == "x86_64" and "DirectMap2M" in meminfo:
        # arch_report_meminfo prints DirectMap1G only when direct_gbpages is set
        pdpe1gb = "DirectMap1G" in meminfo
        gb_src = "DirectMap1G line in /proc/meminfo"
    dm = direct_map
    if dm is None and arch == "x86_64":
        dm = "2m" if pdpe1gb is False else "gbpages"
    elif dm is None and arch is not None and arch.startswith("arm64"):
        dm = "pages"
    counters: dict[str, int | None] = {k: vmstat.get(k) for k in
                                       ("nr_memmap_pages", "nr_memmap_boot_pages")}
    ins = Inspection(label or str(root), release, arch, arch_src, kvar, kwhy, ps, pdpe1gb, dm, counters,
                     {k: v for k, v in meminfo.items() if k in (
                         "MemTotal", "MemFree", "Hugetlb", "HugePages_Total", "Hugepagesize",
                         "DirectMap4k", "DirectMap2M", "DirectMap1G")})
    ins.hvo_sysctl = t.read_int(PATHS["hvo"])
    ins.gbpages_source = gb_src
    ram = meminfo["MemTotal"] * 1024 if "MemTotal" in meminfo else None
    v = _version(release)
    hvo_exists = v is None or v >= (5, 14)
    # RAM as whole sections, for the spread placement's bound (pools are part of MemTotal)
    ram_sections = None
    if ram is not None and arch is not None:
        sec = 1 << get_arch(arch).section_size_bits
        ram_sections = -(-ram // sec) * sec
    # -- HugeTLB
    for h in _read_hugepages(t):
        n = h["nr_hugepages"]
        if n and arch is not None:
            plans = {}
            for name, hvo in (("HVO on", True), ("HVO off", False)):
                try:
                    p = plan_hugetlb((h["size"], n), arch, kvar, hvo and hvo_exists,
                                     ram=ram_sections, gbpages=pdpe1gb is not False)
                except VmemlabError as e:
                    h["why_no_plan"] = str(e)
                    break
                plans[name] = {"ram_pages": p.ram_pages, "split_pte_tables": p.split_pte_tables,
                               "freed_pages": p.freed_pages, "vmstat_delta": p.vmstat_delta,
                               "why_not": p.why_not if hvo else None}
            if plans:
                h["plans"] = plans
        elif arch is not None:
            # nothing allocated: what one GiB of such pages would cost, HVO on and off
            per = max(1, (1 << 30) // h["size"])
            try:
                on = plan_hugetlb((h["size"], per), arch, kvar, hvo_exists,
                                  gbpages=pdpe1gb is not False)
                off = plan_hugetlb((h["size"], per), arch, kvar, False,
                                   gbpages=pdpe1gb is not False)
                h["per_gib"] = {"count": per, "hvo_on_pages": on.ram_pages["packed"],
                                "hvo_off_pages": off.ram_pages["packed"],
                                "why_not": on.why_not}
            except VmemlabError as e:
                h["why_no_plan"] = str(e)
        ins.hugetlb.append(h)
    # -- nd namespaces and their pfn/dax devices
    nd_devs = t.listdir(PATHS["nd"]) or []
    nd_dax: dict[str, dict[str, Any]] = {}
    ns_attrs: dict[str, dict[str, Any]] = {}
    for d in nd_devs:
        base = f"{PATHS['nd']}/{d}"
        if re.fullmatch(r"namespace\d+\.\d+", d):
            a = _read_attrs(t, base, ("mode", "size"))
            if a.get("size"):          # the seed namespace (size 0) has no resource
                a.update(_read_attrs(t, base, ("resource",)))
            ns_attrs[d] = {"name": d, **a}
            ins.namespaces.append(ns_attrs[d])
        elif re.fullmatch(r"(dax|pfn)\d+\.\d+", d):
            a = _read_attrs(t, base, ("namespace",))
            if a.get("namespace"):     # a seed device claims no namespace: nothing more to read
                a.update(_read_attrs(t, base, ("mode", "align", "size", "resource")))
                # the device-dax device is a child of the nd dax device (dax0.1/dax0.0)
                kids = [k for k in (t.listdir(base) or []) if re.fullmatch(r"dax\d+\.\d+", k)]
                t.not_read.pop("/" + base, None)
                nd_dax[d] = {"name": d, **a, "children": kids}
    # -- device-dax
    for d in t.listdir(PATHS["dax"]) or []:
        base = f"{PATHS['dax']}/{d}"
        a = _read_attrs(t, base, ("size", "align", "target_node", "resource"))
        dev: dict[str, Any] = {"name": d, **a}
        nd = (next((x for x in nd_dax.values() if d in x["children"]), None)
              or next((x for x in nd_dax.values() if x.get("resource") is not None
                       and x["resource"] == a.get("resource")), None)
              or (nd_dax.get(d) if not any(x["children"] for x in nd_dax.values()) else None))
        if nd is not None:
            dev["map"] = {"ram": "mem", "pmem": "dev"}.get(nd.get("mode") or "")
            dev["nd"] = nd
            ns = ns_attrs.get(nd.get("namespace") or "")
            dev["namespace"] = ns
        ins.dax.append(dev)
        _plan_dax(ins, dev, arch, kvar, ram)
    # -- kernel vs planner
    _checks(ins, baseline, arch, kvar)
    if live and hasattr(os, "geteuid") and os.geteuid() != 0:
        ins.notes.append("not run as root: root-only files (resource, kallsyms addresses) are "
                         "named above where they were needed")
    ins.not_read = dict(t.not_read)
    return ins


def _plan_dax(ins: Inspection, dev: dict[str, Any], arch: str | None, kvar: str,
              ram: int | None) -> None:
    ns = dev.get("namespace")
    if arch is None:
        dev["why_no_plan"] = "the arch is not one the model has"
        return
    if not ns or ns.get("size") is None or dev.get("map") is None or not dev.get("align"):
        dev["why_no_plan"] = ("no nd namespace/pfn device with size, align and mode (a dax "
                              "device from hmem/CXL/kmem, or sysfs not read): its memmap "
                              "location is unknown")
        return
    start = ns.get("resource")
    if start is None:
        ins.notes.append(f"{dev['name']}: the namespace start (resource, root-only) was not "
                         "read; planned at a 1 GiB-aligned start above RAM")
    a = get_arch(arch)
    # boot RAM as the direct map saw it: MemTotal rounded up to a section (the model maps
    # [0, ram) at boot; only a namespace sharing RAM's last 1 GiB slot depends on this)
    sec = 1 << a.section_size_bits
    ram_floor = None if ram is None else -(-ram // sec) * sec
    alts = []
    cur = None
    for align in a.dax_aligns:
        for map_ in ("mem", "dev"):
            try:
                p = plan(ns["size"], align, map_, a, kvar, start,
                         direct_map=ins.direct_map)
            except VmemlabError as e:
                alts.append({"align": align, "map": map_, "error": str(e), "ram_pages": 0})
                continue
            is_cur = align == dev["align"] and map_ == dev["map"]
            dm = None
            if ins.direct_map:
                s, e = p._pgmap.ranges[0]  # type: ignore[attr-defined]
                dm = DirectMap(a, ins.direct_map, ram_floor).add(s, e)
            row = {"align": align, "map": map_, "current": is_cur,
                   "ram_pages": p.ram_data_pages + p.ram_pagetable_pages,
                   "nr_memmap_pages": p.nr_memmap_pages,
                   "dax_size": p.namespace["npfns"] * p.page_size,
                   "direct_map_pages": None if dm is None else dm.pages,
                   "direct_map_mapped": None if dm is None else dm.mapped}
            if is_cur:
                cur = row
            alts.append(row)
    dev["alternatives"] = alts
    dev["current"] = cur
    note = ("device-dax plans populate the namespace alone (no boot RAM in the model): the "
            "upper-level vmemmap tables boot RAM already has are counted as new (up to 2 pages)"
            + ("" if ram is not None else "; MemTotal not read, so the direct map's top-level "
               "PUD table is counted as new too (1 page)"))
    if note not in ins.notes:
        ins.notes.append(note)


def _checks(ins: Inspection, baseline: str | os.PathLike | None, arch: str | None,
            kvar: str) -> None:
    """Kernel-reported figures next to the planner's: dax sizes always; with a baseline tree,
    the deltas of nr_memmap_pages, nr_memmap_boot_pages and DirectMap* since then."""
    for d in ins.dax:
        cur = d.get("current")
        if cur and d.get("size") is not None:
            ins.checks.append({"what": f"{d['name']} size (bytes)", "kernel": d["size"],
                               "planner": cur["dax_size"], "agree": d["size"] == cur["dax_size"]})
    if baseline is None:
        return
    base = inspect(baseline, kernel=kvar, direct_map=ins.direct_map, arch=ins.arch,
                   release=ins.release)
    then = {d["name"] for d in base.dax}
    new = [d for d in ins.dax if d.get("current") and d["name"] not in then]
    unplanned = [d["name"] for d in ins.dax if not d.get("current") and d["name"] not in then]
    if unplanned:
        ins.notes.append(f"new since the baseline but not planned: {', '.join(unplanned)}; "
                         "the deltas below leave them out")
    pred = sum(d["current"]["nr_memmap_pages"] or 0 for d in new)
    boot_pred = 0
    pools_then = {h["size"]: h["nr_hugepages"] or 0 for h in base.hugetlb}
    for h in ins.hugetlb:
        grown = (h["nr_hugepages"] or 0) - pools_then.get(h["size"], 0)
        if grown > 0 and arch is not None:
            # the pages grown since the baseline, optimised if the sysctl is on now
            p = plan_hugetlb((h["size"], grown), arch, kvar, bool(ins.hvo_sysctl))
            pred += p.vmstat_delta.get("nr_memmap_pages", 0)
            boot_pred += p.vmstat_delta.get("nr_memmap_boot_pages", 0)
    for key, level in (("DirectMap1G", "pud"), ("DirectMap2M", "pmd"), ("DirectMap4k", "pte")):
        if key in ins.meminfo and key in base.meminfo and new and all(
                d["current"].get("direct_map_mapped") is not None for d in new):
            planned = sum(d["current"]["direct_map_mapped"].get(level, 0) for d in new) >> 10
            got = ins.meminfo[key] - base.meminfo[key]
            ins.checks.append({"what": f"{key} delta since the baseline (kB)", "kernel": got,
                               "planner": planned, "agree": got == planned})
    for key, planned in (("nr_memmap_pages", pred), ("nr_memmap_boot_pages", boot_pred)):
        now, was = ins.counters.get(key), base.counters.get(key)
        if now is None or was is None:
            ins.notes.append(f"{key} not in both trees: no counter delta to compare")
            continue
        ins.checks.append({"what": f"{key} delta since the baseline", "kernel": now - was,
                           "planner": planned, "agree": now - was == planned})




