# %% [markdown]
# # 11 — Does the model match a real kernel?
#
# **Goals.** See the model earn (or lose) your trust: a real Linux kernel, booted under QEMU with
# an emulated NVDIMM, creates device-dax namespaces, and we compare what it spent with what
# `vmemlab.plan` predicts for the same geometry.

# %% [markdown]
# ## How the measurements were taken
#
# `validation/harness.py` downloads Debian's packaged kernel, builds a tiny initramfs with
# `ndctl` and the NVDIMM modules, boots it under `qemu-system-x86_64` (software emulation) with
# an emulated NVDIMM, and for each configuration reads the free pages (including the per-CPU
# lists) and `/proc/vmstat` before `ndctl create-namespace`, after it, and after
# `ndctl destroy-namespace`. Each reading is repeated; do-nothing control pairs give the noise.
# The results are committed, so this chapter needs no QEMU.

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path("..").resolve()))
from validation import compare  # noqa: E402

results = compare.load(compare.DEFAULT_RESULTS)
print("kernel     ", results["kernel"]["uname_r"])
print("guest RAM  ", results["machine"]["ram_mib"], "MiB; NVDIMM", results["machine"]["nvdimm_gib"],
      "GiB")
print("1G CPU pages (pdpe1gb) in the guest:", bool(results["guest"].get("pdpe1gb")))
print("noise (pages):", compare.noise(results))
print("vmemlab kernel variant used:", compare.kernel_variant(results))

# %% [markdown]
# ## Predicted against measured
#
# "Measured" is the drop in free pages when the namespace is created, minus what the kernel's
# own counters explain (slab, vmalloc, per-CPU memory) and minus the direct-map page tables the
# hot-add needs (which the planner does not model). "Predicted" is the planner's vmemmap data
# pages plus page-table pages.

# %%
rows = compare.compare(results)
ns = [r for r in rows if r["kind"] == "namespace"]
print(f"{'configuration':<22} {'measured':>8} {'predicted':>9} {'residual':>8}  agrees")
for r in ns:
    print(f"{r['config']:<22} {r['measured_vmemmap']:>8.0f} {r['predicted']:>9} "
          f"{r['residual']:>8.0f}  {r['agrees']}")

# %%
from vmemlab.viz.kernel_check import kernel_check

fig = kernel_check(rows, title=f"vmemlab.plan against Debian {results['kernel']['uname_r']}")
fig

# %%
agree = sum(r["agrees"] for r in ns if not r["warmup"])
total = sum(not r["warmup"] for r in ns)
worst = max(abs(r["residual"]) for r in ns if not r["warmup"])
print(f"{agree} of {total} configurations agree within the noise; largest residual {worst:.0f} pages")

# %% [markdown]
# **What to notice:** every point sits on the line, from 1 page to 65536, across 4K, 2M and
# 1G alignments and both `--map` modes. The first namespace after boot (the warm-up, left out
# above) also pays one-time costs the model does not track, such as `mem_section` roots.
#
# ## Memory comes back
#
# After `ndctl destroy-namespace` the kernel should give back what it took, as the model's
# teardown does:

# %%
for r in ns:
    if not r["warmup"]:
        print(f"{r['config']:<22} taken {r['free_drop']:>7.0f}  returned {r['returned']:>7.0f}  "
              f"leak {r['leak']:>3.0f}")

# %% [markdown]
# ## A counter that changed under our feet
#
# `/proc/vmstat` has had `nr_memmap_pages` since 6.11. Up to early 2026 it counted the *full*
# memmap, deduplicated or not, and even when the memmap lived on the device. A 2026 fix
# (`section_nr_vmemmap_pages`, marked for stable) makes it count what deduplication really
# allocates; the Debian 6.12.117 kernel measured here already has it. The model offers both
# behaviours as kernel variants (`6.12`, as 6.12.0-6.12.10x count, and `6.12.117`; 6.6 has no
# such counter):

# %%
print(f"{'configuration':<22} {'nr_memmap_pages':>15} {'6.12 counts':>11} {'6.12.117 counts':>15}")
import vmemlab  # noqa: E402

for r in ns:
    if r["warmup"] or r["map"] != "mem":
        continue
    geo = r["geometry"]
    old = vmemlab.plan(geo["size"], align=r["align"], map=r["map"], start=geo.get("start"),
                       kernel="6.12").nr_memmap_pages
    print(f"{r['config']:<22} {r['nr_memmap_delta']:>15.0f} {old:>11} "
          f"{r['predicted_nr_memmap_delta']:>15}")

# %% [markdown]
# ## Exercises

# %%
from vmemlab import exercises  # noqa: E402

ex1 = exercises.generate("memmap-counter", seed=11)
ex1

# %%
answer = None  # your answer
ex1.check(answer)

# %%
ex2 = exercises.generate("vmemmap-pages", seed=11)
ex2

# %%
answer = None  # your answer
ex2.check(answer)

# %% [markdown]
# Reading such counters needs the same care as the model: a number is only as good as the
# kernel version it came from.
#
# ## Summary
#
# * Across every measured configuration the planner's RAM prediction matches the kernel
#   within the measurement noise, once the costs it does not model (direct map, slab) are
#   taken out.
# * Memory comes back after destroy, as the model's teardown says.
# * `nr_memmap_pages` counts the full memmap on 6.11–6.12.10x and the deduplicated one after
#   the 2026 fix.
#
# **Re-run it yourself:** `python3 validation/harness.py run` (about two minutes, needs
# `qemu-system-x86` and network access to Debian's archive), then
# `python3 validation/compare.py`.
