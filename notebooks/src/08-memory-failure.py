# %% [markdown]
# # 08 — Memory failure on compound devmap pages
#
# **Goals.** Follow `memory_failure()` when a pfn inside a 2 MiB or 1 GiB device-dax page goes
# bad: which struct page gets `PG_hwpoison`, which user mappings are torn down, what signal
# the process gets; see which pfns are refused and why; and see what went wrong without patch 1
# of the series and with the length bug of kernels 4.19 to 5.12.

# %% [markdown]
# ## When memory goes bad
#
# When the hardware reports an uncorrectable error in a page frame (for example through a
# machine check), the kernel calls `memory_failure(pfn, flags)`
# (mm/memory-failure.c). For ZONE_DEVICE memory it goes to `memory_failure_dev_pagemap()`:
#
# 1. refuse (`-ENXIO`) a pfn that no `dev_pagemap` holds, or that holds the device's own
#    metadata (`pgmap_pfn_valid()`);
# 2. find the head: `page = compound_head(pfn_to_page(pfn))` (patch 1 of the series);
# 3. lock the page through its `mapping` (`dax_lock_page`); no mapping means nobody ever
#    faulted it in: `-EBUSY`;
# 4. set `PG_hwpoison` on the page, find every process mapping it and the size of its mapping
#    (PTE, PMD or PUD), unmap that whole range from the file (`unmap_mapping_range`), and send
#    each process `SIGBUS` with `si_addr_lsb` = log2 of the mapping size.
#
# Set up a 1 GiB device-dax namespace with 2 MiB pages and a process that maps its first 16 MiB
# (8 PMD mappings), every page faulted in:

# %%
import numpy as np

import vmemlab
from vmemlab import page as P
from vmemlab.memory_failure import UserMapping, dax_base_pfn, memory_failure

MiB, GiB = 1 << 20, 1 << 30
VA = 0x7F00_0000_0000
p = vmemlab.plan("1G", align="2M")
m, pgmap = p._machine, p._pgmap
base = dax_base_pfn(m, pgmap)  # file offset 0 of the device
app = UserMapping("app", vaddr=VA, size=16 * MiB, pfn=base)
print(f"device pfns from {base:#x}; 'app' maps [{VA:#x}, {VA + 16 * MiB:#x}) with "
      f"{app.size // p.align} PMD leaves")

# %% [markdown]
# ## Poisoning a tail of a 2 MiB page
#
# The bad pfn is tail 300 of the fourth compound page (file offset 6 MiB + 300 pages):

# %%
pfn = base + 3 * 512 + 300
r = memory_failure(m, pfn, mappings=[app])
print(f"memory_failure({pfn:#x}): rc {r.rc} ({r.outcome})")
print(f"head found          pfn {r.head_pfn:#x} (pfn - head = {r.pfn - r.head_pfn})")
print(f"PageHWPoison(head)  {P.PageHWPoison(P.pfn_to_page(m, r.head_pfn))}")
print(f"PageHWPoison(tail)  {P.PageHWPoison(P.pfn_to_page(m, pfn))}")
print(f"head->index         {r.index} (file page offset {r.index << 12 >> 20} MiB)")
print(f"mapping size        2^{r.size_shift} = {r.size // MiB} MiB")
for proc, va, size in r.unmapped:
    print(f"unmapped            {proc}: [{va:#x}, {va + size:#x}), {size // MiB} MiB")
for proc, addr, lsb in r.killed:
    print(f"SIGBUS              {proc}: si_addr {addr:#x}, si_addr_lsb {lsb}")

# %% [markdown]
# The whole 2 MiB page is unmapped and reported, not just the 4 KiB that failed: device-dax
# maps it with one PMD entry, and the head's `index` says where in the file it sits. The
# process learns from `si_addr_lsb` = 21 that 2 MiB starting at `si_addr` are gone.
#
# `PG_hwpoison` goes on the **head**. Only one struct page of the compound page carries it; that
# matters with deduplication, where tail 300's struct page is shared by several tails
# (chapter 04):

# %%
flags = P.read_field(m, r.head_pfn + np.arange(512), "flags")
hw = (flags >> np.uint64(P.PG(m, "PG_hwpoison"))) & np.uint64(1)
print("struct pages (offsets from the head) with PG_hwpoison:", np.flatnonzero(hw).tolist(),
      "| counted by the model:", r.poisoned_pfns)
print("PageHWPoison(compound_head(tail 17)):",
      P.PageHWPoison(P.compound_head(P.pfn_to_page(m, r.head_pfn + 17))))

# %% [markdown]
# ## A 1 GiB page
#
# The same with 1 GiB pages, this time with a real `mmap()` of the device
# (`vmemlab.dax_device.dax_mmap_plan`, one PUD leaf per GiB) passed as `(process, DaxVma)`:

