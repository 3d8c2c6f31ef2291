"""memory_failure on device-dax compound pages (vmemlab.memory_failure).

Expected behaviour from kernel-facts §11 (mm/memory-failure.c ``memory_failure_dev_pagemap``,
patch 1 of the series "memory-failure: fetch compound_head after pgmap_pfn_valid()"):
* a pfn outside any pgmap: -ENXIO ("memory outside kernel control"); an altmap/info-block pfn:
  -ENXIO ("device metadata space is not recoverable"); nothing changes;
* otherwise PG_hwpoison on the head struct page, the whole 2M/1G mapping unmapped, SIGBUS with
  si_addr_lsb = 21 / 30 (PMD_SHIFT / PUD_SHIFT on x86_64);
* unmap start = (head->index << PAGE_SHIFT) & ~(size - 1); length = size (the 4.19-5.12
  start + size bug was fixed by 4d75136be8bf before every variant modelled);
* before patch 1 the tail's own struct page is used: mapping = TAIL_MAPPING, index not the head's.
Alias arithmetic (deduplicated memmap, kernel-facts §7): tail k >= 64 of a 2M page shares its
struct page with (512 - 64) / 64 = 7 tails.
"""

from __future__ import annotations

import numpy as np
import pytest

from vmemlab.errors import KernelError, ParameterError
from vmemlab.memory_failure import UserMapping, dax_base_pfn, memory_failure
from vmemlab.page import TAIL_MAPPING, PageHWPoison, pfn_to_page, read_field
from vmemlab.plan import plan

MiB, GiB = 1 << 20, 1 << 30
VA = 0x7F00_0000_0000


def setup(align: str, kernel: str = "6.6", size: str = "4G", map: str = "mem"):
    p = plan(size, align=align, kernel=kernel, map=map)
    m, pg = p._machine, p._pgmap
    return m, pg, dax_base_pfn(m, pg)


@pytest.mark.parametrize("align,shift", [("2M", 21), ("1G", 30)])
def test_tail_failure_poisons_head_and_unmaps_the_whole_page(align, shift):
    m, pg, base = setup(align)
    nr = 1 << (shift - 12)
    head = base + 2 * nr  # the third compound page
    maps = [UserMapping("A", VA, 2 * nr << 12, base + nr),  # maps pages 1 and 2
            UserMapping("B", VA + GiB * 8, nr << 12, base)]  # maps page 0 only
    r = memory_failure(m, head + nr - 3, mappings=maps)
    assert (r.rc, r.outcome, r.head_pfn, r.page_pfn) == (0, "recovered", head, head)
    assert PageHWPoison(pfn_to_page(m, head))
    assert not PageHWPoison(pfn_to_page(m, head + nr - 3))
    assert r.poisoned_pfns == 1
    # range: file offset of the head, aligned down to the mapping size, length = size (6.x)
    assert (r.size, r.size_shift) == (1 << shift, shift)
    assert r.unmap_start == (2 * nr) << 12 and r.unmap_len == 1 << shift
    assert r.unmapped == [("A", VA + (nr << 12), 1 << shift)]
    assert r.killed == [("A", VA + (nr << 12), shift)]  # si_addr_lsb = PMD/PUD_SHIFT


def test_pre_patch_uses_the_tail_wrong_mapping_index_and_range():
    m, pg, base = setup("2M")
    head = base + 512 * 3
    maps = [UserMapping("A", VA, 8 * MiB, base)]
    r = memory_failure(m, head + 200, mappings=maps, patched=False)
    assert r.outcome == "oops" and r.rc is None and r.page_pfn == head + 200
    assert r.mapping == TAIL_MAPPING and not r.mapping_ok
    assert r.index != 512 * 3  # the head's file page offset
    assert r.unmap_start != (512 * 3) << 12  # a different 2M range
    assert "aliases 7 struct pages" in r.notes[1]  # tails 72, 136, ..., 456 (see docstring)
    assert not PageHWPoison(pfn_to_page(m, head + 200))  # the oops stops before poisoning
    # the same pfn with patch 1: the head
    r2 = memory_failure(m, head + 200, mappings=maps)
    assert r2.outcome == "recovered" and r2.page_pfn == head and r2.index == 512 * 3


