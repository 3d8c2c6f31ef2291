"""drivers/nvdimm/pfn_devs.c: how a namespace in ``devdax`` mode lays out its info block,
its memmap (``--map=dev``) and its data, and the altmap that results.

Follows ``nd_pfn_init()`` and ``__nvdimm_setup_pfn()`` of 6.x (kernel-facts.md §5); the worked
16 GiB ``--map=dev`` example there is reproduced by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from .arch import Arch
from .errors import KernelError, ParameterError
from .frames import VmemAltmap
from .memremap import MEMORY_DEVICE_GENERIC, PGMAP_ALTMAP_VALID, DevPagemap

SZ_4K, SZ_8K = 4096, 8192
#: drivers/nvdimm/nd.h: the memmap size nd_pfn reserves per page (struct page must not exceed it)
MAX_STRUCT_PAGE_SIZE = 64
PFN_MODE_RAM, PFN_MODE_PMEM = "mem", "dev"


def memremap_compat_align(arch: Arch) -> int:
    """``memremap_compat_align()``: generic ``SUBSECTION_SIZE`` (ppc64 may differ)."""
    return 1 << arch.SUBSECTION_SHIFT


def nd_info_block_reserve(arch: Arch) -> int:
    """``nd_info_block_reserve()``: ``ALIGN(SZ_8K, PAGE_SIZE)`` bytes."""
    return -(-SZ_8K // arch.PAGE_SIZE) * arch.PAGE_SIZE


def nd_supported_alignments(arch: Arch) -> tuple[int, ...]:
    """``nd_pfn_supported_alignments()``: PAGE_SIZE, PMD and (THP-PUD arches) PUD sizes."""
    return arch.dax_aligns


@dataclass(frozen=True)
class NdPfnInfo:
    """The ``nd_pfn_sb`` fields ``nd_pfn_init`` computes (``dataoff`` is ``offset``)."""

    start: int
    size: int
    align: int
    mode: str
    dataoff: int
    npfns: int
    start_pad: int
    end_trunc: int
    page_struct_size: int


def nd_pfn_init(arch: Arch, start: int, size: int, align: int, mode: str,
                strict: bool = True) -> NdPfnInfo:
    """``nd_pfn_init()``: place the memmap (``--map=dev``) and align the data offset.

    -EINVAL if ``start`` is not aligned to ``memremap_compat_align()``; -EOPNOTSUPP for an
    alignment the arch does not support (skipped with ``strict=False``, for exploring other
    orders); -ENXIO "unable to satisfy requested alignment" when nothing is left for data.
    """
    if mode not in (PFN_MODE_RAM, PFN_MODE_PMEM):
        raise ParameterError("map", mode, "'mem' (struct pages in RAM) or 'dev' (on the device)")
    if align <= 0 or align & (align - 1) or align < arch.PAGE_SIZE:
        raise ParameterError("align", align,
                             f"a power of two of at least PAGE_SIZE ({arch.PAGE_SIZE})")
    if strict and align not in nd_supported_alignments(arch):
        allowed = ", ".join(f"{a >> 10}K" if a < 1 << 20 else (f"{a >> 20}M" if a < 1 << 30
                            else f"{a >> 30}G") for a in nd_supported_alignments(arch))
        raise KernelError("EOPNOTSUPP", "nd_pfn_validate",
                          f"align {align:#x} is not supported on {arch.name} (supported: {allowed})")
    compat = memremap_compat_align(arch)
    if start % compat:
        raise KernelError("EINVAL", "nd_pfn_init",
                          f"namespace start {start:#x} is not aligned to {compat:#x} "
                          "(memremap_compat_align)")
    align = max(align, compat)
    end_trunc = start + size - ((start + size) // align) * align
    npfns = (size - SZ_8K) >> arch.page_shift
    if mode == PFN_MODE_PMEM:
        if arch.struct_page_size > MAX_STRUCT_PAGE_SIZE:
            raise KernelError("EINVAL", "nd_pfn_init",
                              f"Memory debug options prevent using pmem for the page map "
                              f"(sizeof(struct page) = {arch.struct_page_size})")
        page_map_size = MAX_STRUCT_PAGE_SIZE * npfns
        offset = -(-(start + SZ_8K + page_map_size) // align) * align - start
    else:
        offset = -(-(start + SZ_8K) // align) * align - start
    if offset >= size - end_trunc:
        raise KernelError("ENXIO", "nd_pfn_init",
                          f"unable to satisfy requested alignment: data offset {offset:#x} "
                          f"leaves nothing of {size:#x} bytes (end_trunc {end_trunc:#x})")
    npfns = (size - offset - end_trunc) >> arch.page_shift
    return NdPfnInfo(start, size, align, mode, offset, npfns, 0, end_trunc,
                     arch.struct_page_size)


def nvdimm_setup_pfn(arch: Arch, info: NdPfnInfo, vmemmap_shift: int = 0,
                     name: str = "dax0.0") -> DevPagemap:
    """``__nvdimm_setup_pfn()`` + device-dax: the pgmap covering the whole namespace (struct
    pages exist for the info block and padding too), with an altmap for ``--map=dev``."""
    start = info.start + info.start_pad
    end = info.start + info.size - info.end_trunc
    pgmap = DevPagemap(ranges=[(start, end)], vmemmap_shift=vmemmap_shift,
                       type=MEMORY_DEVICE_GENERIC, name=name, data_offset=info.dataoff)
    reserve_bytes = nd_info_block_reserve(arch)
    if info.mode == PFN_MODE_PMEM:
        base_pfn = start >> arch.page_shift
        sub_down = base_pfn - base_pfn % arch.PAGES_PER_SUBSECTION
        pgmap.altmap = VmemAltmap(
            base_pfn=sub_down, end_pfn=end >> arch.page_shift,
            reserve=(reserve_bytes >> arch.page_shift) + (base_pfn - sub_down),
            free=(info.dataoff - reserve_bytes) >> arch.page_shift)
        pgmap.flags |= PGMAP_ALTMAP_VALID
    elif info.dataoff < reserve_bytes:
        raise KernelError("EINVAL", "__nvdimm_setup_pfn", "data offset smaller than the reserve")
    return pgmap


def dev_dax_vmemmap_shift(arch: Arch, align: int) -> int:
    """``dev_dax_probe`` (5.17+): ``order_base_2(align >> PAGE_SHIFT)`` when align > PAGE_SIZE."""
    return 0 if align <= arch.PAGE_SIZE else (align >> arch.page_shift).bit_length() - 1
