# %% [markdown]
# # 03 — HugeTLB Vmemmap Optimization
#
# **Goals.** Watch HugeTLB Vmemmap Optimization (HVO) free most of a HugeTLB page's struct pages
# by remapping its vmemmap read-only onto one kept page; count what it saves and what the page
# table split costs; see why 5.18 created "fake heads" and how `compound_head()` sees through
# them. (Device-dax's version of the idea, which populates rather than remaps, is chapter 04.)

# %% [markdown]
# ## A HugeTLB page and its vmemmap
#
# HugeTLB pages are carved out of ordinary System RAM, whose memmap was populated at boot: on
# x86_64 one 2 MiB PMD-mapped block per 128 MiB section (chapter 01). A 2 MiB HugeTLB page is a
# compound page of order 9 (chapter 02); its 512 struct pages fill 8 vmemmap pages. Boot a
# machine with 1 GiB of RAM and allocate one 2 MiB HugeTLB page:

# %%
import numpy as np

from vmemlab import hugetlb_vmemmap as hvo
from vmemlab import page as P
from vmemlab.machine import Machine

m = Machine("x86_64", "6.6", ram="1G")
print("boot memmap: PMD-mapped 2 MiB blocks", len(m.pgtables.pmd_leaf),
      "| RAM pages in use", m.ram.used, "| PTE tables", m.usage()["pte_tables"])
folio = hvo.alloc_hugetlb_folio(m, "2M")
head = P.pfn_to_page(m, folio.head_pfn)
print(f"HugeTLB page at pfn {folio.head_pfn:#x}: order {P.compound_order(head)}, "
      f"{P.compound_nr(head)} pages, {folio.nr_pages * 64 // 4096} vmemmap pages")

# %% [markdown]
# ## Remap and free
#
# Since the HugeTLB page's tail struct pages are all alike (chapter 02), most of its vmemmap
# can show the same physical page. `hugetlb_vmemmap_optimize()` (mm/hugetlb_vmemmap.c) keeps
# vmemmap page 0, the one holding the head and the compound metadata, and for pages 1–7:
#
# 1. splits the PMD leaf that maps them into a PTE table (`vmemmap_split_pmd`), so they can be
#    remapped one 4 KiB page at a time;
# 2. since 6.2, copies page 0 into a fresh page and maps the head PTE to the copy;
# 3. points the PTEs of pages 1–7 at the kept page, **read-only** (`vmemmap_remap_pte`);
# 4. frees the pages they mapped before.

# %%
before = m.usage()
report = hvo.hugetlb_vmemmap_optimize(m, folio)
for what, value in report.rows():
    print(f"{what:<26} {value}")
after = m.usage()
print(f"vmemmap data pages in RAM  {before['ram_data_pages']} -> {after['ram_data_pages']}")
print(f"PTE tables                 {before['pte_tables']} -> {after['pte_tables']}")
print(f"RAM pages in use           {before['ram_used']} -> {after['ram_used']}")

# %% [markdown]
# Before and after, in one picture (the layout of `Documentation/mm/vmemmap_dedup.rst`): the
# same HugeTLB page on two identically booted machines, the second optimized. Each panel is
# read from that machine's page tables; dashed arrows are read-only PTEs:

# %%
from vmemlab import viz
from vmemlab.viz.hvo_view import hvo_before_after, hvo_run

run = hvo_run("6.6", "2M")
fig = hvo_before_after(run)
fig

# %%
first_vpn = folio.head_pfn * 64 >> 12
vpns = first_vpn + np.arange(8)
frames, _ = m.pgtables.resolve(vpns)
ro = P.pte_is_ro(m, vpns)
for i in range(8):
    print(f"HVO vmemmap page {i}: frame {int(frames[i])}{' read-only' if ro[i] else ' read-write'}")
kept = int(frames[0])
print(f"distinct frames after HVO: {len(set(frames.tolist()))}; the kept frame is mapped by "
      f"{int((frames == kept).sum())} PTEs, page_count() = {hvo.vmemmap_page_count(m, kept)}")
