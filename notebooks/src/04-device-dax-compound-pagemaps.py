# %% [markdown]
# # 04 — Device-dax compound pagemaps
#
# **Goals.** Follow a device-dax namespace from `ndctl create-namespace` to a populated vmemmap;
# see which vmemmap pages are shared and why; see why putting struct pages on the device
# (`--map=dev`) gives up the saving; say how this differs from HVO (chapter 03).

# %% [markdown]
# ## The whole pipeline, once
#
# One `ndctl create-namespace --mode=devdax --map=mem --align=2M` on a 16 GiB namespace, run in
# the model. The figure names the five kernel steps it goes through and prints what each did in
# this run; the sections below take them one at a time, and chapters 05 and 06 return to the
# last two.

# %%
import vmemlab
from vmemlab.viz.pipeline import pipeline_stages, pipeline_view

p = vmemlab.plan("16G", align="2M", map="mem")
fig = pipeline_view(p)
fig

# %%
stages = pipeline_stages(p)
for st in stages:
    print(f"{st.function:<24} " + "; ".join(st.lines))
pop, init = stages[3].numbers, stages[4].numbers
print(f"vmemmap pages per physical page behind them: "
      f"{pop['vmemmap_pages'] / pop['physical_pages']:g}")
print(f"share of the range's struct pages written: "
      f"{init['struct_pages_initialised'] / init['struct_pages']:.0%}")

# %% [markdown]
# **What to notice:** the fourth box maps several vmemmap pages per physical page it allocates,
# and the fifth writes only a fraction of the struct pages in the range (both printed above).
# Both come from the one idea of this chapter: the tails' vmemmap pages share a page.

# %% [markdown]
# ## From a namespace to a `dev_pagemap`
#
# `ndctl create-namespace --mode=devdax --align=2M --map=mem` asks the nvdimm driver to lay out
# the namespace (`nd_pfn_init` in `drivers/nvdimm/pfn_devs.c`): an 8 KiB info block at the start,
# then, with `--map=dev`, room for the struct pages, then the data, aligned. Device-dax hands the
# kernel a `struct dev_pagemap` covering the namespace, with `vmemmap_shift` set from the align:
# every `1 << vmemmap_shift` pages form one **compound page**.

# %%
from vmemlab.nvdimm_pfn import dev_dax_vmemmap_shift, nd_pfn_init
from vmemlab.units import format_size

x86 = vmemlab.get_arch("x86_64")
for mode in ("mem", "dev"):
    info = nd_pfn_init(x86, start=64 << 30, size=16 << 30, align=2 << 20, mode=mode)
    print(f"--map={mode}: data offset {format_size(info.dataoff):>6}, data pages {info.npfns}")
for align in (4 << 10, 2 << 20, 1 << 30):
    print(f"align {format_size(align):>3} -> vmemmap_shift {dev_dax_vmemmap_shift(x86, align)}")

# %%
dev_info = nd_pfn_init(x86, start=64 << 30, size=16 << 30, align=2 << 20, mode="dev")
print(f"with --map=dev the first {format_size(dev_info.dataoff)} of the 16 GiB namespace hold "
      f"its own struct pages (and the info block)")

# %% [markdown]
# That is the first box of the pipeline figure; `memremap_pages` (the second) receives the
# pgmap and hands each memory section to `section_activate` (the third).
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
# This is the pipeline's fourth box. Chapter 02 showed why step 3 is safe: past vmemmap page 0
# every struct page of a compound page holds the same bytes. A 2 MiB compound page has 512
# struct pages = 32 KiB = 8 vmemmap pages, so 6 of them are reused. Look at the first compound
# page of the same 16 GiB namespace in the model's page tables:

# %%
import numpy as np

m, pgmap = p._machine, p._pgmap
first_pfn = pgmap.ranges[0][0] >> x86.page_shift
vpns = first_pfn * x86.struct_page_size // x86.PAGE_SIZE + np.arange(8)
frames, _ = m.pgtables.resolve(vpns)
for i, (v, f) in enumerate(zip(vpns.tolist(), frames.tolist())):
    role = "head" if i == 0 else ("tail page" if i == 1 else "reuses the tail page")
    print(f"vmemmap page {i} (vpn {v}): frame {f:>4}, refcount {m.frames.refcount[f]}  {role}")

