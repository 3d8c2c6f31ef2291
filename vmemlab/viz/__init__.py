"""Figures drawn from model objects (matplotlib; every function returns a Figure).

No model logic lives here: the functions read machines, plans, pgmaps and results through the
engine's own lookups (see :mod:`vmemlab.viz.adapters`).

======================  ======================================================================
:func:`vmemmap_mapping`  one compound page's vmemmap pages -> frames (device-dax, and HVO beside)
:func:`pagetable_view`   PMD entries -> PTE tables -> frames (e.g. 5.19 vs v3 at 1G)
:func:`placement_view`   memmap in RAM (map=mem) vs on the device (map=dev)
:func:`struct_page_view` struct page fields of head / tails / fake heads (needs vmemlab.page)
:func:`savings_curves`   RAM per TiB against compound order, per arch and kernel
:func:`gup_view`         GUP-fast counters and modelled time vs the cover letter (vmemlab.gup)
======================  ======================================================================
"""

from ._style import OKABE_ITO, to_png, to_svg
from .gupview import gup_view
from .mapping import vmemmap_mapping
from .placement import placement_view
from .savings import savings_curves, savings_point
from .structpage import struct_page_view
from .tables_view import pagetable_view

__all__ = ["OKABE_ITO", "gup_view", "pagetable_view", "placement_view", "savings_curves",
           "savings_point", "struct_page_view", "to_png", "to_svg", "vmemmap_mapping"]
