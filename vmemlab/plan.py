"""Capacity planning: populate a namespace in the model and report what it costs.

:func:`plan` builds a :class:`~vmemlab.machine.Machine`, lays the namespace out like
``nd_pfn_init`` (``--map=mem`` or ``--map=dev``), has device-dax hand the pgmap to
``memremap_pages`` and reads the cost off the model: frames by kind and home, page tables per
level, struct pages initialised, the vmstat counter.  Nothing is computed by formula here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .arch import get_arch
from .direct_map import VARIANTS, DirectMap
from .errors import KernelError, ParameterError
from .kernels import get_kernel
from .machine import Machine
from .memremap import DevPagemap, memremap_pages, memunmap_pages, pgmap_altmap, pgmap_vmemmap_nr
from .nvdimm_pfn import NdPfnInfo, dev_dax_vmemmap_shift, nd_pfn_init, nvdimm_setup_pfn
from .sparse_vmemmap import vmemmap_can_optimize
from .units import GiB, format_size, parse_size
from .vmemmap_optimization import section_vmemmap_optimizable, shared_tail_pages

#: default physical start of a namespace: 64 GiB, a 1 GiB-aligned address above RAM, as
#: platform firmware places persistent-memory regions
DEFAULT_START = 64 * GiB


@dataclass
class Plan:
    """What populating one device-dax namespace costs (all counts in pages of ``PAGE_SIZE``)."""

    arch: str
    kernel: str
    size: int
    align: int
    map: str
    start: int
    ram: int | None
    page_size: int
    struct_page_size: int
    vmemmap_shift: int
    compound_pages: int
    struct_pages: int
    optimised: bool
    ram_data_pages: int
    ram_pagetable_pages: int
    device_data_pages: int
    device_align_pages: int
    ram_bytes: int
    struct_pages_initialised: int
    vmemmap_pages_per_compound: int
    saved_vmemmap_pages_per_compound: int
    nr_memmap_pages: int | None
    pagetables: dict[str, int] = field(default_factory=dict)
    namespace: dict[str, int] = field(default_factory=dict)
    ram_share: float | None = None
    #: direct-map page tables ``arch_add_memory`` allocates for the range
    #: (:mod:`vmemlab.direct_map`; not in ``ram_bytes``); None where not modelled
    direct_map: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) rows for a readable table."""
        ps = self.page_size
        rows = [
            ("namespace", f"{format_size(self.size)}, start {self.start:#x}, align "
                          f"{format_size(self.align)}, map={self.map}"),
            ("arch / kernel", f"{self.arch} / {self.kernel}"),
            ("compound pages", f"{self.compound_pages} of order {self.vmemmap_shift}"),
            ("struct pages", f"{self.struct_pages}"),
            ("vmemmap deduplicated", "yes" if self.optimised else "no"),
            ("RAM: struct-page pages", f"{self.ram_data_pages} "
                                       f"({format_size(self.ram_data_pages * ps)})"),
            ("RAM: page-table pages", f"{self.ram_pagetable_pages} "
                                      f"({format_size(self.ram_pagetable_pages * ps)})"),
            ("device: struct-page pages", f"{self.device_data_pages} "
                                          f"(+{self.device_align_pages} alignment)"),
            ("RAM total", format_size(self.ram_bytes)),
            ("saved vmemmap pages / compound",
             f"{self.saved_vmemmap_pages_per_compound} of {self.vmemmap_pages_per_compound}"),
            ("struct pages initialised", f"{self.struct_pages_initialised}"),
            ("nr_memmap_pages (vmstat)", "-" if self.nr_memmap_pages is None
             else f"{self.nr_memmap_pages}"),
        ]
        if self.direct_map is not None:
            dm = self.direct_map
            rows.append(("direct-map page tables", f"{dm['pages']} "
                         f"({format_size(dm['pages'] * ps)}; {dm['variant']}; not in RAM total)"))
        if self.ram_share is not None:
            rows.append(("share of RAM", f"{100 * self.ram_share:.4f}%"))
        return rows

    def table(self) -> str:
        w = max(len(k) for k, _ in self.rows())
        return "\n".join(f"{k:<{w}}  {v}" for k, v in self.rows())


