# %% [markdown]
# # 01 — `struct page` and the sparse vmemmap
#
# **Goals.** After this chapter you can compute where a page frame's `struct page` lives, say
# what a memory section and a subsection are, and explain why struct pages cost 1.56% of memory.

# %% [markdown]
# ## One struct page per page frame
#
# The kernel manages physical memory in page frames, numbered by their **pfn** (page frame
# number). Each frame has a `struct page` describing it: flags, a reference count, who maps it.
# The architecture presets in `vmemlab.ARCHES` carry the constants:

# %%
import vmemlab

x86 = vmemlab.get_arch("x86_64")
print("PAGE_SIZE           ", x86.PAGE_SIZE)
print("sizeof(struct page) ", x86.struct_page_size)
print("struct pages / page ", x86.STRUCT_PAGES_PER_PAGE)
print(f"metadata share       {x86.struct_page_size / x86.PAGE_SIZE:.4%}")

# %% [markdown]
# 64 bytes for every 4096 is the 1.56% of the title. For one TiB of memory:

# %%
from vmemlab.units import TiB, format_size

frames = TiB // x86.PAGE_SIZE
print(f"{frames} page frames -> {format_size(frames * x86.struct_page_size)} of struct pages")

# %% [markdown]
# ## The vmemmap is an array you index by pfn
#
# With `CONFIG_SPARSEMEM_VMEMMAP` all struct pages sit in one virtually contiguous array that
# starts at `VMEMMAP_START`, so `pfn_to_page(pfn)` is just `vmemmap + pfn`: no lookup. The
# vmemmap is *virtual*: only the parts that describe memory which exists are backed by page
# frames, through ordinary kernel page tables. In the model, an address inside the vmemmap is a
# byte offset from `VMEMMAP_START`:

# %%
pfn = 0x123456
offset = pfn * x86.struct_page_size
print(f"pfn_to_page({pfn:#x}) = VMEMMAP_START + {offset:#x}")
print(f"vmemmap page {offset >> x86.page_shift}, slot {pfn % x86.STRUCT_PAGES_PER_PAGE} of "
      f"{x86.STRUCT_PAGES_PER_PAGE}")

# %% [markdown]
# **Page tables, the words this workbook uses.** The kernel finds the page behind a virtual
# address, the vmemmap's included, by walking a tree of page tables. On x86_64 (4 levels) the
# levels are, top to bottom: **PGD** (page global directory), **PUD** (page upper directory),
# **PMD** (page middle directory) and **PTE** (page table entry). Each table is one page of
# entries; an entry points at the next level's table, or, at the PUD or PMD level, can map a
# whole block directly (a *huge* or *leaf* mapping). A **PTE table** is one page of PTEs, the
# last level: each PTE maps one base page. How much one entry maps at each level:

# %%
for level in reversed(x86.levels):
    print(f"{level.name.upper():>3}: {level.ptrs} entries per table, one entry maps "
          f"{format_size(1 << level.shift)}")

# %% [markdown]
# ## Sections and subsections
#
# Memory appears and disappears in **sections** (`1 << SECTION_SIZE_BITS` bytes, 128 MiB on
# x86_64). Since Linux 5.3 each section is split into 2 MiB **subsections**, so device memory can
# be added at that finer granularity; a bitmap per section, `subsection_map`, records which
# subsections are present.

# %%
for name, a in vmemlab.ARCHES.items():
    print(f"{name:>16}: section {format_size(1 << a.section_size_bits):>5}, "
          f"{a.PAGES_PER_SECTION:>6} pages, {a.SUBSECTIONS_PER_SECTION:>3} subsections of "
          f"{a.PAGES_PER_SUBSECTION:>3} pages, memmap per section "
          f"{format_size(a.PAGES_PER_SECTION * a.struct_page_size)}")

# %% [markdown]
# Notice that on x86_64 one section's memmap is exactly 2 MiB: the size of one PMD mapping.
# That is why x86 maps the memmap of a whole section with a single huge (PMD) page.
#
# Let us boot a small machine with 1 GiB of RAM and hot-add 6 MiB of device memory: three
# subsections of a fresh section.

