# %% [markdown]
# # vmemlab: deduplicating the vmemmap for compound pages
#
# Every 4 KiB page frame in a Linux machine is described by a 64-byte `struct page`, and all of
# them sit in one virtual array, the **vmemmap**. That is 1.56% of memory spent on metadata:
# 16 GiB for every TiB. For a terabyte of persistent memory (pmem) or CXL memory handed to
# applications through **device-dax**, that is a lot of RAM.
#
# In 2021 Joao Martins posted *"mm, sparse-vmemmap: Introduce compound pagemaps"*. It treats
# device-dax memory as **compound pages** (2 MiB or 1 GiB at a time) and notices that most of
# their struct pages are identical "tail" pages, so most of the vmemmap can map **one shared
# page**. This workbook lets you watch that happen in an executable model of the kernel, and
# use the same model to size real machines.
#
# **How to use it.** Run each chapter top to bottom (*Run → Run All Cells* in JupyterLab, or
# shift-enter cell by cell). Every result you see is computed by the `vmemlab` package when the
# cell runs; the prose types only the definitions (page sizes, orders, kernel versions) and the
# figures it quotes from kernel sources and patch mail. Each chapter ends with short
# exercises: generate a problem, write your answer in the cell, run it, and `check` tells you if
# you are right.

# %% [markdown]
# ## What does your own machine spend?
#
# Before the model, the machine running this notebook. `vmemlab inspect` reads what Linux
# shows without root: the memmap counters in `/proc/vmstat` (kernels 6.11 and later), the
# HugeTLB pools, the HVO switch, and any device-dax devices. The model's planner then prices
# what the kernel does not count, and what the alternatives would cost. On Binder this is the
# container's host kernel. A laptop or a cloud VM usually has no device-dax at all, and then
# the report says so: the struct pages of RAM are then the whole story. Anything it cannot
# read is listed at the end, not guessed. From a shell: `python -m vmemlab inspect`.
#
# This cell's output depends on the machine that runs it, so the notebook tests do not
# compare it (`NBVAL_IGNORE_OUTPUT`).

# %%
# NBVAL_IGNORE_OUTPUT
from vmemlab.inspect import inspect

print(inspect("/").table())

# %% [markdown]
# The next cell shows a machine that does have device-dax: a Debian 6.12.117 guest under QEMU
# with an emulated NVDIMM, captured by the measuring harness of chapter 11 just after it
# created a 2 GiB namespace with 2 MiB alignment and struct pages in RAM (three namespaces
# with `--map=dev` were already there). The files are committed under `validation/captured/`,
# with the step before as the baseline. Where the kernel reports a figure itself (dax sizes,
# the `nr_memmap_pages` and `DirectMap*` deltas), inspect puts the model's prediction beside
# it. The capture holds no release, arch or kallsyms file, so the cell names them.

# %%
from pathlib import Path

trees = Path("../validation/captured/6.12.117+deb12-amd64")
guest = inspect(trees / "devdax-2M-mem", baseline=trees / "devdax-4K-dev",
                label="a Debian 6.12.117 guest", arch="x86_64",
                release="6.12.117+deb12-amd64", kernel="6.12.117")
print(guest.table())

# %% [markdown]
# ## A first look
#
# The planner populates a namespace in the model, section by section, exactly as the kernel
# would, and reads the cost off the model's page tables and frames. Here is one terabyte of
# pmem with 2 MiB device-dax pages, struct pages in RAM (`--map=mem`). This is a preview: each
# line of the table is an idea a later chapter teaches (sections in 01, compound pages in 02,
# deduplication and `--map` in 04, initialisation in 06), so read it now only for the size of
# the numbers:

# %%
import vmemlab

p = vmemlab.plan("1T", align="2M", map="mem")
print(p.table())

# %% [markdown]
# Compare the three alignments device-dax offers on x86_64. The cover letter's claims are
# quoted beside the model's numbers:

# %%
from vmemlab.units import format_size

claims = {"4K": "16G (no compound pages)", "2M": '"with 2M pages we lose 4G"',
          "1G": '"40M -> 16M per Tb" (40M as merged)'}
for align in ("4K", "2M", "1G"):
    q = vmemlab.plan("1T", align=align)
    data = format_size(q.ram_data_pages * q.page_size)
    total = format_size(q.ram_bytes)
    print(f"{align:>3}: struct-page data {data:>7}, with page tables {total:>8}   "
          f"cover letter: {claims[align]}")

# %% [markdown]
# ## Map of the workbook
#
# | chapter | idea |
# |---|---|
# | 01 `struct page` and the sparse vmemmap | page frames, sections, subsections, `pfn_to_page` |
# | 02 Compound pages | head and tail pages, `compound_head` and bit 0, identical tails |
# | 03 HugeTLB Vmemmap Optimization | HVO before/after: remap and free, the head page reused, fake heads |
# | 04 Device-dax compound pagemaps | the create-namespace pipeline, tail reuse, altmap, HVO vs device-dax |
# | 05 Bigger than a section | 1 GiB pages, section reuse vs the series' PMD reuse |
# | 06 Bootstrap | `memmap_init_zone_device`: fewer struct pages to write |
# | 07 GUP | one reference per subpage vs one per head, and the cover letter's timings |
# | 08 Memory failure | poisoning a pfn inside a compound devmap page |
# | 09 Capacity planning | tables and plots across architectures, the CLI |
# | 10 Hot-remove and lifetimes | tearing down shared tail pages safely |
# | 11 Does the model match a real kernel? | measurements from a booted Linux 6.12 |
# | 12 The 2026 rework | one shared tail page per zone and order, for device-dax and HVO |
#
# The chapters build on each other; 09 stands on its own for engineers who only want to plan.
#
# **Kernel variants.** The series was split when it was merged. The model follows each variant
# by name (`kernel="..."` everywhere, `--kernel` on the command line); the cell below lists every
# one it knows, with what it stands for, the default marked:

# %%
for name, k in vmemlab.KERNELS.items():
    mark = "  (default)" if name == vmemlab.kernels.DEFAULT_KERNEL else ""
    print(f"{name:>8}  {k.year:<7}  {k.summary}{mark}")
print(f"{len(vmemlab.KERNELS)} variants")

# %% [markdown]
# ## Exercises and solutions
#
# Problems are seeded, like the OSTEP homework simulators: the same seed gives the same problem
# on every machine. Try one:

# %%
from vmemlab import exercises

ex = exercises.generate("vmemmap-pages", seed=0)
ex

# %%
answer = None  # replace None with your number
ex.check(answer)

# %% [markdown]
# Stuck? `exercises.show_solutions()` reveals worked answers (and `ex.solution()` prints one).
# One more, a taste of chapter 01 (which vmemmap page holds a given pfn's struct page?):

# %%
ex2 = exercises.generate("pfn-to-page", seed=0)
ex2

# %%
answer = None  # replace None with your number
ex2.check(answer)

# %% [markdown]
# **Next:** [01 — struct page and the sparse vmemmap](01-struct-page-and-sparse-vmemmap.ipynb)
