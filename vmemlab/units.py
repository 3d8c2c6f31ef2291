"""Sizes with K/M/G/T/P suffixes, the way ndctl and the kernel command line write them."""

from __future__ import annotations

import math
import numbers
import re

import numpy as np

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
    if isinstance(value, numbers.Integral):  # int and numpy integers
        if value < 0:
            raise ParameterError(name, value, "a non-negative byte count")
        return int(value)
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


def as_int(name: str, value: object, lo: int | None = None, hi: int | None = None,
           allowed: str | None = None) -> int:
    """``value`` as a Python int if it is an integer (``int`` or a numpy integer, never a bool,
    float or string) within ``[lo, hi]``; otherwise :class:`ParameterError` naming ``name``.

    >>> as_int("order", 9, 0, 18)
    9
    """
    what = allowed or _range_text(lo, hi)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterError(name, value, what)
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ParameterError(name, value, what)
    return v


def as_int_array(name: str, value: object, lo: int = 0, hi: int | None = None):
    """``value`` (an int, a numpy integer or an array-like of them) as an int64 numpy array
    within ``[lo, hi]``; floats, bools, strings and out-of-range values are
    :class:`ParameterError` naming ``name``."""
    what = f"integers from {lo}" + (f" to {hi}" if hi is not None else "")
    if isinstance(value, (str, bytes, bool, dict)) or value is None:
        raise ParameterError(name, value, what)
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        raise ParameterError(name, value, what) from None
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        if arr.dtype == object and all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                       for v in arr.ravel().tolist()):
            vals = arr.ravel().tolist()
            if vals and ((min(vals) < lo) or (hi is not None and max(vals) > hi)):
                raise ParameterError(name, value, what)
            return np.asarray(vals, np.int64).reshape(arr.shape)
        raise ParameterError(name, value, what)
    if arr.size and (int(arr.min()) < lo or (hi is not None and int(arr.max()) > hi)):
        raise ParameterError(name, value, what)
    return arr.astype(np.int64)


def as_number(name: str, value: object) -> float:
    """``value`` as a finite float (ints, floats, numpy numbers; not bools, NaN or infinities)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterError(name, value, "a finite number")
    v = float(value)
    if not math.isfinite(v):
        raise ParameterError(name, value, "a finite number")
    return v


def _range_text(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f"an integer from {lo} to {hi}"
    if lo is not None:
        return f"an integer >= {lo}"
    if hi is not None:
        return f"an integer <= {hi}"
    return "an integer"
