# %% [markdown]
# # 12 — The 2026 rework: one shared tail page per zone and order
#
# **Goals.** Follow the memmap of a device-dax compound page through three kernels: the v3
# series as posted in 2021, mainline as merged in 5.19, and the 2026 mm tree, where device-dax
# and HVO use one optimisation: every compound page keeps only its head vmemmap page, and all
# its other vmemmap pages map one page of tail struct pages that the whole zone shares for that
# order. See what it costs per TiB, what the page tables look like, what teardown leaves
# behind, and what the commit messages say about why.
#
# The model of the rework is kernel variant `"mm-2026"` (`vmemlab.vmemmap_optimization`). It
# follows source read in the mm development tree (`linux-mm/linux-mm` in the search index); no
# release tree in the index carries it. The files and commits it follows:

# %%
import numpy as np

import vmemlab
from vmemlab import viz
from vmemlab import vmemmap_optimization as vo
from vmemlab.memremap import DevPagemap, memremap_pages, memunmap_pages

for repo, path, commit in vo.SOURCES:
    print(f"{repo}  {path}  @ {commit[:12]}")
print()
print("The series (commit ids of linux-next next-20260924):")
for cid, title in vo.SERIES:
    print(f"  {cid} {title}")

# %% [markdown]
# ## What each compound page keeps
#
# In 5.19 (and every release since), `vmemmap_populate_compound_pages()` gives each compound
# page two vmemmap pages of its own: the head page (head struct page and the first tails) and
# one page of tails, which all the compound page's other vmemmap PTEs then map. In the rework
# the loop populates only the head page; every other PTE maps
# `vmemmap_shared_tail_page(order, zone)`. The cell reads the first two compound pages of a
# 2 MiB-aligned namespace off the model's page tables: which frame each vmemmap page maps.

# %%
def frames_of(p, index):
    m, pgmap = p._machine, p._pgmap
    a = m.arch
    nr = 1 << pgmap.vmemmap_shift
    first = (pgmap.ranges[0][0] >> a.page_shift) + index * nr
    lo = first * a.struct_page_size >> a.page_shift
    hi = (first + nr) * a.struct_page_size >> a.page_shift
    frame, _ = m.pgtables.resolve(np.arange(lo, hi, dtype=np.int64))
    return frame.tolist()


for k in ("5.19", "mm-2026"):
    p = vmemlab.plan("1G", align="2M", kernel=k)
    print(f"kernel {k:>7}: compound page 0 -> frames {frames_of(p, 0)}")
    print(f"{'':16} compound page 1 -> frames {frames_of(p, 1)}")

# %% [markdown]
# Under 5.19 each compound page has its own tail frame; under the rework the two compound pages
# end in the same frame. The figure draws the same thing for one compound page of each kernel,
# with the HVO'd HugeTLB page of the same size beside it (in the rework HVO too maps its tails
# to a shared page, of its own zone).

# %%
from vmemlab.hugetlb_vmemmap import alloc_hugetlb_folio, hugetlb_vmemmap_optimize


def hvo_page(kernel):
    m = vmemlab.Machine("x86_64", kernel, ram="512M")
    folio = alloc_hugetlb_folio(m, "2M")
    hugetlb_vmemmap_optimize(m, folio)
    return m, folio


old = vmemlab.plan("1G", align="2M", kernel="5.19")
new = vmemlab.plan("1G", align="2M", kernel="mm-2026")
fig_old = viz.vmemmap_mapping(old, 0, hvo=hvo_page("6.6"))
fig_old

# %%
fig_new = viz.vmemmap_mapping(new, 0, hvo=hvo_page("mm-2026"))
fig_new

# %% [markdown]
# ## Tails that belong to every compound page
#
# A page of tail struct pages can only be shared if its contents do not depend on which compound
# page it serves. Up to 6.x a tail's `compound_head` field holds the address of its head plus 1,
# so the tails of two compound pages differ. Kiryl Shutsemau's series (the ground the rework
# stands on; `include/linux/page-flags.h`) stores instead a mask: for a power-of-two
# `struct page`, `set_compound_head(tail, head, order)` writes
# `GENMASK(BITS_PER_LONG - 1, order + log2(sizeof(struct page))) | 1`, and `compound_head(page)`
# is `page & mask`. The cell reads the field of struct page 100 of the first two compound pages,
# and the head each resolves to:

# %%
from vmemlab.page import compound_head_pfns, read_field

