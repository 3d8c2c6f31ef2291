"""Header-like modules: the kernel's types, constants and inline helpers, one module per header.

The kernel breaks the loop between mm/memremap.c, mm/sparse-vmemmap.c, mm/mm_init.c and
mm/memory_hotplug.c with headers: every ``.c`` file includes the definitions of ``struct
dev_pagemap``, ``struct vmem_altmap`` and ``struct page``, and calls only down.  The model does the
same: a module here depends only on :mod:`vmemlab.errors`, :mod:`vmemlab.units` and other
modules of this package, and the ``.c``-like modules import from here.

=========================  =====================================================================
module                     kernel header
=========================  =====================================================================
:mod:`.memremap`           include/linux/memremap.h: ``struct dev_pagemap``, ``struct
                           vmem_altmap``, ``pgmap_vmemmap_nr``, ``pgmap_altmap``
:mod:`.mm_types`           include/linux/mm_types.h: the ``struct page`` / ``struct folio``
                           layouts (numpy dtypes), include/linux/poison.h
:mod:`.page_flags`         include/linux/page-flags.h, page-flags-layout.h: ``enum pageflags``,
                           zone/node fields of ``page->flags``, the ``compound_info`` mask
:mod:`.memory_model`       include/asm-generic/memory_model.h: ``__pfn_to_page`` /
                           ``__page_to_pfn`` for SPARSEMEM_VMEMMAP
:mod:`.hugetlb`            include/linux/hugetlb.h, mm/hugetlb_vmemmap.h: the HugeTLB folio,
                           the HVO report, the vmemmap span of a folio
=========================  =====================================================================

The ``.c``-like modules keep re-exporting these names (``from vmemlab.memremap import
DevPagemap`` still works).
"""
