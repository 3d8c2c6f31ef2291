"""Test-wide settings.

Hypothesis profiles (``HYPOTHESIS_PROFILE`` selects one; the README's test command uses
``ci``):

* ``ci`` (default): derandomised -- the same examples on every run, so the suite passes or
  fails for a reason, never by luck -- with no example database carried between runs.
* ``deep``: random exploration for long runs, many more examples and stateful steps::

      HYPOTHESIS_PROFILE=deep python3 -m pytest tests/test_stateful.py -p no:cacheprovider \
          --hypothesis-seed=1 -s

  ``VMEMLAB_DEEP_EXAMPLES`` (default 200) sets the examples per test (per arch x kernel pair
  for the state machine, 60 steps each).  Run it with several ``--hypothesis-seed=N`` values
  too; every property must hold for any seed.
* ``seeded``: the ``ci`` example counts, but drawn from ``--hypothesis-seed=N`` instead of
  derandomised (under ``ci`` hypothesis ignores the seed), to check that every property test
  passes under other seeds::

      for n in 1 2 3 4 5 6 7 8 9 10; do HYPOTHESIS_PROFILE=seeded python3 -m pytest tests \
          -q --hypothesis-seed=$n || break; done
"""

import os

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("MPLBACKEND", "Agg")

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "deep", derandomize=False, database=None, deadline=None,
    max_examples=int(os.environ.get("VMEMLAB_DEEP_EXAMPLES", "200")),
    stateful_step_count=60, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "seeded", derandomize=False, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# -- spreading the suite over pytest-xdist workers (``-n auto --dist loadgroup`` in
# pyproject.toml; ``-n 0`` runs it in one process).  Grouping and order change only how long the
# suite takes, never its verdict.

#: files kept on one worker: their tests share module fixtures or an on-disk cache (the book's
#: kit pages, JupyterLab for the browser test) that a second worker would build again
SHARED = {"test_book.py": "book", "test_book_kit.py": "book", "test_browser.py": "browser",
          "test_viz.py": "viz", "test_plan.py": "plan", "test_page.py": "page",
          "test_machine_plan.py": "machine_plan", "test_compare.py": "compare",
          "test_pagewalk.py": "pagewalk", "test_hvo.py": "hvo"}

#: the slowest work first, so both workers finish at about the same time (from
#: ``pytest --durations=0``; a file not listed runs after these, in collection order)
SLOW_FIRST = ["test_book.py", "test_book_kit.py", "test_viz.py", "test_widgets.py",
              "09-capacity-planning.ipynb", "test_browser.py", "test_exercises_why.py",
              "12-the-2026-rework.ipynb", "test_exercises.py", "test_widgets_tasks.py",
              "11-real-kernel-check.ipynb", "test_plan.py", "test_stateful.py"]


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        name = item.path.name
        # every notebook is one group: its cells run in order in one kernel
        group = SHARED.get(name) or (name if item.path.suffix == ".ipynb" else None)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda it: rank.get(it.path.name, len(rank)))  # stable: cells keep order
