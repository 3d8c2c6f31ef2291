# %% [markdown]
# # 04 — Device-dax compound pagemaps
#
# **Goals.** Follow a device-dax namespace from `ndctl create-namespace` to a populated vmemmap;
# see which vmemmap pages are shared and why; see why putting struct pages on the device
# (`--map=dev`) gives up the saving.

# %% [markdown]
# ## From a namespace to a `dev_pagemap`
#
# `ndctl create-namespace --mode=devdax --align=2M --map=mem` asks the nvdimm driver to lay out
# the namespace (`nd_pfn_init` in `drivers/nvdimm/pfn_devs.c`): an 8 KiB info block at the start,
# then, with `--map=dev`, room for the struct pages, then the data, aligned. Device-dax hands the
# kernel a `struct dev_pagemap` covering the namespace, with `vmemmap_shift` set from the align:
# every `1 << vmemmap_shift` pages form one **compound page**.

# %%
import vmemlab
from vmemlab.nvdimm_pfn import dev_dax_vmemmap_shift, nd_pfn_init
from vmemlab.units import format_size

x86 = vmemlab.get_arch("x86_64")
for mode in ("mem", "dev"):
    info = nd_pfn_init(x86, start=64 << 30, size=16 << 30, align=2 << 20, mode=mode)
    print(f"--map={mode}: data offset {format_size(info.dataoff):>6}, data pages {info.npfns}")
for align in (4 << 10, 2 << 20, 1 << 30):
    print(f"align {format_size(align):>3} -> vmemmap_shift {dev_dax_vmemmap_shift(x86, align)}")

# %% [markdown]
# With `--map=dev` the first 258 MiB of the 16 GiB namespace hold its own struct pages.
#
# ## Populating with tail reuse
#
# `memremap_pages` adds the range section by section; for each one
# `__populate_section_memmap` asks `vmemmap_can_optimize(altmap, pgmap)`. When the answer is
# yes, `vmemmap_populate_compound_pages` maps, for every compound page:
#
# 1. a new page for the vmemmap page holding the **head** struct page (and tails 1–63),
# 2. a new page for the next vmemmap page (tails 64–127: only tails),
# 3. every further vmemmap page of the compound page **to that same tail page**, taking a
#    reference (`get_page`) for each mapping.
#
# A 2 MiB compound page has 512 struct pages = 32 KiB = 8 vmemmap pages, so 6 of them are
# reused. Populate 16 GiB and look at the first compound page in the model's page tables:

# %%
import numpy as np

p = vmemlab.plan("16G", align="2M", map="mem")
m, pgmap = p._machine, p._pgmap
first_pfn = pgmap.ranges[0][0] >> x86.page_shift
vpns = first_pfn * x86.struct_page_size // x86.PAGE_SIZE + np.arange(8)
frames, _ = m.pgtables.resolve(vpns)
for i, (v, f) in enumerate(zip(vpns.tolist(), frames.tolist())):
    role = "head" if i == 0 else ("tail page" if i == 1 else "reuses the tail page")
    print(f"vmemmap page {i} (vpn {v}): frame {f:>4}, refcount {m.frames.refcount[f]}  {role}")

# %% [markdown]
# The head page's frame is private (refcount 1); the tail page's frame is mapped 7 times, and
# its refcount is 7: one for the allocation and one `get_page()` per reuse PTE. Drawn from the
# same page tables:

# %%
from vmemlab import viz

fig = viz.vmemmap_mapping(p)
fig

# %%
print(f"vmemmap pages per compound page: {p.vmemmap_pages_per_compound}, "
      f"backed by their own frame: {p.vmemmap_pages_per_compound - p.saved_vmemmap_pages_per_compound}, "
      f"saved: {p.saved_vmemmap_pages_per_compound}")

# %% [markdown]
# **What to notice:** eight virtual pages on the left, two physical frames on the right; every
# arrow after the second lands on the same frame. That is the whole trick: struct pages 64 to
# 511 of the compound page all *read* the same 64 tail struct pages, which is fine because tail
# struct pages of one compound page are identical (each just points at the head).
#
# ## The cost at scale
#
# For the whole namespace, each compound page keeps 2 of its 8 vmemmap pages:

# %%
for align in ("4K", "2M", "1G"):
    q = vmemlab.plan("16G", align=align)
    print(f"align {align:>2}: {q.compound_pages:>7} compound pages, struct-page RAM "
          f"{format_size(q.ram_data_pages * q.page_size):>5}, page tables "
          f"{q.ram_pagetable_pages:>4} pages, deduplicated: {q.optimised}")

# %% [markdown]
# ## Exploring the order
#
# Device-dax offers 4K, 2M and 1G, but the mechanism works for any compound order the rule in
# `vmemmap_can_optimize` accepts. The explorer below lets you slide the order, switch the
# altmap and the kernel variant; the static rendering after it is the same explorer at order 9.

# %%
# NBVAL_IGNORE_OUTPUT
# Interactive widget: its display is a live view that nbval cannot compare (the static
# rendering in the next cell is checked instead).
from vmemlab import widgets

explorer = widgets.MappingExplorer(size="16M")
explorer

# %%
view = explorer.render_static(order=9, map="mem", size="16M")
view.figures[0]

# %%
print(view.text)

# %% [markdown]
# ## Why `--map=dev` gives up the saving
#
# With `--map=dev` the struct pages live on the device, carved out of a `vmem_altmap`. The rule
# in `vmemmap_can_optimize` refuses any altmap, so every section gets its full 2 MiB block:

# %%
for mode in ("mem", "dev"):
    q = vmemlab.plan("16G", align="2M", map=mode)
    print(f"--map={mode}: deduplicated {q.optimised!s:5}  RAM {format_size(q.ram_bytes):>7}  "
          f"device {format_size((q.device_data_pages + q.device_align_pages) * q.page_size):>6}")

# %% [markdown]
# The code gives no reason in a comment; the structure suggests one. Reuse relies on reference
# counting the shared vmemmap page (`get_page` when mapping, `put_page_testzero` when
# unmapping), which needs an initialised `struct page` for that page. Pages carved from an
# altmap are handed out by a bump allocator and given back by `vmem_altmap_free()`, which only
# counts; their own struct pages are never initialised (`memmap_init_zone_device` starts after
# them). So device-resident memmap is populated in full. It costs no RAM, only device space,
# which is why both layouts exist.
#
# ## Exercises

# %%
from vmemlab import exercises

ex1 = exercises.generate("vmemmap-pages", seed=4)
ex1

# %%
answer = None  # your answer
ex1.check(answer)

# %%
ex2 = exercises.generate("tail-refcount", seed=4)
ex2

# %%
answer = None  # your answer
ex2.check(answer)

# %%
ex3 = exercises.generate("altmap-free", seed=4)
ex3

# %%
answer = None  # your answer
ex3.check(answer)

# %% [markdown]
# A question about *why*: answer with the number of the option.

# %%
ex_why = exercises.generate("why-map-dev", seed=4)
ex_why

# %%
answer = None  # the number of your choice
ex_why.check(answer)

# %% [markdown]
# ## Summary
#
# * Device-dax sets `vmemmap_shift` from the align; each compound page's vmemmap keeps a head
#   page and one tail page, and the rest map the tail page (6 of 8 saved at 2 MiB).
# * Reuse is reference counted: the tail page's count is one per PTE that maps it.
# * With an altmap (`--map=dev`) nothing is deduplicated: the memmap is on the device instead.
#
# **In the kernel:** `drivers/nvdimm/pfn_devs.c` (`nd_pfn_init`), `drivers/dax/device.c`
# (`dev_dax_probe`), `mm/memremap.c` (`memremap_pages`), `mm/sparse-vmemmap.c`
# (`vmemmap_populate_compound_pages`, `vmemmap_pte_populate`), `include/linux/mm.h`
# (`vmemmap_can_optimize`).
#
# **Next:** [05 — Bigger than a section](05-bigger-than-a-section.ipynb)
