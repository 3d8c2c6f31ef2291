# %% [markdown]
# # 05 — Compound pages bigger than a section
#
# **Goals.** See how a 1 GiB compound page, whose memmap spans eight sections, is populated one
# section at a time; compare mainline's cost per TiB with that of the v3 series' PMD-level
# reuse, which was never merged (the cover letter: "40M -> 16M per Tb").

# %% [markdown]
# ## One compound page, eight sections
#
# A 1 GiB compound page has 262144 struct pages: 16 MiB of memmap, 4096 vmemmap pages. On
# x86_64 a section (128 MiB) has 2 MiB of memmap, so the compound page's memmap spans 8
# sections, and the kernel populates sections one at a time. The first section gets the head
# page, the tail page and 510 reuse PTEs. For the next seven, `reuse_compound_section()` sees that
# the section starts in the middle of a compound page and maps all 512 PTEs to the page that the
# previous section's last PTE maps: the tail page.

# %%
import numpy as np

import vmemlab

p = vmemlab.plan("2G", align="1G", kernel="6.6")
m, pgmap = p._machine, p._pgmap
a = m.arch
first_vpn = (pgmap.ranges[0][0] >> a.page_shift) * a.struct_page_size >> a.page_shift
for s in range(8):
    k = (first_vpn >> 9) + s
    kind, table = m.pgtables.pmd_entry(k)
    ptes = m.pgtables.pte[table]
    frames, counts = np.unique(ptes, return_counts=True)
    desc = ", ".join(f"frame {f} x{c}" for f, c in zip(frames.tolist(), counts.tolist()))
    print(f"section {s}: PMD -> PTE table {table}: {desc}")
tail = int(m.pgtables.pte[m.pgtables.pmd_entry(first_vpn >> 9)[1]][1])
print("tail page refcount:", m.frames.refcount[tail])

# %% [markdown]
# In chapter 04's pipeline figure this is the fourth box; the same figure for this 2 GiB
# namespace of 1 GiB pages:

# %%
from vmemlab.viz.pipeline import pipeline_stages

for st in pipeline_stages(p)[2:4]:
    print(f"{st.function:<18} " + "; ".join(st.lines))

# %%
from IPython.display import Markdown

data, tables = p.ram_data_pages // p.compound_pages, p.pagetables["pte"] // p.compound_pages
Markdown(f"{data} data frames per gigabyte, but {tables} PTE tables, one per section: the "
         f"tables cost {tables / data:g} times as much as the data, {data + tables} pages per GiB.")

# %% [markdown]
# ## The series' PMD-level reuse (v3, patch 14)
#
# The v3 series went one step further: from the third section on, the tables are identical
# too (512 PTEs to the tail page), so it pointed those PMD entries at the *second section's* PTE
# table instead of filling new ones. It was dropped at v5 and never merged; the model offers it
# as kernel `"v3"`.

# %%
from vmemlab import viz

merged = vmemlab.plan("2G", align="1G", kernel="6.6")
v3 = vmemlab.plan("2G", align="1G", kernel="v3")
fig = viz.pagetable_view(merged, v3)
fig

# %%
for q in (merged, v3):
    print(f"kernel {q.kernel:>3}: PTE tables {q.pagetables['pte']:>2}, data pages "
          f"{q.ram_data_pages}, per 1 GiB page: "
          f"{(q.pagetables['pte'] + q.ram_data_pages) // q.compound_pages} pages")

# %% [markdown]
# **What to notice:** on the left every PMD entry has its own PTE table; on the right PMD
# entries 2–7 point at entry 1's table, so entries 1–7 share one table whose reference count
# is the number of PMD entries using it. Per terabyte:

# %%
from vmemlab.units import format_size

for kern in ("6.6", "v3"):
    q = vmemlab.plan("1T", align="1G", kernel=kern)
    print(f"kernel {kern:>3}: data {format_size(q.ram_data_pages * q.page_size):>3} + PTE "
          f"tables {format_size(q.pagetables['pte'] * q.page_size):>4} = "
          f"{format_size((q.ram_data_pages + q.pagetables['pte']) * q.page_size):>4} per TiB")
print('cover letter: "This further let us more than halve the overhead with 1GB pages '
      '(40M -> 16M per Tb)"')

# %% [markdown]
# ## Explore
#
# The explorer draws the page tables of one compound page for any order, kernel and
# architecture. Its task: at 1 GiB, find the kernel that spends the least RAM on the vmemmap,
# data and tables together. The cell after it renders the starting point, 2 MiB pages on 6.6,
# which the figure above does not show.

# %%
from vmemlab.widgets import tasks

task = tasks.least_ram_kernel(start_order=9)
task

# %%
# NBVAL_IGNORE_OUTPUT
# Interactive widget: a live view nbval cannot compare; the next cells render it statically.
task.ui

# %%
view = task.render_static()
view.figures[0]

# %%
print(view.text)

# %% [markdown]
# **What to notice:** at 2 MiB one PTE table serves 64 compound pages, so tables are a small
# part of the cost; at 1 GiB (set the order to 18) every section needs its own. Then change the
# kernel.

# %%
answer = None  # a kernel name, e.g. "6.6"
task.check(answer)

# %% [markdown]
# ## Exercises

# %%
from vmemlab import exercises

ex = exercises.generate("pud-pagetables", seed=5)
ex

# %%
answer = None  # your answer
ex.check(answer)

# %%
ex_tail_refcount = exercises.generate("tail-refcount", seed=18)
ex_tail_refcount

# %%
answer = None  # your answer
ex_tail_refcount.check(answer)

# %% [markdown]
# A question about *why*: answer with the number of the option.

# %%
ex_why = exercises.generate("why-1g-section", seed=5)
ex_why

# %%
answer = None  # the number of your choice
ex_why.check(answer)

# %% [markdown]
# ## Summary
#
# * A compound page bigger than a section is populated section by section;
#   `reuse_compound_section()` maps later sections entirely to the tail page.
# * As merged, each 1 GiB page keeps its 2 data pages plus one PTE table per section: the
#   cover letter's "40M" per TiB, which the model reproduces above.
# * The v3 series shared PTE tables between PMD entries too (the cover letter's "16M"); it was
#   never merged.
#
# **In the kernel:** `mm/sparse-vmemmap.c` (`reuse_compound_section`,
# `compound_section_tail_page`, `vmemmap_populate_compound_pages`);
# `Documentation/mm/vmemmap_dedup.rst` (its "Device DAX" section: the same tail deduplication
# as HugeTLB except with an altmap, drawn for a PMD-sized page only; mainline's document has no
# PUD-level diagram, since the v3 series' PMD-level reuse was never merged).
#
# **Next:** [06 — Bootstrap](06-bootstrap.ipynb)
