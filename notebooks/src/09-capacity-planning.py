# %% [markdown]
# # 09 — Capacity planning across architectures
#
# **Goals.** Size the struct-page cost of persistent or CXL memory on real machines, for each
# architecture and page size, with the same model the other chapters take apart. This chapter
# stands on its own: engineers can start here.

# %% [markdown]
# ## The planner
#
# `vmemlab.plan(size, align, map, arch, kernel, start, ram)` lays out a namespace the way the
# nvdimm driver does, populates its vmemmap in the model and reports what it cost. Everything
# comes from the populated model, not from a formula.

# %%
import vmemlab
from vmemlab.units import format_size

p = vmemlab.plan("3T", align="2M", map="mem", ram="512G")
print(p.table())

# %% [markdown]
# ## One terabyte on every architecture
#
# RAM spent on struct pages and device space used for them, per TiB of device memory, for each
# alignment device-dax offers on each architecture, kernel 6.6. Three RAM figures, so that every
# later cell can be matched to one of them:
#
# * **data + PTE**: struct-page data pages plus the PTE-table pages that map them (on ppc64
#   radix 64K a PTE table is a 256-byte fragment, packed `PAGE_SIZE / 256` to a page). This is
#   the figure the savings curves and the explorer's "RAM per TiB" draw;
# * **upper**: the PMD/PUD-level table pages above them, which do not depend on the order;
# * **RAM total** = the two together: the planner's `ram_bytes` (`RAM total` in its table).

# %%
from vmemlab.viz.savings import savings_point

rows = []
for arch, a in vmemlab.ARCHES.items():
    for align, order in zip(a.dax_aligns, a.dax_align_orders()):
        for mode in ("mem", "dev"):
            q = vmemlab.plan("1T", align=align, map=mode, arch=arch)
            curve = savings_point(arch, "6.6", order, mode).bytes_per_tib
            dev = (q.device_data_pages + q.device_align_pages) * q.page_size
            rows.append((arch, format_size(align), mode, q.optimised, curve,
                         q.ram_bytes - curve, q.ram_bytes, dev))
print(f"{'arch':>16} {'align':>5} {'map':>3} {'dedup':>5} {'data + PTE':>10} {'upper':>6} "
      f"{'RAM total':>9} {'device':>8}")
for arch, align, mode, opt, curve, upper, ram, dev in rows:
    print(f"{arch:>16} {align:>5} {mode:>3} {str(opt):>5} {format_size(curve):>10} "
          f"{format_size(upper):>6} {format_size(ram):>9} {format_size(dev):>8}")

# %% [markdown]
# Things to notice:
#
# * 64 KiB pages (arm64, ppc64) already cut the struct-page share sixteen-fold: 1 GiB per TiB.
# * On ppc64 with 64 KiB pages, 2 MiB compound pages are *not* deduplicated: their 32 struct
#   pages fill 2 KiB, a thirty-second of one vmemmap page, and the 6.6 rule wants more than two
#   pages of memmap.
# * arm64 16K's PMD size is 32 MiB and 64K's is 512 MiB: those are their PMD-sized aligns, the
#   counterpart of x86_64's 2M.
# * arm64 is never deduplicated here: it does not select `ARCH_WANT_OPTIMIZE_DAX_VMEMMAP`, the
#   symbol `vmemmap_can_optimize()` requires since 6.6. The function itself came in 6.4
#   (87a7ae75d738), gated then by `ARCH_WANT_OPTIMIZE_VMEMMAP`: the HugeTLB symbol
#   `ARCH_WANT_HUGETLB_PAGE_OPTIMIZE_VMEMMAP`, renamed in the same release (0b376f1e0ff5),
#   which arm64 no longer selected (060a2c92d1b6). On
#   5.19–6.3, with no arch gate at all, arm64 was deduplicated (try `kernel="5.19"`).
# * `--map=dev` costs RAM only for page tables; the struct pages go to the device.
# * Every ppc64 row is the radix MMU (`radix_enabled()`). With the hash MMU,
#   `vmemmap_can_optimize()` is false (from 6.4: the arch gate, then ppc64's radix-only
#   override in 6.6) and `vmemmap_populate()` bolts the memmap into the hash page table
#   (`hash__vmemmap_create_mapping()`), with no page tables to count. vmemlab does not model
#   hash-MMU kernels.
#
# ## Against compound order
#
# The savings curves plan every order each architecture can map (kernel variants side by side,
# the current configuration starred):