print("the figure's run agrees with this chapter's machine:",
      run.numbers["frames_after"] == len(set(frames.tolist()))
      and run.numbers["freed"] == report.data_pages_freed)

# %% [markdown]
# **What to notice:** on the left the vmemmap pages map consecutive pages of one PMD-mapped
# boot block; on the right the block is split into a PTE table for this range, every vmemmap
# page after page 0 points at page 0's page through a read-only PTE, and the pages they mapped
# are free. The kept page is mapped by every PTE yet holds a single reference (the counts are
# printed above): HVO's `vmemmap_remap_pte` writes each PTE and takes no reference (no
# `get_page`). (Chapter 04 meets a scheme that does take one per PTE.)
#
# ## What the split costs
#
# The boot memmap was mapped with 2 MiB PMD leaves, and a PMD leaf cannot map 4 KiB pieces
# differently, so the first HugeTLB page optimized inside a PMD block pays one page for a PTE
# table. Later HugeTLB pages in the same block reuse that table. A 1 GiB page's 16 MiB of
# vmemmap covers 8 PMD blocks:

# %%
for kernel in ("5.17", "6.6"):
    for size in ("2M", "1G"):
        s = hvo.hvo_savings(kernel, size)
        print(f"kernel {kernel:>4}, {size}: {s['vmemmap_pages']:>4} vmemmap pages, keeps "
              f"{s['kept']}, frees {s['data_pages_freed']:>4}, split tables "
              f"{s['split_pte_tables']}, net {s['net_pages_saved']:>4}; a second page: "
              f"split tables {s['second_page_split_pte_tables']}, net "
              f"{s['second_page_net_pages_saved']}")

# %% [markdown]
# In KiB of RAM per HugeTLB page, with the split paid once per 128 MiB of HugeTLB memory
# (64 pages of 2 MiB share one PMD block of vmemmap):

# %%
for size, n in (("2M", 64), ("1G", 1)):
    s = hvo.hvo_savings("6.6", size)
    per = (n * s["data_pages_freed"] - s["split_pte_tables"]) / n
    total = s["vmemmap_pages"]
    print(f"{size}: {total * 4} KiB of struct pages, {per * 4:g} KiB freed per page "
          f"({100 * per / total:.1f}%)")

# %% [markdown]
# ## Read-only tails
#
# Every remapped tail PTE is `PAGE_KERNEL_RO`. Seven virtual pages now show the head's page,
# so a stray write through any of them would change the head (and every alias). Read-only
# turns that silent corruption into an immediate fault. Try it through `vmemlab.page`:

# %%
try:
    P.write_field(m, folio.head_pfn + 100, "private", 1)
except P.VmemmapFault as e:
    print(f"{type(e).__name__}: {e}")
P.write_field(m, folio.head_pfn + 3, "private", 5)  # tail 3 is in the kept page 0: writable
print("tail 3 (kept page) after a write:", P.read_field(m, folio.head_pfn + 3, "private")[0])
P.write_field(m, folio.head_pfn + 3, "private", 0)

# %% [markdown]
# The kernel can live with read-only tails because nothing writes a HugeTLB page's tail struct
# pages while it is a HugeTLB page: references, mapcounts and flags go to the head (and the
# first tails, all in page 0). Even a memory error in a tail is recorded in a list hanging off
# one of those first struct pages rather than in the tail's own flags; which one depends on the
# kernel's `struct folio`:

# %%
for kernel in ("6.1", "6.6", "6.12"):
    off, field = hvo.hugetlb_hwpoison_location(Machine("x86_64", kernel))
    print(f"kernel {kernel:>4}: the hwpoison list hangs off page[{off}].{field}")

