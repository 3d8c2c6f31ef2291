# %% [markdown]
# # 10 — Hot-remove and lifetimes
#
# **Goals.** See how a deduplicated vmemmap is torn down section by section without leaking the
# shared tail page or freeing it twice, and check that any sequence of hot-add and hot-remove
# gives every page back.

# %% [markdown]
# ## Reference counts do the bookkeeping
#
# Hot-remove (`memunmap_pages` → `__remove_pages` → `sparse_remove_section` →
# `section_deactivate` → `vmemmap_free`) walks the vmemmap of one section at a time and clears
# its PTEs. Each cleared PTE *puts* the page it mapped (`free_pagetable` → `put_page_testzero`),
# and a page is freed when its count reaches zero. Because population took one reference per
# reuse PTE, the shared tail page is freed exactly when its last PTE goes.
#
# Watch a 1 GiB compound page (8 sections of memmap) go, one section at a time:

# %%
import numpy as np

import vmemlab

p = vmemlab.plan("2G", align="1G")
m, pg = p._machine, p._pgmap
a = m.arch
pfn0 = pg.ranges[0][0] >> a.page_shift
first_vpn = pfn0 * a.struct_page_size >> a.page_shift
head, tail = m.pgtables.resolve(np.array([first_vpn, first_vpn + 1]))[0].tolist()
print(f"before: head refcount {m.frames.refcount[head]}, tail refcount "
      f"{m.frames.refcount[tail]}, RAM pages {m.ram.used}")


def read_state(removed: int) -> dict:
    return {"removed": removed, "tail_refcount": int(m.frames.refcount[tail]),
            "tail_alive": bool(m.frames.kind[tail]), "head_alive": bool(m.frames.kind[head]),
            "ram_pages": int(m.ram.used)}


rows = [read_state(0)]
for s in range(8):
    m.sparse.sparse_remove_section(pfn0 + s * a.PAGES_PER_SECTION, a.PAGES_PER_SECTION, None, pg)
    alive = m.frames.kind[tail] != 0
    rows.append(read_state(s + 1))
    print(f"removed section {s}: tail {'refcount ' + str(m.frames.refcount[tail]) if alive else 'freed'}"
          f", head {'alive' if m.frames.kind[head] else 'freed'}, RAM pages {m.ram.used}")

# %% [markdown]
# The same run, drawn:

# %%
from vmemlab.viz.lifetimes import teardown_view

teardown_view(rows, title="a 1 GiB compound page's memmap, removed one section at a time")

# %% [markdown]
# **What to notice:** the head page goes with the first section; the tail page loses one
# reference per PTE cleared, section after section, and is freed with the last one, never
# before and never twice. The PTE tables go as they empty, so RAM comes back in steps.
#
# ## Any order, nothing lost
#
# Hot-add and hot-remove four 1 GiB namespaces in a seeded random order, at 1 GiB alignment,
# and compare the machine's state at the end with a fresh one:

# %%
import random

from vmemlab.machine import Machine
from vmemlab.memremap import DevPagemap, memremap_pages, memunmap_pages

GiB = 1 << 30
m = Machine("x86_64", "6.6", ram="4G")
initial = m.state()
rng = random.Random(10)
mapped = {}
for step in range(12):
    slot = rng.randrange(4)
    if slot in mapped:
        memunmap_pages(m, mapped.pop(slot))
        action = "remove"
    else:
        mapped[slot] = DevPagemap(ranges=[(64 * GiB + slot * GiB, 65 * GiB + slot * GiB)],
                                  vmemmap_shift=18, name=f"dax{slot}.0")
        memremap_pages(m, mapped[slot])
        action = "add   "
    print(f"{action} slot {slot}: RAM pages in use {m.ram.used}")
for pgmap in list(mapped.values()):
    memunmap_pages(m, pgmap)
print("state back to the booted machine:", m.state() == initial)

# %% [markdown]
# ## Shared page tables need the same care
#
# The v3 series shared PTE tables between PMD entries. Freeing then needs reference counts on
# the *tables* too: a PMD entry pointing at a shared table drops its reference, and only the
# last one clears the PTEs and frees the table. The model does that:

