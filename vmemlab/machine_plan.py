"""One plan of a whole machine: System RAM's memmap, HugeTLB pools, device-dax namespaces.

:func:`plan_machine` adds up what the struct pages of a machine cost in RAM, line by line:

* the boot memmap of System RAM (:func:`vmemlab.hugetlb_plan.boot_memmap_pages`);
* per HugeTLB pool (:func:`vmemlab.hugetlb_plan.plan_hugetlb`): the vmemmap HVO frees (a
  negative line: those struct pages are part of the boot memmap) and the PTE tables its PMD
  splits cost, as a range from packed to spread placement;
* per namespace: its vmemmap in RAM, populated by the engine (:func:`vmemlab.plan.plan`, all
  namespaces in one :class:`~vmemlab.machine.Machine`, so they share page tables as in the
  kernel), and the direct-map page tables ``arch_add_memory`` allocates for its range
  (:mod:`vmemlab.direct_map`, one map for the machine).

Namespaces are placed like firmware places persistent-memory regions: the first at
:data:`vmemlab.plan.DEFAULT_START` or the first 1 GiB boundary above RAM, each next one at the
first 1 GiB boundary (or ``align`` boundary, if larger) after the previous one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .arch import get_arch
from .direct_map import VARIANTS, DirectMap
from .errors import KernelError, ParameterError
from .hugetlb_plan import PLACEMENTS, HugetlbPlan, boot_memmap_pages, parse_pool, plan_hugetlb
from .kernels import get_kernel
from .machine import Machine
from .plan import DEFAULT_START, plan
from .units import GiB, format_size, parse_size


def parse_namespace(spec: str | tuple) -> tuple[int, int, str]:
    """``"SIZE:ALIGN:MAP"`` (``"1T:2M:mem"``; ALIGN and MAP optional, default ``2M`` and
    ``mem``) -> (size, align, map)."""
    if isinstance(spec, tuple):
        parts = [str(p) for p in spec]
    else:
        parts = str(spec).split(":")
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise ParameterError("namespace", spec, "SIZE[:ALIGN[:MAP]], e.g. 1T:2M:mem")
    size = parse_size(parts[0], "namespace size")
    align = parse_size(parts[1] if len(parts) > 1 else "2M", "namespace align")
    map_ = parts[2] if len(parts) > 2 else "mem"
    if map_ not in ("mem", "dev"):
        raise ParameterError("namespace", spec, "MAP 'mem' (struct pages in RAM) or 'dev' "
                             "(on the device)")
    return size, align, map_


@dataclass
class Line:
    """One line of a machine plan: RAM pages it adds (negative: frees), by placement."""

    item: str
    what: str
    pages: dict[str, int]
    note: str = ""


@dataclass
class MachinePlan:
    """The struct-page bill of one machine (pages of ``PAGE_SIZE``)."""

    arch: str
    kernel: str
    ram: int
    page_size: int
    hvo: bool
    when: str
    direct_map: str | None
    placement: str
    lines: list[Line] = field(default_factory=list)
    hugetlb: list[dict[str, Any]] = field(default_factory=list)
    namespaces: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total_pages(self) -> dict[str, int]:
        """Sum of the lines, by placement."""
        return {p: sum(ln.pages[p] for ln in self.lines) for p in PLACEMENTS}

    @property
    def ram_share(self) -> dict[str, float]:
        """The total as a fraction of the machine's RAM, by placement."""
        return {p: v * self.page_size / self.ram for p, v in self.total_pages.items()}

    def to_dict(self) -> dict[str, Any]:
        """Everything, totals included, as plain data (the CLI's ``--json``)."""
        d = asdict(self)
        d["total_pages"] = self.total_pages
        d["total_bytes"] = {p: v * self.page_size for p, v in self.total_pages.items()}
        d["ram_share"] = self.ram_share
        return d

    def table(self) -> str:
        """A readable bill: one line per item, the headline placement first."""
        ps, pl = self.page_size, self.placement
        other = "spread" if pl == "packed" else "packed"
        head = (f"machine: {format_size(self.ram)} RAM, {self.arch} / {self.kernel}, "
                f"HVO {'on' if self.hvo else 'off'} ({self.when}), direct map "
                f"{self.direct_map or 'not modelled'}; figures: {pl} placement "
                f"[{other} in brackets where it differs]")
        w = max([len(ln.item) for ln in self.lines] + [5])
        w2 = max([len(ln.what) for ln in self.lines] + [4])
        out = [head]

        def cell(p: dict[str, int]) -> str:
            s = f"{p[pl]:>10} {format_size(abs(p[pl]) * ps):>10}"
            if p[other] != p[pl]:
                s += f"  [{p[other]} = {format_size(abs(p[other]) * ps)}]"
            return s

        for ln in self.lines:
            out.append(f"{ln.item:<{w}}  {ln.what:<{w2}}  {cell(ln.pages)}"
                       + (f"  {ln.note}" if ln.note else ""))
        tot = self.total_pages
        out.append(f"{'total':<{w}}  {'':<{w2}}  {cell(tot)}")
        sh = self.ram_share
        out.append(f"{'share of RAM':<{w}}  {'':<{w2}}  {100 * sh[pl]:>9.4f}%"
                   + (f"  [{100 * sh[other]:.4f}%]" if sh[other] != sh[pl] else ""))
        return "\n".join(out)


