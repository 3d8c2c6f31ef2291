"""memmap_init_zone_device (vmemlab.mm_init): counts, lazy == eager contents, the cost model.

Independent arithmetic used for the expected counts (x86_64, 4 KiB pages, 64-byte struct page):
* 128 GiB / 4 KiB = 2**25 = 33554432 struct pages, all written at 4K alignment (order 0);
* compound_nr_pages = 2 * (PAGE_SIZE / sizeof(struct page)) = 2 * 4096 / 64 = 128
  (kernel-facts §7, 5.19-6.3 and 6.6 ``VMEMMAP_RESERVE_NR`` = 2);
* 2M: 128 GiB / 2 MiB = 65536 compound pages x 128 = 8388608;
* 1G: 128 compound pages x 128 = 16384 (the cover letter's patch 9: "1G from 262144 to 128").
Cover-letter figures (compound-pagemaps-v3-cover-letter.txt): "NVDIMM namespace bootstrap
improves from ~268-358 ms to ~78-100/<1ms on 128G NVDIMMs with 2M and 1G respectivally".
"""

from __future__ import annotations

import numpy as np
import pytest

from vmemlab.machine import Machine
from vmemlab.memremap import DevPagemap, memremap_pages
from vmemlab.mm_init import (
    COVER_LETTER_BOOTSTRAP_MS,
    calibrate_init_cost,
    memmap_init_zone_device,
)
from vmemlab.page import read_field, struct_pages
from vmemlab.plan import plan

GiB, MiB = 1 << 30, 1 << 20
BASE = 64 * GiB
FIRST = BASE >> 12


@pytest.mark.parametrize("kernel", ["v3", "5.19", "6.6"])
@pytest.mark.parametrize("align,expected", [("4K", 1 << 25), ("2M", 65536 * 128),
                                            ("1G", 128 * 128)])
def test_struct_pages_initialised_per_128g_namespace(kernel, align, expected):
    p = plan("128G", align=align, kernel=kernel)
    assert p.struct_pages_initialised == expected
    lines = sum(s.cache_lines_touched for s in p._pgmap.init_stats)
    assert lines == expected  # one 64-byte struct page per 64-byte cache line


def test_5_17_writes_every_struct_page():
    # 5.17: compound devmaps without deduplication: all 512 struct pages per 2M page
    assert plan("128G", align="2M", kernel="5.17").struct_pages_initialised == 1 << 25


def eager_machine(kernel: str, order: int, size: int) -> tuple[Machine, DevPagemap, object]:
    """memremap_pages, then replace the recorded init by the eager kernel loop."""
    m = Machine("x86_64", kernel)
    pg = DevPagemap(ranges=[(BASE, BASE + size)], vmemmap_shift=order, name="dax0.0")
    memremap_pages(m, pg)
    st = struct_pages(m)
    tok = st.pgmap_token(pg)
    st.records = [r for r in st.records if r.owner != tok]
    stats = memmap_init_zone_device(m, FIRST, size >> 12, pg, eager=True)
    return m, pg, stats


@pytest.mark.parametrize("kernel", ["v3", "5.17", "5.19", "6.6"])
@pytest.mark.parametrize("order,size", [(0, 2 * MiB), (9, 32 * MiB), (18, GiB)])
def test_lazy_replay_equals_eager_kernel_loop(kernel, order, size):
    m_lazy = Machine("x86_64", kernel)
    pg = DevPagemap(ranges=[(BASE, BASE + size)], vmemmap_shift=order, name="dax0.0")
    memremap_pages(m_lazy, pg)
    m_eager, pg_e, stats = eager_machine(kernel, order, size)
    assert stats == pg.init_stats[0]  # the loop's own count equals the recorded count
    n = size >> 12
    pfns = FIRST + (np.arange(n, dtype=np.int64) if n <= 16384 else
                    np.unique(np.r_[np.arange(300), np.arange(0, n, 61)]).astype(np.int64))
    a = read_field(m_lazy, pfns, "words")
    b = read_field(m_eager, pfns, "words")
    diff = np.flatnonzero((a != b).any(axis=1))
    assert diff.size == 0, f"pfn index {pfns[diff[:3]] - FIRST} differ"


def test_init_cost_model_calibrated_on_4k_predicts_2m_and_1g():
    """Calibration: ONE figure, the 128G NVDIMM at 4K (268-358 ms; midpoint 313 ms) over the
    2**25 struct pages the model says the loop writes -> ~9.33 ns per struct page.
    Predictions (not fitted): 2M writes 8388608 -> ~78.3 ms, in the cover letter's 78-100 ms;
    1G writes 16384 -> ~0.15 ms, under 1 ms.  Honest note: the pure per-struct-page model lands
    at the low edge of the 2M range; the band from the ends of the 4K figure (67-89.5 ms)
    straddles 78 ms.  No second term is fitted (ns_per_compound_page stays 0)."""
    stats = {al: plan("128G", align=al, kernel="v3")._pgmap.init_stats for al in ("4K", "2M", "1G")}
    model = calibrate_init_cost(stats["4K"])
    assert model.ns_per_compound_page == 0.0
    assert model.ns_per_struct_page == pytest.approx(313e6 / (1 << 25))
    assert model.predict_ms(stats["4K"]) == pytest.approx(313.0)
    lo, hi = COVER_LETTER_BOOTSTRAP_MS["2M"]
    p2m = model.predict_ms(stats["2M"])
    assert lo <= p2m <= hi, p2m
    assert model.predict_ms(stats["1G"]) < COVER_LETTER_BOOTSTRAP_MS["1G"][1]
    band = model.predict_band_ms(stats["2M"])
    assert band[0] < lo < band[1] < hi  # the band straddles the low end: reported, not hidden


def test_altmap_skips_memmap_pfns_and_counts_from_the_data():
    p = plan("1G", align="2M", map="dev")
    pg = p._pgmap
    s = pg.init_stats[0]
    off = pg.altmap.vmem_altmap_offset()
    assert s.start_pfn == pg.altmap.base_pfn + off
    # no dedup with an altmap: every struct page of the data part is written
    assert s.struct_pages_initialised == s.nr_pages == ((1 * GiB) >> 12) - off