# %% [markdown]
# The head page's frame is private: it holds only its allocation's reference. The tail page's
# frame is mapped by every vmemmap page after the head's, and its refcount (printed above)
# equals the number of PTEs that map it: one for the allocation and one `get_page()` per reuse
# PTE. Drawn from the same page tables:

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
# ## Tails share a physical page
#
# So struct pages 64–511 are seven virtual views of the 64 struct pages in that one frame: for
# *k* ≥ 64, tail *k* and tail *k* + 64 are the same 64 bytes of RAM. Write a value into tail 300
# and read the same field of all 512 struct pages:

# %%
from vmemlab import page as P

head = P.pfn_to_page(m, first_pfn)
P.pfn_to_page(m, head.pfn + 300).write("private", 0x5EED)
private = P.read_field(m, head.pfn + np.arange(512), "private")
seen = np.flatnonzero(private == 0x5EED).tolist()
print("the write is visible in struct pages:", seen)
print(f"{len(seen)} struct pages show it; {len(seen) - 1} of them were never written")
P.pfn_to_page(m, head.pfn + 300).write("private", 0)  # undo the experiment

# %% [markdown]
# Each of these indices is 300 modulo 64, and none is below 64: vmemmap page 0, with the head
# and the compound metadata, is the compound page's own. (Chapter 02's kernel 5.17 would show
# the write once: it did not deduplicate.)
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
# altmap and the kernel variant, on a 2 GiB namespace: whole sections only, and room for every
# order the slider offers with either `map`. (A namespace smaller than one compound page is
# refused, as `nd_pfn_init` refuses it, with the reason in the readout.) Its task: find the
# smallest order at which deduplication saves anything. It starts at device-dax's 2 MiB
# (order 9); the static rendering after it shows order 7, which the figure above does not.

# %%
from vmemlab.widgets import tasks

task = tasks.smallest_saving_order(start_order=9)
task

# %%
# NBVAL_IGNORE_OUTPUT
# Interactive widget: its display is a live view that nbval cannot compare (the static
# rendering in the next cell is checked instead).
task.ui

# %%
view = task.render_static(order=7)
view.figures[0]

# %%
print(view.text)

# %% [markdown]
# **What to notice:** at order 7 the compound page has two vmemmap pages, the head's and one
# tail page, and both are kept: nothing is reused. Move the slider up from there.

# %%
answer = None  # the order you found
task.check(answer)

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
# One exception, which the next task finds: a namespace whose memmap is less than one section's
# goes through `vmemmap_populate_basepages(start, end, node, NULL)` on x86_64
# (`arch/x86/mm/init_64.c`, `vmemmap_populate`), with no altmap, so its struct pages land in RAM
# whatever `--map` says. The explorer starts at `map=dev` on 2 GiB; change the namespace size:

# %%
task_dev = tasks.map_dev_ram_size()
task_dev

# %%
# NBVAL_IGNORE_OUTPUT
# Interactive widget: a live view nbval cannot compare; the next cells render it statically.
task_dev.ui

# %%
view = task_dev.render_static()
view.figures[0]

# %%
print(view.text)

# %% [markdown]
# **What to notice:** with `map=dev` on 2 GiB every vmemmap page maps a page on the device
# (hatched) and RAM pays only the page tables. Shrink the namespace until a frame turns blue.

# %%
answer = None  # the namespace size you found, e.g. "1G"
task_dev.check(answer)

# %% [markdown]
# ## HVO and device-dax, side by side
#
# Both save the vmemmap of tails by mapping many virtual pages to one physical page, but they
# start from different places:
#
# * **HVO** *remaps* a memmap that already exists (boot RAM, PMD-mapped): it splits PMDs, frees
#   pages, and since 5.18 reuses the **head** page (read-only tails, fake heads).
# * **device-dax** *populates* a new memmap deduplicated from the start
#   (`vmemmap_populate_compound_pages`), read-write, and reuses the first **tail** page,
#   so no struct page ever aliases a head: one page less saved per compound page.

