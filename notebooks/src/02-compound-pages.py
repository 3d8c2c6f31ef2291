# %% [markdown]
# # 02 — Compound pages
#
# **Goals.** After this chapter you can tell a head page from a tail page by reading its
# `struct page`, decode the `compound_head` word of a tail, say where the kernel keeps a compound
# page's order, size and pin count (in 5.17 and in 6.x), and show that the struct pages of all
# tails hold the same bytes while a head's carry state of their own.

# %% [markdown]
# ## Many page frames, one object
#
# A **compound page** is `1 << order` physically contiguous page frames that the kernel treats
# as one object: a 2 MiB HugeTLB or transparent huge page (order 9), a 1 GiB HugeTLB page
# (order 18), and, since Linux 5.17, every 2 MiB or 1 GiB page of a device-dax instance. The
# first frame is the **head**; the others are **tails**. Each frame still has its own
# `struct page`, and the kernel marks them so that any of them leads to the head.
#
# `vmemlab.page` stores real 64-byte struct pages inside the frames the model's vmemmap maps and
# reads them with the kernel's own helper names. Populate a small device-dax namespace with
# 2 MiB compound pages and look at three of its struct pages. The namespace is populated by
# kernel 5.17, the first with compound device-dax pages: its vmemmap is still the plain one of
# chapter 01, one physical page behind every vmemmap page. (What later kernels change is
# chapter 04's subject.)

# %%
import numpy as np

import vmemlab
from vmemlab import page as P

p = vmemlab.plan("128M", align="2M", kernel="5.17")
m, pgmap = p._machine, p._pgmap
first = pgmap.ranges[0][0] >> m.arch.page_shift
head = P.pfn_to_page(m, first)
print(f"{p.compound_pages} compound pages of order {p.vmemmap_shift}; the first starts at "
      f"pfn {first:#x}")
for name, pg in (("head", head), ("page 1", head + 1), ("page 300", head + 300)):
    print(f"{name:>8}: PageHead {P.PageHead(pg)!s:5}  PageTail {P.PageTail(pg)!s:5}  "
          f"compound_order {P.compound_order(pg)}  compound_nr {P.compound_nr(pg)}")

# %% [markdown]
# `compound_order()` and `compound_nr()` answer only for the head; asked about a tail they say
# 0 and 1, as in the kernel. Code that holds a tail must first find the head.
#
# ## `compound_head` and bit 0
#
# Word 1 of a tail's struct page (byte offset 8) is `compound_head`: the address of the head's
# struct page **plus one**. Struct pages are 64-byte aligned, so a real pointer never has bit 0
# set; the kernel borrows that bit to mean "I am a tail". Read the raw word of tail 300:

# %%
tail = head + 300
raw = tail.read("compound_head")
print(f"tail 300: compound_head word = {raw:#x}")
print(f"bit 0                        = {raw & 1}")
print(f"word - 1                     = {raw - 1:#x}")
print(f"head's struct page address   = {head.va:#x}  (VMEMMAP_START + {first:#x} * 64)")
print(f"head.va % 64                 = {head.va % 64}")

# %% [markdown]
# `compound_head(page)` is exactly that test and subtraction (`_compound_head()` in
# `include/linux/page-flags.h`). The head's own word 1 is something else: for a ZONE_DEVICE page
# it is `pgmap`, a pointer to the `struct dev_pagemap` that describes the whole namespace
# (chapter 04 follows how it is made), and its bit 0 is clear.

# %%
print("compound_head(tail 300) is the head:", P.compound_head(tail) == head)
word1 = head.read("compound_head")
print(f"head's word 1 = {word1:#x} (bit 0 = {word1 & 1}), page_pgmap(head) is the namespace's "
      f"pgmap: {P.page_pgmap(head) is pgmap}")
heads = P.compound_head_pfns(m, first + np.arange(512 * 4))
print("compound_head of the first 2048 pfns, as heads:", sorted(set((heads - first).tolist())))

# %% [markdown]
# The head carries `PG_head` in `page->flags` instead; that is how `PageHead()` answers.
#
# ## The first and second tail pages
#
# A compound page needs more metadata than one struct page has room for: its order, its
# number of pages, a mapcount for the whole page, a pin count. The kernel keeps them in the
# **first and second tail pages**, whose words 2–5 are otherwise unused (a tail needs only its
# `compound_head`). Where exactly changed across versions. Read the same compound page under
# three kernels:

# %%
from vmemlab.machine import Machine
from vmemlab.memremap import DevPagemap, memremap_pages