for q in (old, new):
    m, pgmap = q._machine, q._pgmap
    first = pgmap.init_stats[0].start_pfn
    tails = np.array([first + 100, first + 512 + 100])
    info = [hex(int(v)) for v in read_field(m, tails, "compound_head")]
    heads = (compound_head_pfns(m, tails) - first).tolist()
    print(f"kernel {q.kernel:>7}: compound_head/compound_info {info} -> heads at +{heads}")

# %% [markdown]
# ## RAM per TiB at 2 MiB and 1 GiB
#
# Each figure below is read off the model (`viz.savings_point`: two plans extrapolated to a
# TiB, struct-page pages plus PTE tables in RAM). The 1 GiB case shows where the rest of the
# cost sits: with 4 KiB pages, each 2 MiB of vmemmap needs a PTE table, and a 1 GiB compound page
# has 16 MiB of vmemmap, so the tables outweigh the data. The v3 series shared those tables too
# (patch 14, never merged); the rework does not touch the tables.

# %%
from vmemlab.units import format_size

rows = []
for k in ("v3", "5.19", "6.6", "mm-2026"):
    cells = []
    for order in (9, 18):
        pt = viz.savings_point("x86_64", k, order)
        cells.append(f"{format_size(pt.bytes_per_tib):>10} "
                     f"({pt.ram_data_pages} data + {pt.pte_table_pages} PTE-table pages)")
    rows.append((k, *cells))
print(f"{'kernel':>8}  {'2 MiB pages':>42}  {'1 GiB pages':>38}")
for k, c2, c1 in rows:
    print(f"{k:>8}  {c2:>42}  {c1:>38}")

# %% [markdown]
# The rework covers ppc64 radix too (its own `vmemmap_populate_compound_pages` in
# `arch/powerpc/mm/book3s64/radix_pgtable.c`). With 64 KiB pages only the 1 GiB alignment has
# more than one vmemmap page of struct pages per compound page; arm64 never optimised device-dax:

# %%
for arch, align in (("ppc64-radix-64k", "1G"), ("arm64-4k", "2M")):
    for k in ("6.6", "mm-2026"):
        q = vmemlab.plan("1T", align=align, arch=arch, kernel=k)
        print(f"{arch:>16} {align} pages, kernel {k:>7}: {format_size(q.ram_bytes):>8} of RAM "
              f"for a 1 TiB namespace ({q.ram_data_pages} struct-page pages, "
              f"{q.ram_pagetable_pages} page-table pages)")

# %% [markdown]
# At 2 MiB the rework halves the data pages: one own page per compound page instead of two, plus
# a single shared page for the whole zone (the "+1" in the data count). At 1 GiB it saves one page
# per compound page, a small step next to the eight PTE tables each one needs, which only the v3
# series' patch 14 removed. The curves over every order, all kernels:

# %%
fig_curves = viz.savings_curves(["x86_64"])
fig_curves

# %% [markdown]
# ## What the page tables look like at 1 GiB
#
# Eight sections per compound page, so eight PTE tables. Under 5.19 the first section's table
# holds the head page, the compound page's own tail page and reuse PTEs, and the seven others
# hold reuse PTEs to that tail page. Under the rework every section's table maps the zone's
# shared page, except for the head PTE.

# %%
old1g = vmemlab.plan("2G", align="1G", kernel="5.19")
new1g = vmemlab.plan("2G", align="1G", kernel="mm-2026")
fig_tables = viz.pagetable_view(old1g, new1g)
fig_tables

# %%
for q in (old1g, new1g):
    m = q._machine
    tails = vo.shared_tail_pages(m)
    print(f"kernel {q.kernel:>7}: PTE tables {q.pagetables['pte']}, data pages "
          f"{q.ram_data_pages} for {q.compound_pages} compound pages; shared tail pages: "
          f"{[(z, o, t['refcount']) for (z, _, o), t in tails.items()]}")

# %% [markdown]
# The shared page's reference count is one for the zone plus one per PTE that maps it
# (`get_page()` in `vmemmap_pte_populate` for the device-dax path).
#
# ## Scope: per order and per zone
#
# `vmemmap_shared_tail_page(order, zone)` keeps one page per order in `zone->vmemmap_tails[]`.
# Device-dax asks for the `ZONE_DEVICE` zone of its node (`device_zone(node)`), HVO for the
# zone of its folio. Two namespaces of one order share the page; another order gets another.