# %%
from vmemlab import hugetlb_vmemmap as hvo

for order in (9, 18):
    c = hvo.contrast_with_device_dax(order)
    for who in ("device_dax", "hvo"):
        d = c[who]
        print(f"order {order:>2} {who:>10}: {d['vmemmap_pages']:>4} vmemmap pages, kept "
              f"{d['kept']}, others map vmemmap page {d['reused_vmemmap_page']}, saved "
              f"{d['saved']}")

# %% [markdown]
# The reference counts differ too. Device-dax's `vmemmap_pte_populate` calls `get_page(reuse)`
# for every PTE it points at the tail page (paired with the `put_page` of hot-remove); HVO's
# `vmemmap_remap_pte` takes none (chapter 03):

# %%
from vmemlab.viz.hvo_view import hvo_run

tail_frame = int(frames[1])
hvo_numbers = hvo_run("6.6", "2M").numbers
print(f"device-dax tail page: mapped by {int((frames == tail_frame).sum())} PTEs, page_count() "
      f"{hvo.vmemmap_page_count(m, tail_frame)}")
print(f"HVO kept page:        mapped by {hvo_numbers['reused_maps']} PTEs, page_count() "
      f"{hvo_numbers['reused_page_count']}")

# %% [markdown]
# The explorer draws both for any order and kernel. Its task: find a kernel under which HVO
# saves but device-dax does not. Below it, its starting point (2 MiB on 6.6), rendered
# statically.

# %%
task_hvo = tasks.hvo_without_dax_dedup()
task_hvo

# %%
# NBVAL_IGNORE_OUTPUT
# Interactive widget: a live view nbval cannot compare; the next cells render it statically.
task_hvo.ui

# %%
view = task_hvo.render_static()
view.figures[0]

# %%
print(view.text)

# %% [markdown]
# **What to notice:** the left panel's arrows land on the tail page (vmemmap page 1), the right
# panel's on the head's page (vmemmap page 0) through dashed, read-only PTEs: one page more
# saved by HVO, paid for with fake heads.

# %%
answer = None  # a kernel name, e.g. "6.6"
task_hvo.check(answer)

# %% [markdown]
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

# %%
ex4 = exercises.generate("tail-aliases", seed=2)
ex4

# %%
answer = None  # your answer
ex4.check(answer)

# %% [markdown]
# A question about *why*: answer with the number of the option.

# %%
ex_why = exercises.generate("why-map-dev", seed=4)
ex_why

# %%
answer = None  # the number of your choice
ex_why.check(answer)

# %%
ex_why2 = exercises.generate("why-tail-share", seed=2)
ex_why2

# %%
answer = None  # the number of your choice
ex_why2.check(answer)

# %% [markdown]
# ## Summary
#
# * Device-dax sets `vmemmap_shift` from the align; each compound page's vmemmap keeps a head
#   page and one tail page, and the rest map the tail page (6 of 8 saved at 2 MiB).
# * Reuse is reference counted: the tail page's count is one per PTE that maps it.
# * A write to one deduplicated tail shows through every tail past vmemmap page 0 that shares
#   its slot in the tail page.
# * With an altmap (`--map=dev`) nothing is deduplicated: the memmap is on the device instead
#   (except below a section, where x86_64 populates base pages in RAM without the altmap).
# * Device-dax populates fresh and reuses a tail page, reference counted; HVO remaps onto the
#   head's page without references: one page more saved, fake heads.
#
# **In the kernel:** `drivers/nvdimm/pfn_devs.c` (`nd_pfn_init`), `drivers/dax/device.c`
# (`dev_dax_probe`), `mm/memremap.c` (`memremap_pages`), `mm/sparse-vmemmap.c`
# (`vmemmap_populate_compound_pages`, `vmemmap_pte_populate`), `include/linux/mm.h`
# (`vmemmap_can_optimize`).
#
# **Next:** [05 — Bigger than a section](05-bigger-than-a-section.ipynb)