# %%
from vmemlab import viz

fig = viz.savings_curves(arches=["x86_64", "arm64-64k", "ppc64-radix-64k"],
                         kernels=["5.17", "6.6", "v3"],
                         current={"arch": "x86_64", "kernel": "6.6", "order": 9})
fig

# %%
for arch in ("x86_64", "arm64-64k", "ppc64-radix-64k"):
    a = vmemlab.get_arch(arch)
    for order in a.dax_align_orders():
        pt = savings_point(arch, "6.6", order)
        print(f"{arch:>16} order {order:>2}: {format_size(pt.bytes_per_tib):>7} per TiB "
              f"(data + PTE, the table's column of that name)")

# %% [markdown]
# The curves' points are the table's *data + PTE* column, configuration by configuration; the
# planner's `RAM total` adds the upper tables.

# %% [markdown]
# The explorer marks the configuration you pick (architecture, kernel, order, map) on these
# curves; below it, the explorer's numbers for ppc64-radix-64k at 1 GiB (order 14): the same
# *data + PTE* figure as the table's, which the explorer rounds to three significant digits.

# Its task: find the smallest order ppc64-radix-64k deduplicates.

# %%
from vmemlab.widgets import tasks

task = tasks.first_dedup_order()
task

# %%
# NBVAL_IGNORE_OUTPUT
# Interactive widget: a live view nbval cannot compare; the next cell renders it statically.
task.ui

# %%
explorer = task.explorer
print(explorer.render_static(arch="ppc64-radix-64k", kernel="6.6", order=14, map="mem").text)
pt = savings_point("ppc64-radix-64k", "6.6", 14)
print(f"the same point, unrounded: {pt.bytes_per_tib} bytes = {format_size(pt.bytes_per_tib)}")

# %%
answer = None  # the order you found
task.check(answer)

# %% [markdown]
# **What to notice:** once deduplication starts, each curve halves with every order (the two
# kept vmemmap pages serve twice as many struct pages) until it meets a floor: the PTE tables,
# one per section of memmap, which every order still needs. Only the `v3` curve goes below that
# floor (PMD-level reuse); `5.17` stays flat (no deduplication).
#
# ## From the command line
#
# The same planner as a CLI, for scripts and spreadsheets:

# %%
import subprocess
import sys

cmd = [sys.executable, "-m", "vmemlab", "plan", "--size", "768G", "--align", "1G", "--ram",
       "256G"]
print(subprocess.run(cmd, capture_output=True, text=True).stdout)

# %%
cmd = [sys.executable, "-m", "vmemlab", "plan", "--size", "1T", "--align", "4K", "--ram", "8G"]
r = subprocess.run(cmd, capture_output=True, text=True)
print("exit status", r.returncode)
print(r.stderr)

# %% [markdown]
# A machine whose RAM cannot hold the struct pages is refused with `-ENOMEM`, as the kernel's
# `memremap_pages` would refuse it, and the message says how much was needed.
#
# ## Exercises

# %%
from vmemlab import exercises

ex = exercises.generate("ram-share", seed=9)
ex

# %%
answer = None  # your answer
ex.check(answer)

# %%
ex_ram_per_tib = exercises.generate("ram-per-tib", seed=9)
ex_ram_per_tib

# %%
answer = None  # your answer
ex_ram_per_tib.check(answer)

# %% [markdown]
# ## Summary
#
# * At 2 MiB device-dax pages the struct-page cost is a quarter of the 4K cost; at 1 GiB it is
#   dominated by page tables (on x86_64 the table's 1G row: the cover letter's "40M" per TiB).
# * 64 KiB-page architectures start 16x lower; ppc64 only deduplicates 1 GiB pages.
# * `--map=dev` moves struct pages to the device: no RAM, but no deduplication either.
#
# **In the kernel:** `include/linux/mm.h` (`vmemmap_can_optimize`), `mm/sparse-vmemmap.c`,
# `drivers/nvdimm/pfn_devs.c` (`nd_pfn_init`).
#
# **Next:** [10 — Hot-remove and lifetimes](10-hot-remove-and-lifetimes.ipynb)
