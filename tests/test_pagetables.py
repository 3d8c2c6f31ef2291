"""``KernelPageTables.populate_pte_range``: the slice path for a contiguous range must do what
``populate_ptes`` does over the same vpns (``vmemmap_populate_range()``'s loop: an empty PTE gets
a fresh page or ``get_page(reuse)``, a present one is left alone), table for table and count for
count.  The reference is ``populate_ptes`` on a twin machine; the explicit values come from the
arithmetic in each test (x86_64: 512 PTEs per table)."""

from __future__ import annotations

import numpy as np
import pytest

from vmemlab.errors import KernelError
from vmemlab.frames import VMEMMAP
from vmemlab.machine import Machine


def _fresh(m: Machine):
    return lambda n: m.frames.alloc_ram(n, 0, VMEMMAP)


def _state(m: Machine):
    pt, fr = m.pgtables, m.frames
    return ({f: t.tolist() for f, t in pt.pte.items()}, dict(pt.entries[1]),
            fr.refcount[:fr.n].tolist(), fr.pfn[:fr.n].tolist(), fr.n, m.ram.used)


def _twins(prefill: list[int]):
    """Two identical machines with PTEs for ``prefill``, and the frames those PTEs map."""
    ms = [Machine("x86_64", "6.6") for _ in range(2)]
    pre = {}
    for m in ms:
        if prefill:
            got = m.pgtables.populate_ptes(np.array(prefill, np.int64), fresh=_fresh(m))
            pre = dict(zip(prefill, got.tolist()))
    return ms, pre


@pytest.mark.parametrize("lo,hi,prefill", [
    (0, 512, []),               # one whole table, all empty: the fresh frames in vpn order
    (100, 140, [110, 111, 139]),  # inside one table, partly present
    (500, 530, []),             # across two tables: the populate_ptes path
    (7, 10, []),                # three pages: the few-pages path
    (600, 600, []),             # nothing
])
def test_range_does_what_populate_ptes_does(lo, hi, prefill):
    (a, b), pre = _twins(prefill)
    got = a.pgtables.populate_pte_range(lo, hi, fresh=_fresh(a))
    want = b.pgtables.populate_ptes(np.arange(lo, hi, dtype=np.int64), fresh=_fresh(b))
    assert got.tolist() == want.tolist()
    assert _state(a) == _state(b)
    assert (got >= 0).all()
    assert got.size == hi - lo
    # a present PTE keeps its frame; every other one got a frame of its own
    for vpn, frame in pre.items():
        assert got[vpn - lo] == frame
    assert len(set(got.tolist())) == hi - lo


def test_range_with_reuse_takes_one_reference_per_new_pte():
    """The 40 PTEs of vpns 100-139 map vpn 5's frame, except 120 and 121, present already:
    its count goes 1 (allocation) + 38 (new PTEs) = 39."""
    (a, b), pre = _twins([5, 120, 121])
    r = pre[5]
    assert a.frames.refcount[r] == 1
    got = a.pgtables.populate_pte_range(100, 140, reuse=r)
    want = b.pgtables.populate_ptes(np.arange(100, 140, dtype=np.int64), reuse=r)
    assert got.tolist() == want.tolist()
    assert _state(a) == _state(b)
    assert a.frames.refcount[r] == 1 + 38
    assert got[20] == pre[120] and got[21] == pre[121] and (np.delete(got, [20, 21]) == r).all()


def test_range_under_a_pmd_leaf_is_eexist_and_changes_nothing():
    m = _twins([])[0][0]
    block = int(m.frames.alloc_ram(1, 9, VMEMMAP)[0])
    m.pgtables.set_pmd_leaf(0, block)
    before = _state(m)
    with pytest.raises(KernelError) as e:
        m.pgtables.populate_pte_range(8, 64, fresh=_fresh(m))
    assert e.value.errno == "EEXIST"
    assert _state(m) == before


def test_range_whose_allocation_fails_leaves_the_ptes_empty():
    """``fresh`` refusing (``-ENOMEM``) must leave every PTE of the range as it was."""
    (m, _), pre = _twins([200])

    def refuse(n):
        raise KernelError("ENOMEM", "vmemmap_alloc_block_buf", f"{n} pages")

    before = _state(m)
    with pytest.raises(KernelError):
        m.pgtables.populate_pte_range(150, 250, fresh=refuse)
    assert _state(m) == before
    (table,) = m.pgtables.pte.values()
    assert np.flatnonzero(table >= 0).tolist() == [200] and table[200] == pre[200]
