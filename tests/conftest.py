"""Test-wide settings.

Hypothesis profiles (``HYPOTHESIS_PROFILE`` selects one; the README's test command uses
``ci``):

* ``ci`` (default): derandomised -- the same examples on every run, so the suite passes or
  fails for a reason, never by luck -- with no example database carried between runs.
* ``deep``: random exploration for long runs, many more examples and stateful steps::

      HYPOTHESIS_PROFILE=deep python3 -m pytest tests/test_stateful.py -p no:cacheprovider \
          --hypothesis-seed=1

  ``VMEMLAB_DEEP_EXAMPLES`` (default 200) sets the examples per test (per arch x kernel pair
  for the state machine, 60 steps each); the run's summary ends with the steps it took
  (``stateful machine: N steps``, from the root ``conftest.py``).  Run it with several
  ``--hypothesis-seed=N`` values too; every property must hold for any seed.
* ``seeded``: the ``ci`` example counts, but drawn from ``--hypothesis-seed=N`` instead of
  derandomised (under ``ci`` hypothesis ignores the seed), to check that every property test
  passes under other seeds::

      for n in 1 2 3 4 5 6 7 8 9 10; do HYPOTHESIS_PROFILE=seeded python3 -m pytest tests \
          -q --hypothesis-seed=$n || break; done
"""

import os

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


def _fix_local_constants() -> None:
    """Make hypothesis's pool of "local constants" the same in every run.

    Hypothesis (6.13x on) mixes into its draws integers and strings taken from the source of
    the *local* modules loaded so far (``hypothesis.internal.conjecture.providers``, rescanned
    whenever ``sys.modules`` grows).  Which vmemlab modules a worker has loaded when a property
    test runs depends on the tests xdist gave it before, so the derandomised ``ci`` examples
    depended on scheduling: the state machine ran 5802 steps alone and 5815 after any test that
    drew a figure.  Loading the whole package here, before any test, and then keeping that
    pool, gives every run the same examples.  (No public setting turns the pool off; where
    hypothesis has none of this, there is nothing to keep.)"""
    import importlib
    import pkgutil

    import vmemlab

    for mod in pkgutil.walk_packages(vmemlab.__path__, "vmemlab."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover - another hypothesis layout
        return
    get = getattr(providers, "_get_local_constants", None)
    if get is not None:
        import warnings

        with warnings.catch_warnings():  # "slow code in plugin": reading the constants
            warnings.simplefilter("ignore")  # cache once, here, is the point
            pool = get()
        providers._get_local_constants = lambda: pool


_fix_local_constants()

