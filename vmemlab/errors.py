"""Errors raised by the model.

Two kinds, kept apart on purpose:

* :class:`KernelError` -- the operation is one the kernel itself would refuse, with the errno it
  would return (``-EINVAL``, ``-ENOMEM``, ``-EEXIST``, ``-ENXIO``, ...).  The message names the
  kernel function that refuses and why.
* :class:`ParameterError` -- the request cannot even be expressed to the model (an unknown
  architecture, a size that is not a number).  The message names the parameter, the value and
  what is allowed.

Both derive from :class:`VmemlabError` (a :class:`ValueError`), so callers that want one
``except`` clause have it.  Every operation that raises leaves the model as it was.
"""

from __future__ import annotations

ERRNO = {"EPERM": 1, "ENOENT": 2, "EIO": 5, "ENXIO": 6, "E2BIG": 7, "ENOMEM": 12, "EFAULT": 14, "EBUSY": 16,
         "EEXIST": 17, "EINVAL": 22, "ERANGE": 34, "EOPNOTSUPP": 95, "ENOTSUPP": 524}


class VmemlabError(ValueError):
    """Base class of every error the model raises on purpose."""


class ParameterError(VmemlabError):
    """A parameter has a value the model does not accept.

    :param name: the parameter's name as the caller spelled it
    :param value: the value given
    :param allowed: a short description of what is allowed
    """

    def __init__(self, name: str, value: object, allowed: str) -> None:
        self.name, self.value, self.allowed = name, value, allowed
        super().__init__(f"{name}={value!r} is not allowed: {allowed}")


class KernelError(VmemlabError):
    """The kernel would refuse this: ``-errno`` from ``function``.

    :param errno: symbolic errno, e.g. ``"ENOMEM"``
    :param function: the kernel function that refuses (e.g. ``"section_activate"``)
    :param why: human explanation, naming the values involved
    """

    def __init__(self, errno: str, function: str, why: str) -> None:
        if errno not in ERRNO:
            raise AssertionError(f"unknown errno {errno}")
        self.errno, self.function, self.why = errno, function, why
        super().__init__(f"{function}: -{errno}: {why}")

    @property
    def code(self) -> int:
        """The negative integer the kernel function would return."""
        return -ERRNO[self.errno]