GiB = 1 << 30
for kernel in ("5.17", "5.19", "6.6"):
    mk = Machine("x86_64", kernel)
    memremap_pages(mk, DevPagemap(ranges=[(64 * GiB, 64 * GiB + (128 << 20))], vmemmap_shift=9))
    h = P.pfn_to_page(mk, (64 * GiB) >> 12)
    off, field = P.pincount_location(mk)
    if P.layout_key(mk.kernel) == "folio":
        where = (f"page[1]._flags_1 & 0xff = {(h + 1).read('_flags_1') & 0xFF}, "
                 f"page[1]._folio_nr_pages = {(h + 1).read('_folio_nr_pages')}")
    else:
        where = (f"page[1].compound_order = {(h + 1).read('compound_order')}, "
                 f"page[1].compound_nr = {(h + 1).read('compound_nr')}")
    print(f"kernel {kernel:>4} (layout {P.layout_key(mk.kernel)!r:>7}): {where}; "
          f"pin count in page[{off}].{field}")

# %% [markdown]
# * **5.17** keeps `compound_dtor`, `compound_order`, `compound_mapcount` and `compound_nr` in
#   page[1] and the pin count in page[2] (`hpage_pinned_refcount`).
# * **5.18–6.1** moved the pin count to page[1] (`compound_pincount`), so an order-1 compound
#   page (which has no page[2]) can be pinned too.
# * **6.6** describes the head and its first tails as a `struct folio`: the order sits in the
#   low byte of page[1]'s flags word (`_flags_1`), next to `_entire_mapcount`,
#   `_nr_pages_mapped`, `_pincount` and `_folio_nr_pages`.
#
# These fields share bytes with the tail's ordinary fields (a C union), and the overlaps are
# real. `prep_compound_tail()` writes `TAIL_MAPPING`, a poison value, into every tail's
# `mapping`; in page[1] the compound metadata written afterwards covers part or all of it:

# %%
for kernel in ("5.17", "6.6"):
    mk = Machine("x86_64", kernel)
    memremap_pages(mk, DevPagemap(ranges=[(64 * GiB, 64 * GiB + (128 << 20))], vmemmap_shift=9))
    h = P.pfn_to_page(mk, (64 * GiB) >> 12)
    print(f"kernel {kernel:>4}: page[1].mapping = {(h + 1).read('mapping'):#018x}, "
          f"page[2].mapping = {(h + 2).read('mapping'):#018x} (TAIL_MAPPING = "
          f"{P.TAIL_MAPPING:#x})")

# %% [markdown]
# In 5.17 the low half of page[1]'s `mapping` is `compound_nr` (0x200 = 512); in 6.6 the whole
# word is `_entire_mapcount` (-1) and `_nr_pages_mapped` (0) (6.12 moved them again). That is
# one reason kernel code reads `mapping` through the head (`page_folio(page)->mapping`), never
# through a tail.
#
# ## One compound page, field by field
#
# The figure reads the head, the first and second tails, the first struct page of vmemmap pages
# 1 and 2, and the last tail of compound page 0, all through the vmemmap. The bottom row says
# which vmemmap page and physical frame each was read from.

# %%
from vmemlab import viz

fig = viz.struct_page_view(p)
fig

# %%
from vmemlab.viz.structpage import struct_page_columns

cols = struct_page_columns(head.pfn, 512, m.arch.STRUCT_PAGES_PER_PAGE)
for _label, pfn, _role in cols:
    pg = P.pfn_to_page(m, pfn)
    vpn = pg.vaddr >> m.arch.page_shift
    phys = int(m.pgtables.resolve_pfn(np.array([vpn]))[1][0])
    kind = "PageHead" if P.PageHead(pg) else "PageTail"
    print(f"page {pfn - head.pfn:>3}: {kind}, compound_head -> page "
          f"{P.compound_head(pg).pfn - head.pfn}, read through vmemmap page "
          f"{vpn - (head.vaddr >> m.arch.page_shift)} -> RAM pfn {phys:#x}")

# %%
v0 = head.vaddr >> m.arch.page_shift
kinds, phys = m.pgtables.resolve_pfn(v0 + np.arange(8))
print(f"vmemmap pages 0-7 of compound page 0 are backed by {len(set(phys.tolist()))} distinct "
      f"physical pages, pfns {phys.min():#x}-{phys.max():#x}")
print(f"mapped by PMD leaves (the boot-style 2 MiB block of chapter 01): "
      f"{m.pgtables.pmd_entry(v0 >> m.pgtables.pte_bits)[0] == 'leaf'}")