# %% [markdown]
# In 6.1 it was `page[4].private` (`SUBPAGE_INDEX_HWPOISON`); 6.2 gave the HugeTLB fields names
# in page[2] of `struct folio` (dad6a5eb5556), and 6.12's four-page folio moved them to page[3].
#
# ## Fake heads (5.18+)
#
# The first HVO (5.14–5.17) kept **two** pages and pointed pages 2.. at page 1, which holds
# only tails. 5.18 ("free the 2nd vmemmap page") keeps **one** and points pages 1.. at page 0.
# The first struct page of every remapped vmemmap page (tails 64, 128, ..., 448) then reads the
# *head's* 64 bytes, `PG_head` included: a **fake head**.

# %%
print(f"{'kernel':>6} {'kept':>4}  struct pages showing PG_head in their own flags")
for kernel in ("5.17", "6.6"):
    mk = Machine("x86_64", kernel, ram="1G")
    f = hvo.alloc_hugetlb_folio(mk, "2M")
    hvo.hugetlb_vmemmap_optimize(mk, f)
    raw = np.flatnonzero(P.test_flag_bits(mk, f.head_pfn + np.arange(512), "PG_head"))
    print(f"{kernel:>6} {f.reserve:>4}  {raw.tolist()}")

# %% [markdown]
# Code that tests `PG_head` alone would take tail 64 for a head. So 5.18 taught
# `compound_head()` and `PageHead()` a check, `page_fixed_fake_head(page)`: when a struct page
# at a `PAGE_SIZE`-aligned address shows `PG_head`, it reads `page[1].compound_head`; if bit 0
# is set, the head is that word minus 1. For a real head that is the page itself
# (`page[1].compound_head == page + 1`); for a fake head it is another page, so
# `page_is_fake_head(page)` is `page_fixed_fake_head(page) != page` -- the kernel compares
# `page[1].compound_head` with `page + 1`. Tail 65 aliases page 1, whose `compound_head` points
# at the real head:

# %%
fake = head + 64
print("PG_head bit of tail 64          ", P.test_page_flag(fake, "PG_head"))
print("page_is_fake_head(tail 64)      ", P.page_is_fake_head(fake))
print(f"(tail 65).compound_head word     {(fake + 1).read('compound_head'):#x}")
print(f"tail 64's address + 1            {fake.va + 1:#x}  (differs: a fake head)")
print(f"head's page[1].compound_head     {(head + 1).read('compound_head'):#x} = head + 1 "
      f"{head.va + 1:#x}  (equal: the real head)")
print("page_fixed_fake_head(tail 64)   ", P.page_fixed_fake_head(fake), "= head", head)
print("PageHead / PageTail of tail 64  ", P.PageHead(fake), "/", P.PageTail(fake))
print("tail 64's own _refcount reads   ", P.page_ref_count(fake), "(the head's bytes);",
      "page_count() reads", P.page_count(fake))

# %% [markdown]
# The check costs a few instructions on every `compound_head()`; the kernel keeps it behind a
# static key (`hugetlb_optimize_vmemmap_key`) that is on only while some HugeTLB page is
# optimized. The table reads the same HugeTLB page's struct pages through the vmemmap:

# %%
fig = viz.struct_page_view((m, folio))
fig

# %%
from vmemlab.viz.structpage import struct_page_columns

for _label, pfn, _role in struct_page_columns(folio.head_pfn, 512, 64):
    pg = P.pfn_to_page(m, pfn)
    vpn = pfn * 64 >> 12
    fr = int(m.pgtables.resolve(np.array([vpn]))[0][0])
    kind = "PageHead" if P.PageHead(pg) else "PageTail"
    kind += " (fake head)" if P.page_is_fake_head(pg) else ""
    print(f"page {pfn - folio.head_pfn:>3}: {kind:<22} raw PG_head "
          f"{P.test_page_flag(pg, 'PG_head')!s:5}  read through vmemmap page "
          f"{vpn - first_vpn} -> frame {fr}")

