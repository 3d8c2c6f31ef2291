"""Thin ipywidgets explorers over the engine and :mod:`vmemlab.viz`.

Each explorer renders live (``explorer.ui`` / display it) or statically
(``explorer.render_static(order=9, map="mem")`` -> :class:`View` with figures and a text
summary, no front-end needed).  Engine refusals become messages, never tracebacks.
"""

from .base import SIZES, Explorer, View, cached_plan
from .explorers import (
    EXPLORERS,
    GupExplorer,
    MappingExplorer,
    PlacementExplorer,
    SavingsExplorer,
    StructPageExplorer,
)

__all__ = ["EXPLORERS", "Explorer", "GupExplorer", "MappingExplorer", "PlacementExplorer",
           "SavingsExplorer", "SIZES", "StructPageExplorer", "View", "cached_plan"]