def _optimised(m: Machine, altmap, pgmap: DevPagemap) -> bool:
    """Did the namespace take the deduplicating path?  ``vmemmap_can_optimize``; with the 2026
    rework (``mm-2026``) also a section-aligned range, whose sections record the order
    (:func:`vmemlab.vmemmap_optimization.section_vmemmap_optimizable`)."""
    if m.kernel.shared_tail:
        a = m.arch
        return any(section_vmemmap_optimizable(m, pfn)
                   for s, e in pgmap.ranges
                   for pfn in range(s >> a.page_shift, e >> a.page_shift, a.PAGES_PER_SECTION))
    return vmemmap_can_optimize(m, altmap, pgmap)


def _saved_per_compound(m: Machine, pgmap: DevPagemap) -> tuple[int, int]:
    """Vmemmap pages of the first compound page and how many of them map a page already mapped
    by another of its vmemmap pages (read from the page tables)."""
    a = m.arch
    first_pfn = pgmap.ranges[0][0] >> a.page_shift
    nr = pgmap_vmemmap_nr(pgmap)
    lo = (first_pfn * a.struct_page_size) >> a.page_shift
    hi = -(-((first_pfn + nr) * a.struct_page_size) >> a.page_shift)
    home, pfn = m.pgtables.resolve_pfn(np.arange(lo, hi, dtype=np.int64))
    unique = len(set(zip(home.tolist(), pfn.tolist())))
    if m.kernel.shared_tail:
        # mm-2026: the zone's shared tail page is not the compound page's own, so every vmemmap
        # page that maps it is saved (kernel-side: one own head page per compound page)
        frame, _ = m.pgtables.resolve(np.arange(lo, hi, dtype=np.int64))
        shared = {t["frame"] for t in shared_tail_pages(m).values()}
        unique = len(set(frame.tolist()) - shared)
    return hi - lo, (hi - lo) - unique


