"""Figures drawn from model objects (matplotlib; every function returns a Figure).

No model logic lives here: the functions read machines, plans and pgmaps through the engine's
own lookups (see :mod:`vmemlab.viz.adapters`).
"""

from ._style import OKABE_ITO, to_png
from .mapping import vmemmap_mapping

__all__ = ["OKABE_ITO", "to_png", "vmemmap_mapping"]
