"""What every harness step shares: paths, sizes, :class:`HarnessError` and :func:`run_cmd`."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent


DEFAULT_CACHE = HERE / ".cache"


DEFAULT_OUT = HERE / "results" / "linux-6.12.json"


GIB = 1 << 30


MIB = 1 << 20


KIB = 1 << 10


class HarnessError(Exception):
    """A failure that ends the run with one clear message."""


def run_cmd(cmd: Sequence[str], what: str, timeout: float = 600, **kw) -> str:
    """Run a host command; raise HarnessError naming ``what`` if it fails."""
    try:
        res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False, **kw)
    except FileNotFoundError as exc:
        raise HarnessError(f"{what}: command not found: {cmd[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"{what}: timed out after {timeout:.0f} s") from exc
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise HarnessError(f"{what}: {' '.join(cmd[:3])} exited {res.returncode}: {tail[0]}")
    return res.stdout


MARK_BEGIN = "VMLAB-BEGIN"


MARK_END = "VMLAB-END"


RECORD = "VML"