# %%
from vmemlab.machine import Machine
from vmemlab.memremap import DevPagemap, memremap_pages

m = Machine("x86_64", "6.6", ram="1G")
dev = DevPagemap(ranges=[(4 << 30, (4 << 30) + (6 << 20))], name="dax0.0")
memremap_pages(m, dev)
ms = m.sparse.sections[m.sparse.pfn_to_section_nr((4 << 30) >> 12)]
print(f"section {ms.nr}: subsection_map = {ms.subsection_map:#066b}")
print("pfn_valid(first pfn)   ", m.sparse.pfn_valid((4 << 30) >> 12))
print("pfn_valid(pfn at +8MiB)", m.sparse.pfn_valid(((4 << 30) + (8 << 20)) >> 12))

# %% [markdown]
# Three bits are set: the three subsections we added. Their memmap (3 × 32 KiB) was populated
# with 4 KiB pages, because a partial section is less than a PMD's worth of memmap. The boot
# RAM, by contrast, got one 2 MiB block per section:

# %%
u = m.usage()
print("boot sections           ", sum(s.early for s in m.sparse.sections.values()))
print("PMD-mapped memmap blocks", len(m.pgtables.pmd_leaf))
print("4 KiB memmap pages      ", m.pgtables.mapped_ptes())
print("page-table pages        ", u["ram_pagetable_pages"])

# %% [markdown]
# Here is that machine's vmemmap, drawn from the model: the present sections of physical memory
# (top), the slice of the virtual `vmemmap` array holding each section's struct pages (middle,
# as an offset from `VMEMMAP_START`), and the pages that back each slice through the kernel page
# tables (bottom).

# %%
from vmemlab.viz.vmemmap_overview import read_sections, vmemmap_overview

vmemmap_overview(m)

# %%
for it in read_sections(m, max_sections=len(m.sparse.sections)):  # every section
    if "gap" in it:
        print(f"{it['gap']} absent sections: nothing in the vmemmap")
        continue
    backing = ", ".join(f"{b['kind']} ({b['pages']} pages)" for b in it["backing"])
    print(f"section {it['nr']:>2}: {it['subsections']}/{it['of']} subsections, "
          f"vmemmap +{it['vmemmap'][0]:#x}..{it['vmemmap'][1]:#x}: {backing}")

# %% [markdown]
# **What to notice:** the vmemmap has a slot for every possible pfn, but only present sections
# have pages behind their slice. Each full RAM section's slice is one PMD entry mapping one
# block; the device's partial section has only as much memmap as its subsections need, mapped
# one base page at a time through a PTE table. Everything later in the workbook changes this
# bottom row: compound pages let several vmemmap pages share one backing page.

# %% [markdown]
# ## Exercises

# %%
from vmemlab import exercises

ex1 = exercises.generate("pfn-to-page", seed=1)
ex1

# %%
answer = None  # your answer
ex1.check(answer)

# %%
ex2 = exercises.generate("sections", seed=1)
ex2

# %%
answer = None  # your answer
ex2.check(answer)

# %% [markdown]
# ## Summary
#
# * One 64-byte `struct page` per 4 KiB frame: 1.56%, 16 GiB per TiB.
# * `pfn_to_page(pfn)` is `vmemmap + pfn`; the vmemmap is virtual and backed only where memory
#   exists.
# * Memory is added in sections (128 MiB on x86_64) and, since 5.3, 2 MiB subsections.
#
# **In the kernel:** `include/linux/mmzone.h` (section constants), `mm/sparse.c`
# (`sparse_add_section`, `section_activate`, `fill_subsection_map`), `mm/sparse-vmemmap.c`
# (`__populate_section_memmap`), `arch/x86/mm/init_64.c` (`vmemmap_populate`).
#
# **Next:** [02 — Compound pages](02-compound-pages.ipynb)
