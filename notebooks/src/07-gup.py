# %% [markdown]
# # 07 — GUP: one reference per subpage, or one per head
#
# **Goals.** See what `pin_user_pages_fast()` does to struct pages when a short-term pin (the
# cover letter's `gup_test` benchmark, or `O_DIRECT` I/O into a device-dax buffer) walks a
# device-dax mapping; count the atomic operations and cache lines of three kernel variants; and
# see what a cost model fitted on the cover letter's measurements can and cannot tell.

# %% [markdown]
# ## Pinning user memory
#
# Code that lets a device DMA into user memory first calls `get_user_pages_fast()` or
# `pin_user_pages_fast()` (GUP-fast) on the buffer: the block layer does it for `O_DIRECT`
# reads and writes, and the cover letter's numbers come from the `gup_test` selftest, which calls
# both directly. (Long-term pins, such as RDMA memory registration or VFIO, pass
# `FOLL_LONGTERM`, which GUP-fast refuses on devmap entries: they take the slow path, which this
# chapter does not model.) GUP walks the process's page tables and, for
# every 4 KiB page in the range, writes its `struct page *` into the `pages[]` array and takes a
# reference, so the memory cannot go away while the device uses it. A pin (`FOLL_PIN`) on a
# compound page adds 1 to the head's refcount and 1 to its pin count; on a small page it adds
# `GUP_PIN_COUNTING_BIAS` (1024) to the refcount.
#
# Map 1 GiB of a device-dax instance with 2 MiB alignment into a process (one PMD entry per
# 2 MiB) and pin all of it:

# %%
import vmemlab
from vmemlab import gup
from vmemlab.dax_device import dax_mmap_plan

GiB = 1 << 30
p = vmemlab.plan("4G", align="2M", kernel="6.6")
vma = dax_mmap_plan(p, size=GiB)
r = gup.pin_user_pages_fast(vma, vma.vm_start, GiB >> 12)
c = r.counters
print(f"pages[] entries written   {c.pages_entries}")
print(f"PMD entries walked        {c.pgtable_entries['pmd']}")
print(f"grabs (try_grab_folio)    {c.grabs}")
print(f"refcount/pincount atomics {c.ref_atomics}")
print(f"atomic RMWs in all        {c.atomics} (+ SetPageReferenced, one per grab)")
print(f"struct pages touched      {c.struct_pages_touched}")
print(f"distinct cache lines      {c.cache_lines} (physical)")

# %%
from IPython.display import Markdown

Markdown(f"Mainline from 5.17 to about 6.14 (`gup_fast_devmap_leaf`) still loops one 4 KiB page "
         f"at a time: {c.grabs} grabs for 1 GiB, every one of them adding to one of "
         f"{c.pgtable_entries['pmd']} heads (one per PMD entry). Look at the first head:")

# %%
m, pgmap = p._machine, p._pgmap
geo = gup.compound_geometry(m, pgmap)
first = (vma.va_to_pfn(vma.vm_start) - geo.first_pfn) // geo.nr  # first mapped compound page
refs = gup.gup_references(m, pgmap, geo.nr)
print(f"head of compound page {first}: gets {refs['gets'][first]}, pins {refs['pins'][first]}")
u = gup.unpin_user_pages(m, r)
print("unpin_user_pages:", u.ref_atomics, "atomics")
refs = gup.gup_references(m, pgmap, geo.nr)
print(f"after unpin: gets {refs['gets'][first]}, pins {refs['pins'][first]}")

# %%
Markdown(f"One pin per subpage, all on the head; `unpin_user_pages` gives them back one compound "
         f"page at a time: {u.ref_atomics // c.pgtable_entries['pmd']} atomics per compound page "
         f"(its refcount and its pin count).")

# %% [markdown]
# ## Three variants
#
# * **before the series** (kernel `5.16`): device pages are not compound; each subpage's own
#   struct page gets its own reference.
# * **mainline 5.17 – ~6.14**: compound devmap pages; one grab per subpage, all on the head.
# * **the series' patch 13** (kernel `v3`; mainline got there later through the normal folio
#   path): `record_subpages()` fills `pages[]`, then *one* `try_grab_compound_head(head, refs)`
#   per compound page.