@pytest.mark.parametrize("kernel", ["v3", "5.17", "5.19", "6.1", "6.6", "6.12.117"])
def test_unmap_length_is_size_in_every_variant(kernel):
    """kernel-facts §0a 1: the start + size length (4.19-5.12) was fixed by 4d75136be8bf
    "mm/memory-failure: unnecessary amount of unmapping" (stable 5.12.4), so 5.17 and the v3
    base already pass size; 6.1.192 unmap_and_kill: unmap_mapping_range(mapping, start, size, 0)."""
    m, pg, base = setup("2M", kernel=kernel)
    maps = [UserMapping("A", VA, 16 * MiB, base)]
    r = memory_failure(m, base + 512 * 2 + 9, mappings=maps)
    start = (512 * 2) << 12
    assert (r.unmap_start, r.unmap_len) == (start, 2 * MiB)
    assert r.unmapped == [("A", VA + start, 2 * MiB)]


def test_never_mapped_page_is_ebusy():
    m, pg, base = setup("2M")
    r = memory_failure(m, base + 77)
    assert (r.rc, r.outcome) == (-16, "failed")
    assert not PageHWPoison(pfn_to_page(m, base))


def test_refusals_change_nothing():
    m, pg, base = setup("2M", map="dev", size="1G")
    before = m.state()
    flags = read_field(m, base + np.arange(1024), "flags").copy()
    with pytest.raises(KernelError) as e:
        memory_failure(m, (200 * GiB) >> 12)  # no section there
    assert e.value.errno == "ENXIO" and "outside kernel control" in str(e.value)
    with pytest.raises(KernelError) as e:
        memory_failure(m, pg.altmap.base_pfn + 5)  # holds the memmap (altmap)
    assert e.value.errno == "ENXIO" and "metadata" in str(e.value)
    with pytest.raises(ParameterError):
        memory_failure(m, -1)
    assert m.state() == before
    assert (read_field(m, base + np.arange(1024), "flags") == flags).all()


def test_dax_vma_mappings_are_accepted():
    from vmemlab.dax_device import dax_mmap_plan

    p = plan("2G", align="2M")
    m = p._machine
    vma = dax_mmap_plan(p, size=8 * MiB)
    pfn = (vma.phys_start >> 12) + 512 + 17
    r = memory_failure(m, pfn, mappings=[("proc", vma)])
    assert r.outcome == "recovered" and r.killed == [("proc", vma.vm_start + 2 * MiB, 21)]


@pytest.mark.parametrize("kernel, expect_len", [("6.6", 2 * MiB), ("5.17", 2 * MiB)])
def test_file_offsets_count_from_the_namespace_data_start(kernel, expect_len):
    """device-dax file offset 0 is the namespace's data start (nd_pfn dataoff = 2 MiB here), as
    dax_pgoff_to_phys counts.  Poisoning the page at file offset 10 MiB + 4 KiB: the head's index
    is 10 MiB / 4 KiB = 2560, start = 10 MiB; every variant unmaps size = 2 MiB (kernel-facts
    §0a 1: the start + size length was fixed by 4d75136be8bf, stable 5.12.4)."""
    from vmemlab.dax_device import dax_mmap_plan

    p = plan("1G", align="2M", map="mem", kernel=kernel)
    m = p._machine
    vma = dax_mmap_plan(p, size=64 * MiB)
    pfn = vma.va_to_pfn(vma.vm_start + 10 * MiB + 4096)
    r = memory_failure(m, pfn, mappings=[("proc", vma)])
    assert r.index == 10 * MiB // 4096
    assert r.unmap_start == 10 * MiB
    assert r.unmap_len == expect_len