# %%
from vmemlab.dax_device import dax_mmap_plan

p1 = vmemlab.plan("4G", align="1G")
m1 = p1._machine
vma = dax_mmap_plan(p1)
print(f"VMA [{vma.vm_start:#x}, {vma.vm_end:#x}): {vma.nr_leaves} {vma.leaf_level.upper()} "
      f"leaves")
bad_va = vma.vm_start + GiB + 100_000 * 4096  # tail 100000 of the second 1 GiB page
r1 = memory_failure(m1, int(vma.va_to_pfn(bad_va)), mappings=[("db", vma)])
print(f"rc {r1.rc}: head is {r1.pfn - r1.head_pfn} pages below the bad pfn, PageHWPoison(head) "
      f"{P.PageHWPoison(P.pfn_to_page(m1, r1.head_pfn))}")
for proc, va, size in r1.unmapped:
    print(f"unmapped {proc}: vm_start + {(va - vma.vm_start) // GiB} GiB, {size // GiB} GiB")
for proc, addr, lsb in r1.killed:
    print(f"SIGBUS {proc}: si_addr vm_start + {(addr - vma.vm_start) // GiB} GiB, "
          f"si_addr_lsb {lsb}")

# %% [markdown]
# One bad 4 KiB frame costs the process a whole gigabyte of its mapping: `si_addr_lsb` = 30.
#
# ## What is refused
#
# A pfn outside every `dev_pagemap` is "memory outside kernel control". With `--map=dev` the
# namespace begins with an info block and then the struct pages of the rest (chapter 04). Those
# pfns hold no user data and belong to no compound page, so `pgmap_pfn_valid()` refuses them:
# "device metadata space is not recoverable". A failed call changes nothing.

# %%
from vmemlab.errors import KernelError

pdev = vmemlab.plan("1G", align="2M", map="dev")
mdev, pgdev = pdev._machine, pdev._pgmap
altmap = pgdev.altmap
before = mdev.state()
for what, bad in (("no pgmap at 200 GiB", (200 * GiB) >> 12),
                  ("altmap pfn base + 5", altmap.base_pfn + 5)):
    try:
        memory_failure(mdev, bad)
    except KernelError as e:
        print(f"{what:>20}: {e}")
print("state unchanged:", mdev.state() == before)
print(f"refused metadata pfns: vmem_altmap_offset = reserve {altmap.reserve} + free "
      f"{altmap.free} = {altmap.vmem_altmap_offset()} "
      f"({altmap.vmem_altmap_offset() * 4 // 1024} MiB)")

# %% [markdown]
# And a data pfn that no process ever faulted in has no `mapping` on its head: `dax_lock_page`
# fails and `memory_failure` returns `-EBUSY`:

# %%
r0 = memory_failure(m, base + 100 * 512 + 5)  # far beyond app's 16 MiB
print(f"rc {r0.rc} ({r0.outcome}): {r0.notes[0]}")

# %% [markdown]
# ## Why patch 1 was needed
#
# Before compound devmaps every device-dax struct page stood alone, so
# `memory_failure_dev_pagemap()` used `pfn_to_page(pfn)` directly. With compound pages that is a
# *tail*: its `mapping` is `TAIL_MAPPING` (a poison pointer) and its `index` is not the file
# offset. Patch 1 of the series, "memory-failure: fetch compound_head after pgmap_pfn_valid()",
# looks up the head instead. It was merged together with compound devmaps (5.17), so no
# released kernel ran the old code on compound pages; `patched=False` shows what it would have
# done with a tail:

# %%
pfn2 = base + 5 * 512 + 300
old = memory_failure(m, pfn2, mappings=[app], patched=False)
head2 = P.compound_head(P.pfn_to_page(m, pfn2))
print(f"struct page used: pfn - head = {old.page_pfn - head2.pfn}; mapping {old.mapping:#x} "
      f"(TAIL_MAPPING: {old.mapping == P.TAIL_MAPPING}); index {old.index} vs the head's "
      f"{head2.read('index')}")
print(f"outcome: {old.outcome}")
for note in old.notes:
    print("-", note)
print("PG_hwpoison set anywhere:", P.PageHWPoison(head2) or P.PageHWPoison(P.pfn_to_page(m, pfn2)))

# %% [markdown]
# Three things go wrong at once: the lock dereferences a poison pointer, the unmap range comes
# from the wrong `index` (here the process's first 2 MiB instead of the page that failed), and
# `PG_hwpoison` would land on a tail struct page that several tails share. With the patch:

# %%
new = memory_failure(m, pfn2, mappings=[app])
print(f"outcome {new.outcome}: bad pfn - head = {pfn2 - new.head_pfn}, unmapped "
      f"[{(new.unmapped[0][1] - VA) // MiB}, {(new.unmapped[0][1] - VA + new.unmapped[0][2]) // MiB})"
      f" MiB of app")

# %% [markdown]
# Why *after* `pgmap_pfn_valid()`? A metadata pfn has no device-dax struct page to take a
# `compound_head` from. Nothing ever writes the struct pages of the info block's pfns (in the
# model they read as zeros; in a kernel, whatever the memory held), and the pfns holding the
# memmap get plain reserved struct pages from `memmap_init_range()`, in no compound page and
# with no `pgmap`:

# %%
for what, pfn_meta in (("info block, base + 1", altmap.base_pfn + 1),
                       ("memmap, base + 5", altmap.base_pfn + 5)):
    pg = P.pfn_to_page(mdev, pfn_meta)
    words = [int(w) for w in P.read_field(mdev, pfn_meta, "words")[0]]
    print(f"{what:>20}: all zero {not any(words)!s:5}  PG_reserved "
          f"{P.PageReserved(pg)!s:5}  PageCompound {P.PageCompound(pg)!s:5}  "
          f"refcount {P.page_ref_count(pg)}")
print("first data pfn: PageHead", P.PageHead(P.pfn_to_page(mdev, dax_base_pfn(mdev, pgdev))))

# %% [markdown]
# ## How much is unmapped
#
# `unmap_mapping_range(mapping, start, len)` takes a length. From 4.19 to 5.12,
# `memory_failure_dev_pagemap()` passed `start + size`, an *end*, in that slot, over-unmapping
# by the page's offset in the file; 4d75136be8bf ("mm/memory-failure: unnecessary amount of
# unmapping", 5.13, also in stable 5.12.4) made it `size`. Every kernel this workbook models
# is newer than that fix, so all of them unmap exactly the compound page. With `--map=dev` (so
# file offsets start exactly at the data) and a 64 MiB mapping, poison the compound page at
# 10 MiB under the oldest and the newest variant:

# %%
for kernel in ("5.17", "6.12.117"):
    q = vmemlab.plan("1G", align="2M", map="dev", kernel=kernel)
    v = dax_mmap_plan(q, size=64 * MiB)
    bad = int(v.va_to_pfn(v.vm_start + 10 * MiB + 77 * 4096))
    res = memory_failure(q._machine, bad, mappings=[("app", v)])
    total = sum(size for _, _, size in res.unmapped)
    lo = min(va for _, va, _ in res.unmapped) - v.vm_start
    print(f"kernel {kernel:>8}: unmap_mapping_range(start {res.unmap_start // MiB} MiB, len "
          f"{res.unmap_len // MiB} MiB) -> app loses [{lo // MiB}, {(lo + total) // MiB}) MiB, "
          f"{total // MiB} MiB")

# %% [markdown]
# The start comes from the *head's* `index` (patch 1 again), aligned down to the mapping size;
# the length is that size. The process takes a page fault when it next touches the range and
# gets `SIGBUS` for the poisoned page.
#
# ## Exercises

# %%
from vmemlab import exercises

ex1 = exercises.generate("mf-unmap-len", seed=8)
ex1

# %%
answer = None  # your answer
ex1.check(answer)

# %%
ex2 = exercises.generate("mf-enxio-pfns", seed=8)
ex2

# %%
answer = None  # your answer
ex2.check(answer)

# %% [markdown]
# ## Summary
#
# * `memory_failure()` on a device-dax pfn finds the compound head, sets `PG_hwpoison` on it,
#   unmaps the whole 2 MiB or 1 GiB mapping and sends `SIGBUS` with `si_addr_lsb` 21 or 30.
# * Pfns outside any pgmap and the info-block/memmap pfns of `--map=dev` are refused with
#   `-ENXIO`; a page never faulted in gives `-EBUSY`.
# * Without patch 1 the tail's struct page was used: `TAIL_MAPPING`, a wrong `index`, and the
#   poison flag on a shared tail. The head is fetched only after `pgmap_pfn_valid()`, since
#   metadata pfns have no struct page worth reading.
# * From 4.19 to 5.12 the unmap length was really an end: the further into the file, the more
#   was unmapped.
#
# **In the kernel:** `mm/memory-failure.c` (`memory_failure`, `memory_failure_dev_pagemap`,
# `collect_procs`, `kill_procs`, `dev_pagemap_mapping_shift`, `unmap_and_kill`),
# `mm/memremap.c` (`pgmap_pfn_valid`), `fs/dax.c` (`dax_lock_page`), `drivers/dax/device.c`
# (`dax_set_mapping`).
#
# **Next:** [09 — Capacity planning](09-capacity-planning.ipynb)