# %% [markdown]
# **What to notice:** pages 0, 1 and 2 are read from one physical page (vmemmap page 0), where
# the head and the compound metadata live; pages 64, 128 and 511 each from a physical page of
# their own, consecutive pages of one PMD-mapped block, as in chapter 01's plain vmemmap.
#
# ## Exploring the order
#
# The explorer below rebuilds the namespace for another compound order (or kernel) and redraws
# the table. It comes with a task: move the order until the figure shows what the question
# asks, then type the order you found. The static rendering after it is the explorer's
# starting state, which the figure above does not show. (Its `memmap` switch and the later
# kernels belong to chapters 03 and 04.)

# %%
from vmemlab.widgets import tasks

task = tasks.own_tail_page_order()
task

# %%
# NBVAL_IGNORE_OUTPUT
# Interactive widget: its display is a live view that nbval cannot compare (the static
# rendering in the next cell is checked instead).
task.ui

# %%
view = task.render_static()
view.figures[0]

# %%
print(view.text)

# %% [markdown]
# **What to notice:** at the smallest order every struct page, head and tails alike, is read
# from vmemmap page 0. Slide right and watch the bottom row for the first struct page read
# from another vmemmap page.

# %%
answer = None  # the order you found
task.check(answer)

# %% [markdown]
# ## Tails are all alike; heads are not
#
# For the tails of one compound page every struct page holds the same bytes: the same flags,
# the same `compound_head`, `TAIL_MAPPING`, refcount 0 and mapcount -1, whatever its index.
# Count the distinct 64-byte values among the tails of compound page 0:

# %%
words = P.read_field(m, head.pfn + np.arange(512), "words")
print("distinct struct pages among tails 3..511:", len(np.unique(words[3:], axis=0)))
print("distinct struct pages among pages 0, 1, 2:", len(np.unique(words[:3], axis=0)))

# %% [markdown]
# Everything that differs (the head and the compound metadata in pages 1 and 2) sits in vmemmap
# page 0. A head is different: its reference count,
# `mapping` and `index` change while the page is in use, and they belong to *this* compound
# page. The kernel therefore takes references only on the head (`get_page()` on a tail goes to
# `page_folio()`), and the heads of two compound pages live in two different frames:

# %%
h0, h1 = head, head + 512
P.page_ref_add(h0, 3)
print(f"after 3 references on compound page 0: refcount head 0 = {P.page_ref_count(h0)}, "
      f"head 1 = {P.page_ref_count(h1)}")
print(f"page_count(tail 300) = {P.page_count(head + 300)} (it reads the head), its own "
      f"_refcount = {P.page_ref_count(head + 300)}")
P.page_ref_sub(h0, 3)
for c in (0, 1):
    vc = (head.pfn + 512 * c) * 64 >> 12
    f0, f1 = m.pgtables.resolve_pfn(np.array([vc, vc + 1]))[1].tolist()
    print(f"compound page {c}: head page at RAM pfn {f0:#x}, first tail page at {f1:#x}")

# %% [markdown]
# So the vmemmap pages past page 0 hold nothing but copies of one tail, and one copy could
# serve them all; a head's page could not be shared between compound pages without a
# reference taken on one showing on the other (every tail also records *its* head, so even a
# tail page belongs to one compound page). Chapters 03 and 04 are the kernel's two ways of
# acting on this.
#
# ## Exercises

# %%
from vmemlab import exercises

ex1 = exercises.generate("compound-head", seed=2)
ex1

# %%
answer = None  # your answer
ex1.check(answer)

# %% [markdown]
# ## Summary
#
# * A compound page is a head and `(1 << order) - 1` tails; each tail's `compound_head` word is
#   the head's struct page address with bit 0 set.
# * Order, size, mapcount and pin count live in the first (and in 5.17 the second) tail page:
#   `compound_order`/`compound_nr` in 5.17, `_flags_1`/`_folio_nr_pages`/`_pincount` in 6.x.
# * All tails past vmemmap page 0 hold identical bytes; the head and the compound metadata,
#   in vmemmap page 0, hold state of their own. In 5.17 each vmemmap page still has its own
#   physical page.
#
# **In the kernel:** `include/linux/page-flags.h` (`_compound_head`, `PageHead`, `PageTail`,
# `page_fixed_fake_head`), `include/linux/mm_types.h` (`struct page`, `struct folio`),
# `mm/internal.h` (`prep_compound_head`, `prep_compound_tail`), `mm/page_alloc.c`
# (`prep_compound_page`), `mm/mm_init.c` (`memmap_init_compound`), `include/linux/mm.h`
# (`compound_order`, `compound_nr`).
#
# **Next:** [03 — HugeTLB Vmemmap Optimization](03-hugetlb-vmemmap-optimization.ipynb)