def plan(size: int | str, align: int | str = "2M", map: str = "mem", arch: str | None = None,
         kernel: str | None = None, start: int | str | None = None, ram: int | str | None = None,
         strict: bool = True, machine: Machine | None = None,
         direct_map: str | None = None) -> Plan:
    """Populate a device-dax namespace of ``size`` bytes in the model and report its cost.

    :param size: raw namespace size (bytes or ``"16G"``); struct pages cover all of it
    :param align: device-dax alignment (``"4K"``, ``"2M"``, ``"1G"``); sets ``vmemmap_shift``
    :param map: ``"mem"`` (struct pages in RAM) or ``"dev"`` (on the device, via an altmap)
    :param arch: an :data:`vmemlab.arch.ARCHES` name (default ``x86_64``, or the machine's)
    :param kernel: a :func:`vmemlab.kernels.kernel_names` name (default ``6.6``, or the
        machine's)
    :param start: physical start (default :data:`DEFAULT_START`, or above ``ram``)
    :param ram: the machine's RAM; boots it and refuses with -ENOMEM if struct pages do not fit
    :param strict: refuse alignments device-dax does not offer on ``arch`` (False to explore)
    :param machine: populate into this machine instead of a new one (it keeps the namespace);
        its arch, kernel and RAM are the plan's (asking for others is a ParameterError)
    :param direct_map: a :data:`vmemlab.direct_map.VARIANTS` name for the direct-map line
        (default: the packaged kernel's behaviour on ``arch``)
    """
    if machine is not None:
        # plan into the machine as it is: its arch and kernel, unless the caller asked for
        # other ones explicitly
        for name, asked, has in (("arch", arch, machine.arch), ("kernel", kernel, machine.kernel)):
            if asked is not None and (get_arch(asked) if name == "arch" else get_kernel(asked)) \
                    is not has:
                raise ParameterError(name, asked, f"{has.name!r}, the machine's {name} (or "
                                     f"leave it out)")
        arch, kernel = machine.arch, machine.kernel
        if ram is not None:
            raise ParameterError("ram", ram, "None with machine= (the machine has its RAM)")
    a = get_arch("x86_64" if arch is None else arch)
    k = get_kernel("6.6" if kernel is None else kernel)
    if not isinstance(strict, bool):
        raise ParameterError("strict", strict, "True or False")
    size_b = parse_size(size, "size")
    align_b = parse_size(align, "align")
    ram_b = None if ram is None else parse_size(ram, "ram")
    if ram_b is not None and ram_b > 1 << a.max_physmem_bits:
        raise ParameterError("ram", ram, f"at most 2^{a.max_physmem_bits} bytes "
                             f"(MAX_PHYSMEM_BITS on {a.name})")
    if size_b > 1 << a.max_physmem_bits:
        raise KernelError("E2BIG", "check_hotplug_memory_addressable",
                          f"a {format_size(size_b)} namespace does not fit in MAX_PHYSMEM_BITS "
                          f"({a.max_physmem_bits} bits) on {a.name}")
    if map not in ("mem", "dev"):
        raise ParameterError("map", map, "'mem' (struct pages in RAM) or 'dev' (on the device)")
    if start is None:
        base = max(DEFAULT_START, ram_b or 0)
        step = max(align_b, GiB)
        start_b = -(-base // step) * step
    else:
        start_b = parse_size(start, "start")
    if size_b < a.PAGES_PER_SUBSECTION << a.page_shift:
        raise ParameterError("size", size, f"at least one subsection "
                             f"({format_size(a.PAGES_PER_SUBSECTION << a.page_shift)})")
    info: NdPfnInfo = nd_pfn_init(a, start_b, size_b, align_b, map, strict=strict)
    if size_b - info.end_trunc < align_b:
        raise ParameterError("size", size, f"at least one compound page ({format_size(align_b)})"
                             f" after alignment")
    shift = dev_dax_vmemmap_shift(a, align_b) if k.compound_devmap else 0
    m = machine if machine is not None else Machine(a, k, ram_b)
    ps = a.PAGE_SIZE
    before = m.usage()
    before_free = m.ram.free
    before_vmstat = dict(m.vmstat)
    pgmap = nvdimm_setup_pfn(a, info, shift, name=f"dax{len(m.pgmaps)}.0")
    try:
        memremap_pages(m, pgmap)
    except KernelError as e:
        if e.errno != "ENOMEM" or ram_b is None or machine is not None:
            raise
        need = plan(size_b, align_b, map, a, k, start_b, None, strict)
        raise KernelError(
            "ENOMEM", "memremap_pages",
            f"the namespace's vmemmap needs {need.ram_bytes // ps} pages "
            f"({format_size(need.ram_bytes)}) of RAM but only {before_free} of the "
            f"{format_size(ram_b)} machine's pages are free after boot") from e
    after = m.usage()
    per, saved = _saved_per_compound(m, pgmap)
    altmap = pgmap_altmap(pgmap)
    d = {key: after[key] - before.get(key, 0) for key in after}
    ram_pages = d["ram_data_pages"] + d["ram_pagetable_pages"]
    struct_pages = sum((e - s) >> a.page_shift for s, e in pgmap.ranges)
    result = Plan(
        arch=a.name, kernel=k.name, size=size_b, align=align_b, map=map, start=start_b,
        ram=ram_b, page_size=ps, struct_page_size=a.struct_page_size, vmemmap_shift=shift,
        compound_pages=sum(st.compound_pages for st in pgmap.init_stats),
        struct_pages=struct_pages,
        optimised=_optimised(m, altmap, pgmap),
        ram_data_pages=d["ram_data_pages"], ram_pagetable_pages=d["ram_pagetable_pages"],
        device_data_pages=altmap.alloc if altmap else 0,
        device_align_pages=altmap.align if altmap else 0,
        ram_bytes=ram_pages * ps,
        struct_pages_initialised=sum(s.struct_pages_initialised for s in pgmap.init_stats),
        vmemmap_pages_per_compound=per, saved_vmemmap_pages_per_compound=saved,
        nr_memmap_pages=(m.vmstat["nr_memmap_pages"] - before_vmstat["nr_memmap_pages"]
                         if k.memmap_counter else None),
        pagetables={key[:-7]: v for key, v in d.items() if key.endswith("_tables")},
        namespace={"dataoff": info.dataoff, "npfns": info.npfns, "end_trunc": info.end_trunc,
                   **({"altmap_base_pfn": altmap.base_pfn, "altmap_reserve": altmap.reserve,
                       "altmap_free": altmap.free} if altmap else {})},
        ram_share=None if ram_b is None else ram_pages * ps / ram_b,
    )
    result.direct_map = _direct_map_line(a, pgmap, ram_b, direct_map)
    result._machine = m  # type: ignore[attr-defined]
    result._pgmap = pgmap  # type: ignore[attr-defined]
    return result


def _direct_map_line(a: Any, pgmap: DevPagemap, ram: int | None,
                     variant: str | None) -> dict[str, Any] | None:
    if a.name not in VARIANTS and variant is None:
        return None
    dm = DirectMap(a, variant, ram)
    return dm.add(*pgmap.ranges[0]).to_dict()


def teardown(p: Plan) -> None:
    """Remove the namespace a :func:`plan` populated (``memunmap_pages``)."""
    memunmap_pages(p._machine, p._pgmap)  # type: ignore[attr-defined]
