"""include/asm-generic/memory_model.h (SPARSEMEM_VMEMMAP): ``__pfn_to_page(pfn)`` is
``vmemmap + pfn``, so a struct page's kernel virtual address is ``VMEMMAP_START + pfn *
sizeof(struct page)`` and back."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .mm_types import SIZEOF_STRUCT_PAGE

if TYPE_CHECKING:
    from ..machine import Machine


def head_va(m: Machine, pfns: np.ndarray | int) -> np.ndarray:
    """Kernel virtual address of the struct page of each pfn (``pfn_to_page``)."""
    return (np.uint64(m.arch.vmemmap_start)
            + np.asarray(pfns, np.int64).astype(np.uint64) * np.uint64(SIZEOF_STRUCT_PAGE))


def va_to_pfn(m: Machine, va: np.ndarray | int) -> np.ndarray:
    """``page_to_pfn`` of a struct page virtual address."""
    va = np.asarray(va, np.uint64)
    return ((va - np.uint64(m.arch.vmemmap_start)) // np.uint64(SIZEOF_STRUCT_PAGE)).astype(
        np.int64)