# %%
m = vmemlab.Machine("x86_64", "mm-2026", ram="512M")
G = 1 << 30
pgmaps = [DevPagemap(ranges=[(s * G, (s + 1) * G)], vmemmap_shift=o, name=f"dax{i}.0")
          for i, (s, o) in enumerate([(64, 9), (66, 9), (68, 18)])]
for pg in pgmaps:
    memremap_pages(m, pg)
folio = alloc_hugetlb_folio(m, "2M")
hugetlb_vmemmap_optimize(m, folio)
for (zone, nid, order), t in vo.shared_tail_pages(m).items():
    print(f"zone {zone:>6} node {nid} order {order:>2}: frame {t['frame']}, "
          f"mapped by {t['ptes']} PTEs, refcount {t['refcount']}")

# %% [markdown]
# The HVO page's seven tail PTEs map the `Normal` zone's page for order 9, read-only, and take no
# reference (`mk_pte()` in `vmemmap_remap_pte`), so its count stays at the zone's one.
#
# ## `nr_memmap_pages` and teardown
#
# `section_nr_vmemmap_pages()` now counts by the order recorded on the section: one page per
# compound page (below a section), or one for the section holding the head (above). The shared
# page is counted nowhere. Hot-remove clears PTEs one by one (x86 `remove_pagetable`: one
# `put_page` each); a head page goes with its PTE. The shared page keeps its allocation reference
# in the zone, and no function in the source read here frees it: it outlives every namespace.

# %%
for pg in pgmaps:
    memunmap_pages(m, pg)
print("after removing every namespace (the HugeTLB page stays optimised):", dict(m.vmstat))
for (zone, _nid, order), t in vo.shared_tail_pages(m).items():
    print(f"zone {zone:>6} order {order:>2}: refcount {t['refcount']}, PTEs {t['ptes']}")

# %% [markdown]
# One detail of the rework changes what a namespace has to look like to be optimised at all:
# `section_set_compound_order_range()` records an order only for whole sections, so a namespace
# that covers part of a section keeps its full memmap; and adding a sub-section into a section
# that has an order is refused with `-EOPNOTSUPP`.

# %%
for size in ("64M", "128M"):
    q = vmemlab.plan(size, align="2M", kernel="mm-2026")
    print(f"{size:>5} namespace: deduplicated {q.optimised}, struct-page pages "
          f"{q.ram_data_pages}, nr_memmap_pages {q.nr_memmap_pages}")

# %% [markdown]
# ## Why the kernel changed
#
# From the commit messages readable in the index (mail archives and linux-next's revision
# lists), not from the rework's own cover letter, which the index does not hold:
#
# * **Fake heads had to go first.** Kiryl Shutsemau's series "Eliminate fake head pages from
#   vmemmap optimization" (v7, February 2026) changed how a tail finds its head: with a mask
#   encoding (for power-of-two `struct page` sizes) "all tail pages of the same order are now
#   identical regardless of which compound page they belong to. This means the tail pages can
#   be truly shared without fake heads." It allocated "a single page of initialized tail struct
#   pages" per order for HVO, first per node, then (v7) per zone, "This ensures tail pages have
#   correct zone information." The head page stays unique per huge page.
# * **Then device-dax joined.** Muchun Song's series is readable here only through its titles
#   (above) and the code before and after it. Its titles and code say: device DAX switches from
#   its own population model (a tail page of its own per compound page) to the section-based
#   one HVO uses; the order is set on the section from `pgmap->vmemmap_shift`, the tail page is
#   the zone's shared one, "the extra tail page" leaves the device DAX reservation (which is where
#   the page per compound page is saved), and powerpc switches too.
# * **Counting it right.** Muchun's earlier fix that introduced `section_nr_vmemmap_pages()`
#   (Fixes: 15995a352474) says `nr_memmap_pages` "is incorrect. The current code always accounts
#   for the full, non-optimized vmemmap size"; the rework keeps that helper and counts by the
#   section's order.
#
# ## What the model could not read
#
# The `linux-mm/linux-mm` copy stores the rework's `.c` files but only older versions of
# `include/linux/mmzone.h`, where `VMEMMAP_OPTIMIZATION_PAGES` and friends are defined; they are
# read in two forks that carry the series. The rework's `mm/mm_init.c` (how
# `memmap_init_zone_device` changes), its `Documentation/mm/vmemmap_dedup.rst` and its
# `vmemmap_can_optimize()` were not readable. The module docstring of
# `vmemlab.vmemmap_optimization` says what the model takes in their place:

# %%
doc = vo.__doc__
print(doc[doc.index("* The three constants"):doc.index("The series, as listed")].strip())