# %%
p = vmemlab.plan("2G", align="1G", kernel="v3")
m = p._machine
print("page-table pages while mapped:", p.ram_pagetable_pages)
vmemlab.teardown(p)
print("frames still allocated after teardown:", m.state()["live_frames"])

# %% [markdown]
# ## A corner the 6.6 rule closed
#
# In 5.19 any compound order above 0 took the deduplicating path. For order 1 the compound
# memmap is 128 bytes, smaller than a page, and the population loop (populate the page of `addr`
# and the page after it) then maps one vmemmap page *past* the section's memmap. The model
# follows the code and shows what that implies on removal:

# %%
m = Machine("x86_64", "5.19")
pg = DevPagemap(ranges=[(64 * GiB, 64 * GiB + (128 << 20))], vmemmap_shift=1)
memremap_pages(m, pg)
memunmap_pages(m, pg)
print("kernel 5.19, order 1: frames left after removal:", m.state()["live_frames"])
m = Machine("x86_64", "6.6")
pg = DevPagemap(ranges=[(64 * GiB, 64 * GiB + (128 << 20))], vmemmap_shift=1)
memremap_pages(m, pg)
memunmap_pages(m, pg)
print("kernel 6.6,  order 1: frames left after removal:", m.state()["live_frames"])

# %% [markdown]
# Device-dax never uses order 1 (it offers 4K, 2M and 1G), so no real system hit this; since 6.6
# (`VMEMMAP_RESERVE_NR`) such small orders are not deduplicated at all.
#
# ## A corner on ppc64 radix before 6.4
#
# ppc64 maps the vmemmap in 2 MiB blocks and records each block in a list (`vmemmap_list`,
# arch/powerpc/mm/init_64.c); its `vmemmap_free` frees only the blocks on that list. From 5.19
# to 6.3 a compound device-dax range took the generic `vmemmap_populate_compound_pages` there
# too. That path maps base pages with PTEs and records nothing, so removal leaves them mapped.
# Remove a 1 GiB compound namespace and count what stays:

# %%
for kernel in ("5.19", "6.1", "6.6"):
    m = Machine("ppc64-radix-64k", kernel)
    pg = DevPagemap(ranges=[(64 * GiB, 65 * GiB)], vmemmap_shift=14)
    memremap_pages(m, pg)
    memunmap_pages(m, pg)
    print(f"kernel {kernel:4}: 64 KiB pages still allocated {m.ram.used}, "
          f"vmemmap PTEs still mapped {m.pgtables.mapped_ptes()}")

# %% [markdown]
# **What to notice:** only 5.19 keeps pages and PTEs after the removal: the two vmemmap pages and
# the page-table pages above them. 87a7ae75d738 (6.4,
# backported to the 6.1 stable kernel modelled here) took ppc64 off the compound path. 6.6 gave
# radix its own populate and free for compound pages.
#
# ## Exercises

# %%
from vmemlab import exercises

ex = exercises.generate("teardown-refcount", seed=10)
ex

# %%
answer = None  # your answer
ex.check(answer)

# %%
ex_pages_returned = exercises.generate("pages-returned", seed=10)
ex_pages_returned

# %%
answer = None  # your answer
ex_pages_returned.check(answer)

# %% [markdown]
# ## Summary
#
# * Teardown is section by section; each cleared PTE puts one reference.
# * The shared tail page is freed with its last PTE: no leak, no double free.
# * Sharing page tables (v3) needs table reference counts as well.
#
# **In the kernel:** `mm/memremap.c` (`memunmap_pages`), `mm/sparse.c` (`section_deactivate`),
# `arch/x86/mm/init_64.c` (`remove_pagetable`, `free_pagetable`), `mm/sparse-vmemmap.c`
# (the `get_page` comment in `vmemmap_pte_populate`).
#
# **Next:** [11 — Does the model match a real kernel?](11-real-kernel-check.ipynb)
