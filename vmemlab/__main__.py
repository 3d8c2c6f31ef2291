"""``python -m vmemlab ...``: see :mod:`vmemlab.cli`."""

from .cli import main

raise SystemExit(main())
