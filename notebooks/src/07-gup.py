# %% [markdown]
# # 07 — GUP: one reference per subpage, or one per head
#
# **Goals.** See what `pin_user_pages_fast()` does to struct pages when an RDMA or VFIO driver
# pins a device-dax mapping; count the atomic operations and cache lines of three kernel
# variants; and use a cost model, fitted on part of the cover letter's measurements, to predict
# the rest.

# %% [markdown]
# ## Pinning user memory
#
# A driver that lets a device DMA into user memory first calls `get_user_pages_fast()` or
# `pin_user_pages_fast()` (GUP-fast) on the buffer. GUP walks the process's page tables and, for
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
print(f"struct pages touched      {c.struct_pages_touched}")
print(f"distinct cache lines      {c.cache_lines} (physical)")

# %% [markdown]
# Mainline from 5.17 to about 6.14 (`gup_fast_devmap_leaf`) still loops one 4 KiB page at a
# time: 262144 grabs for 1 GiB, every one of them an atomic add on one of 512 head pages. Look
# at the first head:

# %%
m, pgmap = p._machine, p._pgmap
geo = gup.compound_geometry(m, pgmap)
first = (vma.va_to_pfn(vma.vm_start) - geo.first_pfn) // geo.nr  # first mapped compound page
refs = gup.gup_references(m, pgmap, geo.nr)
print(f"head of compound page {first}: gets {refs['gets'][first]}, pins {refs['pins'][first]}")
print("unpin_user_pages:", gup.unpin_user_pages(m, r).ref_atomics, "atomics")
refs = gup.gup_references(m, pgmap, geo.nr)
print(f"after unpin: gets {refs['gets'][first]}, pins {refs['pins'][first]}")

# %% [markdown]
# One pin per subpage, all on the head; `unpin_user_pages` gives them back one compound page at
# a time (two atomics per compound page).
#
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
        rows.append((kernel, c.variant, mode, c.grabs, c.ref_atomics, c.cache_lines,
                     c.vmemmap_pages_ram + c.vmemmap_pages_device))
print(f"{'kernel':>6} {'variant':>17} {'map':>3} {'grabs':>8} {'atomics':>8} {'lines':>8} "
      f"{'vmemmap pages':>13}")
for row in rows:
    print(f"{row[0]:>6} {row[1]:>17} {row[2]:>3} {row[3]:>8} {row[4]:>8} {row[5]:>8} {row[6]:>13}")

# %% [markdown]
# **What to notice:** with patch 13 the atomics fall from one (or two, for pins) per 4 KiB page
# to one or two per 2 MiB page. With the memmap on the device (`dev`), nothing is
# deduplicated, so every subpage's struct page is a distinct cache line on slow device memory:
# that is where the "before" time goes.
#
# ## A cost model, fitted on 16G, predicting 128G
#
# The model's counters feed a linear cost model with named parameters (ns per `pages[]` entry,
# per cache line first touched in a RAM or device vmemmap page, per further line, per atomic).
# We fit it on the cover letter's eight 16 GiB rows only (non-negative least squares) and
# predict its eight 128 GiB rows:

# %%
params, preds = gup.cover_letter_table(fit_on="16G", predict="128G")
print(gup.format_table(params, preds))
worst = max(abs(p.error) for p in preds)
print(f"largest error {100 * worst:.1f}%")

# %%
params_rev, preds_rev = gup.cover_letter_table(fit_on="128G", predict="16G")
print(gup.format_table(params_rev, preds_rev))

# %% [markdown]
# Fitted the other way round, most rows still land close, but "16G pin RAM before" comes out
# far too low: at 128G pins and gets cost the same, so a model fitted there cannot see what made
# the small pin slower. Eight rows with few distinct counter combinations also leave some
# parameters weakly determined (one of them fits to zero), so read the fitted values as a
# description of this data, not as measured hardware costs.

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
              f"{row['ms']:8.1f} ms, {row['atomics']:>9} atomics")

# %% [markdown]
# ## Explore
#
# The explorer recomputes the counters and the modelled time for another size, align or kernel.

# %%
# NBVAL_IGNORE_OUTPUT
# Interactive widget: a live view nbval cannot compare; the next cell renders it statically.
from vmemlab import widgets

explorer = widgets.GupExplorer()
explorer

# %%
print(explorer.render_static().text)

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
# ## Summary
#
# * GUP-fast takes a reference per 4 KiB page; on compound devmaps mainline ≤ ~6.14 puts all of
#   them on the head, one atomic at a time.
# * Patch 13 (never merged as such) took one reference per compound page: an order of magnitude
#   faster with the memmap in RAM, more with it on the device.
# * A linear cost model with named parameters, fitted on the 16 GiB rows, predicts the 128 GiB
#   rows; the errors are printed above.
#
# **In the kernel:** `mm/gup.c` (`gup_fast_devmap_leaf` / `__gup_device_huge`,
# `try_grab_folio`, `record_subpages`, `unpin_user_pages`), `include/linux/mm.h`
# (`GUP_PIN_COUNTING_BIAS`, `folio_maybe_dma_pinned`).
#
# **Next:** [08 — Memory failure](08-memory-failure.ipynb)