# %%
rows = []
for kernel in ("5.16", "6.6", "v3"):
    for mode in ("mem", "dev"):
        c = gup.scenario_counters("16G", "pin", mode, kernel)
        rows.append((kernel, c.variant, mode, c.grabs, c.ref_atomics, c.atomics, c.cache_lines,
                     c.vmemmap_pages_ram + c.vmemmap_pages_device))
print(f"{'kernel':>6} {'variant':>17} {'map':>3} {'grabs':>8} {'ref adds':>8} {'all RMWs':>8} "
      f"{'lines':>8} {'vmemmap pages':>13}")
for row in rows:
    print(f"{row[0]:>6} {row[1]:>17} {row[2]:>3} {row[3]:>8} {row[4]:>8} {row[5]:>8} "
          f"{row[6]:>8} {row[7]:>13}")
per_grab = {r[0]: (r[4] // r[3], r[5] // r[3]) for r in rows if r[2] == "mem"}
print("per grab (ref adds, all RMWs):", per_grab)

# %% [markdown]
# Two atomic counts, and every cell of this chapter says which it prints. **ref adds** are the
# refcount and pin-count additions (`GupCounters.ref_atomics`): a pin on a compound page adds to
# the head's refcount and to its pin count; before the series a pin on a small page is a single
# add of `GUP_PIN_COUNTING_BIAS`. **all RMWs** (`GupCounters.atomics`) also count the
# `SetPageReferenced` (`folio_set_referenced`) bit set that GUP-fast does once per grab, an atomic
# read-modify-write on the same cache line. The last line above prints both per grab, for each
# kernel. The explorer below shows "all RMWs"; the exercises ask for ref adds.
#
# **What to notice:** with patch 13 the same few atomics are paid once per 2 MiB page instead of
# once per 4 KiB page. With the memmap on the device (`dev`), nothing is
# deduplicated, so every subpage's struct page is a distinct cache line on slow device memory:
# that is where the "before" time goes.
#
# ## A cost model: what the fit can and cannot show
#
# The model's counters feed a linear cost model with named parameters (ns per `pages[]` entry,
# per cache line first touched in a RAM or device vmemmap page, per further line, per atomic,
# per page-table entry). We fit it on the cover letter's 16 GiB rows (non-negative least
# squares). Before reading anything into it, count what the fit has to work with:

# %%
from dataclasses import fields

params, preds = gup.cover_letter_table(fit_on="16G", predict="128G")
names = gup.CostParams.names()
zero = [n for n in names if getattr(params, n) == 0]
print(f"{len(names)} parameters fitted to {len(gup.cover_letter_rows('16G'))} rows; "
      f"{len(zero)} come out 0: {', '.join(zero)}")
ratios = set()
for (_, c16, _), (_, c128, _) in zip(gup.cover_letter_rows("16G"), gup.cover_letter_rows("128G")):
    for f in fields(c16):
        v16, v128 = getattr(c16, f.name), getattr(c128, f.name)
        if isinstance(v16, int) and v16:
            ratios.add(v128 / v16)
print(f"128G counters / 16G counters, over every counter of every row: {sorted(ratios)}")

# %% [markdown]
# With as many parameters as rows, a good fit on the 16 GiB rows proves nothing: it would fit
# as many numbers, and the parameters that come out 0 say only that the data did not need them.
# And since every counter of a 128 GiB row is the same multiple of its 16 GiB row's (the one
# ratio printed above), "predicting" 128 GiB is multiplying each fitted 16 GiB time by that
# ratio: it tests whether the measured times grow linearly with the size, nothing more. That test does
# mean something, and here it is:

# %%
print(gup.format_table(params, preds))
worst = max(abs(p.error) for p in preds)
print(f"largest error {100 * worst:.1f}%")

# %% [markdown]
# Most 128 GiB times are close to that multiple of the 16 GiB ones; the "RAM before" rows are
# the furthest under it (the largest error), so something grows less than linearly there
# (caches, prefetch, or the measurement).
# What the fit cannot show: that its parameters are hardware costs (they are not determined by
# this data), or that the counters explain the times (any counters with as many independent rows
# would fit). Fitted the other way round, on the 128 GiB rows:

# %%
params_rev, preds_rev = gup.cover_letter_table(fit_on="128G", predict="16G")
print(gup.format_table(params_rev, preds_rev))

# %% [markdown]
# "16G pin RAM before" comes out far too low: at 128 GiB pins and gets were measured the same,
# so a model fitted there has no way to see what made the small pin slower. What the model's
# counters do explain, without any fit, is the *ratio* before/after of each row: the figure and
# the next cell put the fitted times beside the measurements.

# %%
from vmemlab import viz
from vmemlab.viz.gupview import cover_letter_results

fig = viz.gup_view(cover_letter_results("16G"), params=params,
                   title="16 GiB, 2M pages: cover letter (measured) and model")
fig

# %%
for row in cover_letter_results("16G"):
    b = gup.predict_ns(row.before, params) / 1e6
    a = gup.predict_ns(row.after, params) / 1e6
    meas = f"measured {row.measured_ms[0]:g} -> {row.measured_ms[1]:g} ms" if row.measured_ms else ""
    print(f"{row.label:<14} model {b:7.1f} -> {a:5.1f} ms ({b / a:5.1f}x)   {meas}")

# %% [markdown]
# **What to notice:** the speed-ups (the ratios in the text above) are an order of magnitude
# with the memmap in RAM and larger still with the altmap, in the model as in the measurements:
# the altmap "before" cost is dominated by cache misses on device-resident struct pages.
#
# ## Mainline's variant, predicted
#
# The cover letter compared "before the series" with patch 13. What mainline actually ran from
# 5.17 until the devmap rework was the per-subpage-head loop; the model predicts it:

# %%
for row in gup.predict_variants("128G", params, kernels=("5.16", "6.6", "v3")):
    if row["flags"] == "pin":
        print(f"kernel {row['kernel']:>4} ({row['variant']:>16}) map={row['map']}: "
              f"{row['ms']:8.1f} ms, {row['atomics']:>9} atomic RMWs (all)")

# %% [markdown]
# ## Explore
#
# The explorer recomputes the counters and the modelled time for another size, align or kernel.
# Its task: find the kernel whose GUP-fast takes fewer atomics than 5.16. Below it, its
# starting point (6.6) as text.

# %%
from vmemlab.widgets import tasks

task = tasks.fewer_gup_atomics()
task

# %%
# NBVAL_IGNORE_OUTPUT
# Interactive widget: a live view nbval cannot compare; the next cell renders it statically.
task.ui

# %%
print(task.render_static().text)

# %% [markdown]
# **What to notice:** on 6.6 the cost model's time drops while the atomics do not (for pins they
# even rise: a compound page's pin count is a second add per grab): in the model the saving
# comes from fewer distinct struct-page cache lines (deduplicated tails), not from fewer
# reference counts.

# %%
answer = None  # a kernel name, e.g. "6.6"
task.check(answer)

# %% [markdown]
# ## Exercises

# %%
from vmemlab import exercises

ex = exercises.generate("gup-atomics", seed=7)
ex

# %%
answer = None  # your answer
ex.check(answer)

# %%
ex_gup_grabs = exercises.generate("gup-grabs", seed=7)
ex_gup_grabs

# %%
answer = None  # your answer
ex_gup_grabs.check(answer)

# %% [markdown]
# A question about *why*: answer with the number of the option.

# %%
ex_why = exercises.generate("why-longterm-slow", seed=7)
ex_why

# %%
answer = None  # the number of your choice
ex_why.check(answer)

# %% [markdown]
# ## Summary
#
# * GUP-fast takes a reference per 4 KiB page; on compound devmaps mainline ≤ ~6.14 puts all of
#   them on the head, one atomic at a time.
# * Patch 13 (never merged as such) took one reference per compound page: an order of magnitude
#   faster with the memmap in RAM, more with it on the device.
# * A linear cost model with as many parameters as measured rows fits anything; its 128 GiB
#   "prediction" only checks that the measured times grow linearly with the size (they do, to
#   the largest error printed). Read its parameters as a description of this data, not as
#   hardware costs.
#
# **In the kernel:** `mm/gup.c` (`gup_fast_devmap_leaf` / `__gup_device_huge`,
# `try_grab_folio`, `record_subpages`, `unpin_user_pages`), `include/linux/mm.h`
# (`GUP_PIN_COUNTING_BIAS`, `folio_maybe_dma_pinned`).
#
# **Next:** [08 — Memory failure](08-memory-failure.ipynb)
