"""vmemlab.frames: RAM label pfns are pfns the machine has (issue 13 item 9) and unique."""

from __future__ import annotations

from vmemlab.frames import RAM_LABEL_BASE, RamAllocator
from vmemlab.machine import Machine


def test_labels_of_a_1g_machine_lie_inside_its_ram():
    # independent arithmetic: 1 GiB of 4 KiB pages is pfns 0 .. 0x3ffff
    m = Machine("x86_64", "6.6", ram="1G")
    f = m.frames
    live = f.live()
    ram = live[f.home[live] == 0]
    assert ram.size
    ends = f.pfn[ram] + (1 << f.order[ram].astype(int))
    assert int(f.pfn[ram].min()) >= 0 and int(ends.max()) <= 0x40000


def test_labels_stay_unique_after_more_churn_than_ram():
    # labels key the struct page store: after handing out more pages than the machine has
    # (alloc/free churn), they go on above the end of RAM rather than repeat
    r = RamAllocator(capacity=1024)
    seen = []
    for _ in range(5):
        p = r.alloc(512, 9)
        seen.append(p)
        r.release(512)
    spans = sorted((p, p + 512) for p in seen)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert seen[:2] == [512, 0] and seen[2] >= 1024


def test_unlimited_machines_keep_the_4g_labels():
    assert RamAllocator().alloc(1, 0) == RAM_LABEL_BASE
