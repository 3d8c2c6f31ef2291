"""The GUP-fast cost model and its fit: nanoseconds per counted event (:class:`CostParams`),
:func:`predict_ns`, :func:`fit_params` by non-negative least squares (:func:`nnls`, numpy
Lawson-Hanson; why not scipy: ARCHITECTURE.md), and the v3 cover letter's gup_test table
(:data:`COVER_LETTER_ROWS`).

Not kernel code: the counts come from the mm/gup.c model (:mod:`vmemlab.gup`, which re-exports
this module and runs the table's scenarios, :func:`vmemlab.gup.cover_letter_table`).
Modelling choices, not kernel facts: the miss/near split (prefetchers follow a stream within a
4 KiB page, not a 32 KiB stride) is not something the cover letter measured; per-call overhead
of gup_test's batches (``-n``) and cross-CPU effects are not modelled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

import numpy as np

from .errors import ParameterError
from .gup_refs import GupCounters


@dataclass
class CostParams:
    """Nanoseconds per event.  ``miss_*`` is the first line touched in a vmemmap page (a demand
    miss the prefetcher has not seen coming: the struct-page stride between compound heads is
    32 KiB at 2M); ``near_*`` each further line of the same physical vmemmap page (streamed or
    prefetched); ``atomic_*`` a locked RMW on a struct-page line already fetched; ``entry`` one
    ``pages[]`` store plus loop overhead per subpage; ``pgtable_entry`` one user page-table read.
    Defaults are the fit on the cover letter's 16G rows (see :func:`cover_letter_table`)."""

    entry: float = 1.44
    miss_ram: float = 0.0
    near_ram: float = 9.70
    atomic_ram: float = 2.59
    miss_dev: float = 363.5
    near_dev: float = 112.4
    atomic_dev: float = 0.0
    pgtable_entry: float = 0.0

    MEANING = {
        "entry": "per pages[] entry written (record_subpages / the per-page loop)",
        "miss_ram": "first struct-page line of a RAM vmemmap page (demand miss to DRAM)",
        "near_ram": "each further struct-page line of the same RAM vmemmap page (streamed)",
        "atomic_ram": "locked RMW (set_bit, atomic_add) on a RAM struct-page line",
        "miss_dev": "first struct-page line of a device (pmem, --map=dev) vmemmap page",
        "near_dev": "each further struct-page line of the same device vmemmap page",
        "atomic_dev": "locked RMW on a device (pmem) struct-page line",
        "pgtable_entry": "per user page-table entry read (fixed 0: PMD entries stay cached)",
    }

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def vector(self) -> np.ndarray:
        return np.array([getattr(self, n) for n in self.names()], float)


def features(c: GupCounters) -> np.ndarray:
    """The counts each :class:`CostParams` field multiplies, in field order."""
    return np.array([c.pages_entries, c.vmemmap_pages_ram, c.lines_near_ram, c.atomics_ram,
                     c.vmemmap_pages_device, c.lines_near_device, c.atomics_device,
                     c.pgtable_entries_total], float)


def predict_ns(c: GupCounters, params: CostParams | None = None) -> float:
    """Predicted time of the call in nanoseconds."""
    params = CostParams() if params is None else params
    return float(features(c) @ params.vector())


