"""Sizes with K/M/G/T/P suffixes, the way ndctl and the kernel command line write them."""

from __future__ import annotations

import re

from .errors import ParameterError

_SUFFIX = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40, "P": 50}
_RE = re.compile(r"^\s*(\d+)\s*([KMGTP]?)(?:I?B)?\s*$", re.I)

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


def parse_size(value: int | str, name: str = "size") -> int:
    """Return ``value`` in bytes; accepts ints and strings such as ``"16G"``, ``"2M"``, ``"1TiB"``.

    >>> parse_size("2M")
    2097152
    """
    if isinstance(value, bool):
        raise ParameterError(name, value, "a byte count or a size such as '2M', '16G', '1T'")
    if isinstance(value, int):
        if value < 0:
            raise ParameterError(name, value, "a non-negative byte count")
        return value
    if isinstance(value, str):
        m = _RE.match(value)
        if m:
            return int(m.group(1)) << _SUFFIX[m.group(2).upper()]
    raise ParameterError(name, value, "a byte count or a size such as '2M', '16G', '1T'")


def format_size(nbytes: int) -> str:
    """Format bytes with the largest binary suffix not above them; exact values print whole.

    >>> format_size(2 << 20), format_size(40960), format_size(4328587264)
    ('2M', '40K', '4.03G')
    """
    if nbytes == 0:
        return "0"
    for suffix, shift in sorted(_SUFFIX.items(), key=lambda kv: -kv[1]):
        if shift and abs(nbytes) >= (1 << shift):
            if nbytes % (1 << shift) == 0:
                return f"{nbytes >> shift}{suffix}"
            return f"{nbytes / (1 << shift):.2f}{suffix}"
    return f"{nbytes}B"
