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