def nnls(A: np.ndarray, b: np.ndarray, max_iter: int = 500) -> np.ndarray:
    """Non-negative least squares ``min ||Ax - b||, x >= 0`` (Lawson-Hanson active set)."""
    A = np.asarray(A, float)
    b = np.asarray(b, float)
    n = A.shape[1]
    x = np.zeros(n)
    passive = np.zeros(n, np.bool_)
    w = A.T @ (b - A @ x)
    tol = 1e-10 * max(1.0, float(np.abs(A).max()) * float(np.abs(b).max()))
    for _ in range(max_iter):
        if passive.all() or (w[~passive] <= tol).all():
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(A[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > 1e-12
            x[~passive] = 0.0
        w = A.T @ (b - A @ x)
    return x


def fit_params(rows: Sequence[tuple[GupCounters, float]], free: Iterable[str] | None = None,
               fixed: CostParams | None = None, relative: bool = True) -> CostParams:
    """Fit :class:`CostParams` to measured ``(counters, ns)`` rows by non-negative least squares.

    ``free`` names the parameters to fit (default all but ``pgtable_entry``); the others keep
    their ``fixed`` values.  ``relative`` weights each row by 1/measured, so a 6 ms row counts as
    much as a 4 s one (the cover letter's rows span three orders of magnitude)."""
    names = CostParams.names()
    free = [n for n in names if n != "pgtable_entry"] if free is None else list(free)
    for n in free:
        if n not in names:
            raise ParameterError("free", n, "CostParams field names")
    fixed = CostParams(**{n: 0.0 for n in names}) if fixed is None else fixed
    X = np.array([features(c) for c, _ in rows])
    y = np.array([t for _, t in rows], float)
    fi = [names.index(n) for n in free]
    xi = [i for i in range(len(names)) if i not in fi]
    y_res = y - X[:, xi] @ fixed.vector()[xi]
    A = X[:, fi]
    if relative:
        A = A / y[:, None]
        y_res = y_res / y
    scale = np.maximum(np.abs(A).max(axis=0), 1e-30)
    sol = nnls(A / scale, y_res) / scale
    vals = fixed.vector()
    vals[fi] = sol
    return CostParams(**dict(zip(names, vals.tolist())))


#: "[PATCH v3 00/14] mm, sparse-vmemmap: Introduce compound pagemaps" (Joao Martins, linux-mm,
#: 14 Jul 2021), /work/shared/reference/compound-pagemaps-v3-cover-letter.txt.  Each row:
#: (size, flags, map, when, ms, quoted line).  "before" = next-20210714 without the series
#: (base-page devmaps: kernel "5.16" here), "after" = with it (compound pagemaps, tail-page
#: vmemmap reuse for RAM memmaps, patch 13's head-once GUP: kernel "v3").
COVER_LETTER_ROWS: list[tuple[str, str, str, str, float, str]] = [
    ("16G", "get", "mem", "before", 59.0, "(16G get_user_pages_fast 2M page size) ~59 ms -> ~6.1 ms"),
    ("16G", "get", "mem", "after", 6.1, "(16G get_user_pages_fast 2M page size) ~59 ms -> ~6.1 ms"),
    ("16G", "pin", "mem", "before", 87.0, "(16G pin_user_pages_fast 2M page size) ~87 ms -> ~6.2 ms"),
    ("16G", "pin", "mem", "after", 6.2, "(16G pin_user_pages_fast 2M page size) ~87 ms -> ~6.2 ms"),
    ("16G", "get", "dev", "before", 494.0,
     "(16G get_user_pages_fast altmap 2M page size) ~494 ms -> ~9 ms"),
    ("16G", "get", "dev", "after", 9.0,
     "(16G get_user_pages_fast altmap 2M page size) ~494 ms -> ~9 ms"),
    ("16G", "pin", "dev", "before", 494.0,
     "(16G pin_user_pages_fast altmap 2M page size) ~494 ms -> ~10 ms"),
    ("16G", "pin", "dev", "after", 10.0,
     "(16G pin_user_pages_fast altmap 2M page size) ~494 ms -> ~10 ms"),
    ("128G", "get", "mem", "before", 492.0, "(128G get_user_pages_fast 2M page size) ~492 ms -> ~49 ms"),
    ("128G", "get", "mem", "after", 49.0, "(128G get_user_pages_fast 2M page size) ~492 ms -> ~49 ms"),
    ("128G", "pin", "mem", "before", 493.0, "(128G pin_user_pages_fast 2M page size) ~493 ms -> ~50 ms"),
    ("128G", "pin", "mem", "after", 50.0, "(128G pin_user_pages_fast 2M page size) ~493 ms -> ~50 ms"),
    ("128G", "get", "dev", "before", 3910.0,
     "(128G get_user_pages_fast altmap 2M page size) ~3.91 s -> ~70 ms"),
    ("128G", "get", "dev", "after", 70.0,
     "(128G get_user_pages_fast altmap 2M page size) ~3.91 s -> ~70 ms"),
    ("128G", "pin", "dev", "before", 3970.0,
     "(128G pin_user_pages_fast altmap 2M page size) ~3.97 s -> ~74 ms"),
    ("128G", "pin", "dev", "after", 74.0,
     "(128G pin_user_pages_fast altmap 2M page size) ~3.97 s -> ~74 ms"),
]


#: kernel variant of each side of the table
COVER_LETTER_KERNELS = {"before": "5.16", "after": "v3"}


@dataclass
class Prediction:
    size: str
    flags: str
    map: str
    when: str
    measured_ms: float
    predicted_ms: float

    @property
    def error(self) -> float:
        return self.predicted_ms / self.measured_ms - 1.0


def format_table(params: CostParams, preds: list[Prediction]) -> str:
    lines = ["parameters (ns): " + ", ".join(f"{n}={getattr(params, n):.2f}"
                                             for n in CostParams.names())]
    lines.append(f"{'row':<28}{'measured':>12}{'predicted':>12}{'error':>9}")
    for p in preds:
        label = f"{p.size} {p.flags} {'altmap' if p.map == 'dev' else 'RAM'} {p.when}"
        lines.append(f"{label:<28}{p.measured_ms:>10.1f}ms{p.predicted_ms:>10.1f}ms"
                     f"{100 * p.error:>+8.1f}%")
    return "\n".join(lines)


def namespace_for(mapping: int) -> int:
    """Raw namespace size that leaves at least ``mapping`` bytes of dax data with
    ``--map=dev`` (64 B of memmap per 4 KiB page plus the info block), rounded up to 1 GiB."""
    gib = 1 << 30
    extra = mapping // 64 + (4 << 20)
    return mapping + -(-extra // gib) * gib