def _both(n: int) -> dict[str, int]:
    return {p: n for p in PLACEMENTS}


def plan_machine(ram: int | str, namespaces: list[str | tuple] | tuple = (),
                 hugetlb: list[str | tuple] | tuple = (), arch: str = "x86_64",
                 kernel: str = "6.6", hvo: bool = True, when: str = "runtime",
                 placement: str = "packed", direct_map: str | None = None,
                 strict: bool = True) -> MachinePlan:
    """Plan a machine of ``ram`` bytes with HugeTLB pools (``"2M:1024"``) and device-dax
    namespaces (``"1T:2M:mem"``).  ``direct_map`` picks a :data:`vmemlab.direct_map.VARIANTS`
    entry (default: the packaged kernel's; on x86_64 ``"2m"`` also removes 1 GiB HugeTLB
    pages, which need pdpe1gb).  Refuses (-ENOMEM) a machine whose total exceeds its RAM."""
    a, k = get_arch(arch), get_kernel(kernel)
    ram_b = parse_size(ram, "ram")
    pools = list(hugetlb)
    specs = [parse_namespace(s) for s in namespaces]
    if not pools and not specs and ram_b <= 0:
        raise ParameterError("ram", ram, "a positive size")
    dm_variant = None
    if a.name in VARIANTS:
        dm = DirectMap(a, direct_map, ram_b)
        dm_variant = dm.variant
    elif direct_map is not None:
        raise ParameterError("direct_map", direct_map, f"a direct-map model exists for "
                             f"{', '.join(VARIANTS)} only, not {a.name}")
    else:
        dm = None
    gbpages = not (a.name == "x86_64" and dm_variant == "2m")
    mp = MachinePlan(a.name, k.name, ram_b, a.PAGE_SIZE, hvo, when, dm_variant, placement)
    boot = boot_memmap_pages(ram_b, a)
    mp.lines.append(Line("System RAM", "boot memmap (struct pages)", _both(boot["data"])))
    mp.lines.append(Line("System RAM", "vmemmap page tables", _both(boot["pagetables"])))
    pool_bytes = 0
    tails: set[int] = set()      # orders whose shared tail page (mm-2026) an earlier pool made
    for spec in pools:
        hp: HugetlbPlan = plan_hugetlb(spec, a, k, hvo, when, ram_b, placement, gbpages,
                                       shared_tail_allocated=parse_pool(spec)[0] in tails)
        if hp.shared_tail_pages:
            tails.add(hp.hugepage_size)
        pool_bytes += hp.pool_bytes
        name = f"HugeTLB {hp.count} x {format_size(hp.hugepage_size)}"
        mp.hugetlb.append(hp.to_dict())
        note = "" if hp.optimised or not hvo else f"HVO off: {hp.why_not}"
        mp.lines.append(Line(name, "vmemmap freed by HVO", _both(-hp.freed_pages), note))
        mp.lines.append(Line(name, "PTE tables of HVO's PMD splits", dict(hp.split_pte_tables)))
        if hp.shared_tail_pages:
            # vmemmap_shared_tail_page(order, zone): one per zone and order, kept by the zone
            mp.lines.append(Line(name, "HVO's shared tail page (2026 rework)",
                                 _both(hp.shared_tail_pages)))
    if pool_bytes > ram_b:
        raise ParameterError("hugetlb", pools, f"pools of {format_size(pool_bytes)} in all, "
                             f"more than the {format_size(ram_b)} of RAM")
    if specs:
        m = Machine(a, k, None)
        nxt = max(DEFAULT_START, ram_b)
        for i, (size, align, map_) in enumerate(specs):
            step = max(align, GiB)
            start = -(-nxt // step) * step
            p = plan(size, align, map_, a, k, start, None, strict, machine=m)
            s, e = p._pgmap.ranges[0]  # type: ignore[attr-defined]
            nxt = start + size
            name = f"namespace {i}: {format_size(size)} {format_size(align)} {map_}"
            mp.lines.append(Line(name, "vmemmap (data + page tables)",
                                 _both(p.ram_data_pages + p.ram_pagetable_pages)))
            ns = {"size": size, "align": align, "map": map_, "start": start,
                  "ram_data_pages": p.ram_data_pages,
                  "ram_pagetable_pages": p.ram_pagetable_pages,
                  "device_pages": p.device_data_pages + p.device_align_pages,
                  "optimised": p.optimised, "nr_memmap_pages": p.nr_memmap_pages}
            if dm is not None:
                c = dm.add(s, e)
                mp.lines.append(Line(name, "direct-map page tables", _both(c.pages)))
                ns["direct_map"] = c.to_dict()
            else:
                mp.lines.append(Line(name, "direct-map page tables", _both(0),
                                     f"not modelled on {a.name}"))
            mp.namespaces.append(ns)
    tot = mp.total_pages
    worst = max(tot.values()) * a.PAGE_SIZE
    if worst + pool_bytes > ram_b:
        raise KernelError("ENOMEM", "plan_machine",
                          f"struct pages and page tables need {format_size(worst)} and the "
                          f"HugeTLB pools {format_size(pool_bytes)}: more than the "
                          f"{format_size(ram_b)} of RAM")
    return mp
