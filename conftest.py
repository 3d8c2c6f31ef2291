"""Suite-wide pytest settings that must hold for every path given to pytest (a single
notebook too: ``pytest --nbval notebooks/04-*.ipynb`` loads this file, not tests/conftest.py).
"""

import os

import pytest

# -- spreading the suite over pytest-xdist workers (``-n auto --dist loadgroup`` in
# pyproject.toml; ``-n 0`` runs it in one process).  Grouping and order change only how long the
# suite takes, never its verdict.

#: files kept on one worker: their tests share module fixtures or an on-disk cache (the book's
#: kit pages, JupyterLab for the browser test) that a second worker would build again.  The
#: exercise tests join the book: its answer key generates every exercise kind for seeds 0-9, as
#: they do, and the multi-TiB plans behind chapter 09's answers are cached per process
SHARED = {"test_book.py": "book", "test_book_kit.py": "book", "test_exercises.py": "book",
          "test_exercises_why.py": "book", "test_browser.py": "browser",
          "test_viz.py": "viz", "test_plan.py": "plan", "test_page.py": "page",
          "test_machine_plan.py": "machine_plan", "test_compare.py": "compare",
          "test_pagewalk.py": "pagewalk", "test_hvo.py": "hvo"}

#: the slowest work first, so both workers finish at about the same time (from
#: ``pytest --durations=0``; a file not listed runs after these, in collection order)
SLOW_FIRST = ["test_book.py", "test_book_kit.py", "test_viz.py", "test_widgets.py",
              "09-capacity-planning.ipynb", "test_browser.py", "test_exercises_why.py",
              "12-the-2026-rework.ipynb", "test_exercises.py", "test_widgets_tasks.py",
              "11-real-kernel-check.ipynb", "test_plan.py", "test_stateful.py"]


@pytest.hookimpl(wrapper=True)  # before every plain hook, xdist's (which reads the groups) too
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]):
    for item in items:
        name = item.path.name
        # every notebook is one group: its cells run in order in one kernel
        group = SHARED.get(name) or (name if item.path.suffix == ".ipynb" else None)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda it: rank.get(it.path.name, len(rank)))  # stable: cells keep order
    return (yield)


def pytest_configure(config: pytest.Config) -> None:
    # pytest 9.2 derives nodeids from a structured id, and xdist 3.8's loadgroup renames
    # item._nodeid to group tests: under 9.2 the groups silently vanish and a notebook's cells
    # run on two workers (NameErrors).  pyproject.toml pins pytest < 9.2; say so if it is not.
    major, minor = (int(x) for x in pytest.__version__.split(".")[:2])
    if getattr(config.option, "dist", "no") == "loadgroup" and (major, minor) >= (9, 2):
        raise pytest.UsageError(
            f"pytest {pytest.__version__} breaks pytest-xdist's --dist loadgroup (notebook "
            "cells would be split over workers); install the test extra (pytest<9.2) or run "
            "with -n 0")


#: stateful-machine steps the reports carried (``stateful_steps``, tests/test_stateful.py):
#: summed here, in the process that writes the terminal, so xdist workers' steps count too
_STATEFUL = {"steps": 0, "tests": 0}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        for key, value in report.user_properties:
            if key == "stateful_steps":
                _STATEFUL["steps"] += int(value)
                _STATEFUL["tests"] += 1


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _STATEFUL["tests"]:
        seed = config.getoption("hypothesis_seed", None)
        terminalreporter.write_line(
            f"stateful machine: {_STATEFUL['steps']} steps over {_STATEFUL['tests']} arch x "
            f"kernel tests (hypothesis profile "
            f"{os.environ.get('HYPOTHESIS_PROFILE', 'ci')}, seed {seed})")
