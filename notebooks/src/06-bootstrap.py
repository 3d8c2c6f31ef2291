# %% [markdown]
# # 06 — Bootstrap: writing fewer struct pages
#
# **Goals.** See how many struct pages `memmap_init_zone_device` writes when a namespace comes
# up, why deduplication cuts that number, and predict the cover letter's bootstrap times from a
# cost model calibrated on one of them.

# %% [markdown]
# ## What initialisation writes
#
# After `memremap_pages` has populated the vmemmap, `memmap_init_zone_device` (the last box of
# chapter 04's pipeline figure) fills in the struct pages: zone and node, the pgmap link, a reference count, and for compound pages the head and
# tail fields. It walks the range one compound page at a time and, for each,
# `memmap_init_compound` writes `compound_nr_pages(altmap, pgmap)` struct pages:
#
# * without deduplication, every struct page of the compound page;
# * with it, only those in the two vmemmap pages the compound page keeps
#   (`VMEMMAP_RESERVE_NR * PAGE_SIZE / sizeof(struct page)`): the tail struct pages after them
#   live in the shared tail page, which already holds initialised tails.

# %%
import vmemlab
from vmemlab.sparse_vmemmap import VMEMMAP_RESERVE_NR

x86 = vmemlab.get_arch("x86_64")
print("VMEMMAP_RESERVE_NR * PAGE_SIZE / sizeof(struct page) =",
      VMEMMAP_RESERVE_NR * x86.PAGE_SIZE // x86.struct_page_size)
for align in ("4K", "2M", "1G"):
    p = vmemlab.plan("128G", align=align)
    st = p._pgmap.init_stats[0]
    print(f"align {align:>2}: {st.compound_pages:>8} compound pages x "
          f"{st.struct_pages_per_compound:>6} struct pages = {st.struct_pages_initialised:>8} "
          f"written, {st.cache_lines_touched:>8} cache lines")

# %% [markdown]
# At 2 MiB, 128 of 512 struct pages per compound page are written; at 1 GiB, 128 of 262144.
# The model keeps these writes lazy (it records the loop and replays it into a vmemmap page the
# first time that page is read), but the counts come from the loop itself. Read a few struct
# pages back to see what was written:

# %%
from vmemlab.page import compound_head, compound_order, page_ref_count, pfn_to_page

p = vmemlab.plan("4G", align="2M")
head_pfn = p._pgmap.ranges[0][0] >> x86.page_shift
for i in (0, 1, 127, 128, 511):
    page = pfn_to_page(p._machine, head_pfn + i)
    print(f"struct page {i:>3}: compound_head -> pfn {compound_head(page).pfn - head_pfn:>3} "
          f"of this compound page, refcount {page_ref_count(page)}")
print("compound_order(head) =", compound_order(pfn_to_page(p._machine, head_pfn)))

# %% [markdown]
# Struct page 511 was never written by the loop, yet it reads as an initialised tail of this
# compound page: it lives in the shared tail page, whose struct pages were written as the tails
# of vmemmap page 1. Here is the whole compound page, drawn from the model, one row per vmemmap
# page:

# %%
from vmemlab.viz.bootstrap_view import init_writes_view, read_init

init_writes_view(p)

# %%
d = read_init(p)
shared = sum(1 for i, (_, first) in enumerate(d["rows"]) if first != i)
print(f"{d['total']} struct pages in {len(d['rows'])} vmemmap pages of {d['per_page']}: "
      f"{d['written']} written, {shared} vmemmap pages read through an earlier page's frame")

# %% [markdown]
# **What to notice:** initialisation writes only the two rows that have pages of their own; every
# other row is the same physical page as row 1 seen again, so its struct pages are initialised
# tails without a single write. Without deduplication every row would be its own page and every
# cell would have to be written: that is the whole speed-up of this chapter.
#
# ## With the memmap on the device
#
# With `--map=dev` there is no deduplication, so every struct page is written, and on slower
# device memory:

# %%
for mode in ("mem", "dev"):
    q = vmemlab.plan("128G", align="2M", map=mode)
    print(f"--map={mode}: {q.struct_pages_initialised} struct pages written")

# %% [markdown]
# The cover letter: *"altmap sees no difference in bootstrap"*.
#
# ## A cost model: calibrate on one figure, predict the others
#
# The cover letter quotes namespace bootstrap times on a 128G NVDIMM: about 268–358 ms before
# the series (every struct page written), 78–100 ms at 2M and under 1 ms at 1G. The simplest
# model charges one constant per struct page written. We calibrate that constant on the 4K
# figure only, and then predict the 2M and 1G figures without looking at them:

# %%
from vmemlab.mm_init import COVER_LETTER_BOOTSTRAP_MS, calibrate_init_cost

stats = {a: vmemlab.plan("128G", align=a)._pgmap.init_stats for a in ("4K", "2M", "1G")}
model = calibrate_init_cost(stats["4K"])
print("calibration:", model.calibration)
print(f"cost per struct page written: {model.ns_per_struct_page:.2f} ns "
      f"(band {model.band[0]:.2f}-{model.band[1]:.2f} ns)")

# %%
print(f"{'align':>5} {'predicted':>10} {'band':>17} {'cover letter':>13}  inside")
for align in ("2M", "1G"):
    pred = model.predict_ms(stats[align])
    lo, hi = model.predict_band_ms(stats[align])
    clo, chi = COVER_LETTER_BOOTSTRAP_MS[align]
    inside = clo <= pred <= chi or (align == "1G" and pred < chi)
    quoted = f"<{chi:g} ms" if align == "1G" else f"{clo:g}-{chi:g} ms"
    print(f"{align:>5} {pred:>8.2f}ms {lo:>7.2f}-{hi:>6.2f}ms {quoted:>13}  {inside}")

# %% [markdown]
# **What to notice:** one number, fitted on the 4K figure alone, predicts the 2M and 1G times:
# the last column says whether each prediction falls inside the cover letter's quoted range, and
# the band (fitted on the two ends of the 4K range) shows how far the one parameter can move it.
# The struct pages written explain most of the speed-up; the
# rest (the cover letter credits the cache warmth of splitting `prep_compound_page` into head and
# tail parts) is not in this one-parameter model.
#
# ## Exercises

# %%
from vmemlab import exercises

ex = exercises.generate("struct-pages-initialised", seed=6)
ex

# %%
answer = None  # your answer
ex.check(answer)

# %%
ex_init_time = exercises.generate("init-time", seed=6)
ex_init_time

# %%
answer = None  # your answer
ex_init_time.check(answer)

# %% [markdown]
# ## Summary
#
# * `memmap_init_zone_device` writes `compound_nr_pages` struct pages per compound page: all of
#   them without deduplication, 128 (x86_64) with it.
# * Tails beyond those read correctly because they alias the shared, already written tail page.
# * A per-struct-page cost calibrated on the 4K figure predicts the 2M and 1G figures.
#
# **In the kernel:** `mm/mm_init.c` (`memmap_init_zone_device`, `memmap_init_compound`,
# `compound_nr_pages`, `__init_zone_device_page`), `mm/page_alloc.c` before 6.4,
# `include/linux/mm.h` (`prep_compound_tail`, `prep_compound_head`).
#
# **Next:** [07 — GUP](07-gup.ipynb)