# %% [markdown]
# **What to notice:** pages 64 and 128 show the head's flags and refcount in the table, yet
# `compound_head()` sends both to page 0; every struct page is read from one frame.
#
# ## Restore and dissolve
#
# Before a HugeTLB page goes back to the buddy allocator (`dissolve_free_huge_page`) its struct
# pages must become ordinary, writable and distinct again. `hugetlb_vmemmap_restore()`
# allocates the 7 pages again, copies the kept page into each, and (5.18+)
# `reset_struct_pages` overwrites the first struct pages of each copy with tail contents, so the
# fake heads disappear. The split PTE table stays.

# %%
print("RAM pages in use, optimized:", m.ram.used)
r = hvo.hugetlb_vmemmap_restore(m, folio)
print(f"restore: {-r.data_pages_freed} pages allocated again, RAM pages in use {m.ram.used}, "
      f"PTE tables {m.usage()['pte_tables']}")
print("PG_head of tail 64 after restore:", P.test_page_flag(head + 64, "PG_head"))
hvo.dissolve_free_huge_page(m, folio)
print("after dissolve: PageHead(page 0)", P.PageHead(head), "| PageTail(page 300)",
      P.PageTail(head + 300))

# %% [markdown]
# `reset_struct_pages` rewrites only the first `NR_RESET_STRUCT_PAGE` struct pages of each
# copy, and it differs between kernels: 5.19 copies struct page 3 into each of 0–2, 6.1 and
# 6.12.0 `memcpy` the block 3–5 onto 0–2 (6.1's "mm: hugetlb_vmemmap: simplify
# reset_struct_pages()"). Everything else in the copy is the kept page verbatim,
# so a field that lives in an early tail travels into every restored vmemmap page. 6.12's
# `struct folio` spans four struct pages (the HugeTLB fields moved to page[3]) while the reset
# stayed at 3 until the 2025 patch "mm, hugetlb: Increment the number of pages to be reset on
# HVO". Put a marker in page[3]'s word 5 (6.12: `_hugetlb_hwpoison`; 6.1: `private`, the
# reservation cgroup) and read struct pages 64–67 after a restore:

# %%
for kernel in ("5.19", "6.1", "6.12", "6.12.117"):
    mk = Machine("x86_64", kernel, ram="1G")
    f = hvo.alloc_hugetlb_folio(mk, "2M")
    hvo.hugetlb_vmemmap_optimize(mk, f)
    P.write_field(mk, f.head_pfn + 3, "private", 0xABC)
    hvo.hugetlb_vmemmap_restore(mk, f)
    got = P.read_field(mk, f.head_pfn + 64 + np.arange(4), "private")
    n = mk.kernel.nr_reset_struct_page
    how = "none" if not n else f"{n}{' (loop)' if mk.kernel.reset_loop else ' (block)'}"
    print(f"kernel {kernel:>8}: reset {how:<9} word 5 of struct pages 64-67: "
          f"{[hex(int(x)) for x in got]}")

# %% [markdown]
# In every kernel the marker reappears at 64 + 3 (a verbatim copy of page[3]). 5.19's loop
# also writes struct page 3 over each of 64–66; the block copy moves it to 64 only (65 and 66
# take struct pages 4 and 5). Debian's 6.12.117 resets nothing at all.
#
# ## A kernel bug: Debian 6.12.117 cannot dissolve an optimized page
#
# The real-kernel check (chapter 11) found that on Debian's 6.12.117 `echo 0 > nr_hugepages`
# after HVO leaks every optimized page, with `BUG: Bad page state` in dmesg. Debian 6.12.115
# backported "mm/hugetlb: refactor code around vmemmap_walk", after which
# `vmemmap_restore_pte` copies the kept page into every restored vmemmap page and no longer
# calls `reset_struct_pages`: each restored page starts with copies of the head and of
# page[1], page[2] and page[3]. The page allocator's free checks reject those tails, so the
# whole HugeTLB page is neither a HugeTLB page nor free any more. (Upstream stable 6.12.114
# took c0b495b91a47 and its fix c7bde43f6daf, which copies the page the PTE maps, but not
# 622026e87c40 "mm/hugetlb: remove fake head pages", which in mainline makes that page a clean
# shared tail page; the 2025 reset patch above had reached Debian in 6.12.111.)
# The model's `6.12.117` variant does the same:

# %%
for kernel in ("6.6", "6.12.117"):
    mk = Machine("x86_64", kernel, ram="1G")
    f = hvo.alloc_hugetlb_folio(mk, "2M")
    hvo.hugetlb_vmemmap_optimize(mk, f)
    bad = hvo.dissolve_free_huge_page(mk, f)
    print(f"kernel {kernel:>8}: {len(bad)} bad struct pages, HugeTLB pages leaked "
          f"{len(mk.hugetlb.leaked)}")
    for pfn, why in bad[:5]:
        print(f"    BUG: Bad page state pfn {pfn:#x} (head + {pfn - f.head_pfn}): {why}")

# %% [markdown]
# Restoring needs memory: a machine short of RAM cannot dissolve an optimized HugeTLB page
# (the model refuses with -ENOMEM and leaves the page optimized).
#
# ## Explore: which kernels make fake heads?
#
# The explorer reads the struct pages of one HugeTLB page after HVO, for any order and kernel
# variant. Its task: find a kernel under which no vmemmap page starts with a fake head. The
# static rendering below it is the task's starting point, at 1 GiB (the table above showed
# 2 MiB).

# %%
from vmemlab.widgets import tasks

task = tasks.no_fake_head_kernels()
task

# %%
# NBVAL_IGNORE_OUTPUT
# Interactive widget: a live view nbval cannot compare; the next cells render it statically.
task.ui

# %%
view = task.render_static(order=18)
view.figures[0]

# %%
print(view.text)

# %% [markdown]
# **What to notice:** at 1 GiB as at 2 MiB, pages 64 and 128 read the head's flags; the readout
# counts the fake heads among the first vmemmap pages. Change the kernel and watch that count.

# %%
answer = None  # a kernel name, e.g. "6.6"
task.check(answer)

# %% [markdown]
# ## Exercises

# %%
from vmemlab import exercises

ex1 = exercises.generate("hvo-net-saved", seed=3)
ex1

# %%
answer = None  # your answer
ex1.check(answer)

# %%
ex2 = exercises.generate("hvo-pg-head", seed=3)
ex2

# %%
answer = None  # your answer
ex2.check(answer)

# %% [markdown]
# ## Summary
#
# * HVO keeps 1 vmemmap page of a HugeTLB page (2 in 5.14–5.17) and remaps the rest read-only
#   onto it: 7 of 8 pages freed for 2 MiB, 4095 of 4096 for 1 GiB, minus one PTE table per
#   2 MiB of boot memmap it splits.
# * From 5.18 the remapped pages show the head page, so their first struct pages are fake
#   heads; `page_fixed_fake_head()` makes `compound_head()` and `PageHead()` see through them.
# * Restore (before dissolving) allocates and copies the pages back; the split table stays.
# * The remapped PTEs take no reference: the kept page's `page_count()` stays 1.
#
# **In the kernel:** `mm/hugetlb_vmemmap.c` (`hugetlb_vmemmap_optimize_folio`,
# `vmemmap_remap_free`, `vmemmap_split_pmd`, `vmemmap_remap_pte`, `vmemmap_restore_pte`,
# `reset_struct_pages`, `hugetlb_vmemmap_restore_folio`), `include/linux/page-flags.h`
# (`page_fixed_fake_head`, `hugetlb_optimize_vmemmap_key`), `mm/hugetlb.c`
# (`dissolve_free_huge_page`, later renamed `dissolve_free_hugetlb_folio`),
# `Documentation/mm/vmemmap_dedup.rst`.
#
# **Next:** [04 — Device-dax compound pagemaps](04-device-dax-compound-pagemaps.ipynb)
