"""Seeded homework problems in the style of OSTEP's simulators.

Each problem is generated from a seed (the same seed gives the same problem everywhere), the
answer is computed by the model, and :meth:`Exercise.check` says right or wrong with the worked
explanation.  Solutions stay hidden unless :func:`show_solutions` is switched on (or the
environment variable ``VMEMLAB_SOLUTIONS=1`` is set).

>>> ex = generate("vmemmap-pages", seed=1)
>>> ex.check(ex.answer).correct
True

One module per chapter registers that chapter's problems (``ch01_struct_page`` ...
``ch11_real_kernel_check``); :mod:`.base` holds the machinery.  Everything stays importable
from ``vmemlab.exercises``.
"""

from __future__ import annotations

from . import (  # noqa: F401 - importing a chapter registers its problems
    ch01_struct_page,
    ch02_compound_pages,
    ch03_hvo,
    ch04_device_dax,
    ch05_bigger_than_a_section,
    ch06_bootstrap,
    ch07_gup,
    ch08_memory_failure,
    ch09_capacity_planning,
    ch10_hot_remove,
    ch11_real_kernel_check,
)
from .base import CheckResult, Exercise, exercise, generate, kinds, show_solutions, solutions_shown

__all__ = ["CheckResult", "Exercise", "exercise", "generate", "kinds", "show_solutions", "solutions_shown"]
