"""The exercise machinery: :class:`Exercise`, :class:`CheckResult`, the registry the chapter
modules fill (:func:`exercise`), :func:`generate`, :func:`kinds`, :func:`show_solutions`."""


from __future__ import annotations

import math
import numbers
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ParameterError

_SHOW = os.environ.get("VMEMLAB_SOLUTIONS", "") == "1"


def _whole_number(answer: object) -> int | None:
    """``answer`` as an int if it is a whole number (an int, a numpy integer, a float with no
    fraction, or a string of digits); ``None`` otherwise (bools, 16894.9, inf, NaN, words)."""
    if isinstance(answer, bool):
        return None
    if isinstance(answer, numbers.Integral):
        return int(answer)
    if isinstance(answer, numbers.Real):
        v = float(answer)
        return int(v) if math.isfinite(v) and v.is_integer() else None
    if isinstance(answer, str):
        text = answer.strip().replace("_", "").replace(",", "")
        return int(text) if text.lstrip("+-").isdigit() else None
    return None


def a_or_an(number: object) -> str:
    """The English article before a number read aloud: "an" for 8, 11, 18, 80-89, 800..., 11000
    ("an eight", "an eleven thousand"), else "a"."""
    digits = re.match(r"\d*", str(number)).group()
    if digits.startswith("8"):
        return "an"
    return "an" if len(digits) % 3 == 2 and digits[:2] in ("11", "18") else "a"


def show_solutions(on: bool = True) -> None:
    """Reveal worked solutions in :meth:`Exercise.check` and :meth:`Exercise.solution`."""
    global _SHOW
    _SHOW = on


def solutions_shown() -> bool:
    """Whether :func:`show_solutions` (or ``VMEMLAB_SOLUTIONS=1``) has revealed solutions."""
    return _SHOW


@dataclass
class CheckResult:
    """The verdict on one answer; prints as a short, deterministic sentence."""

    correct: bool | None
    message: str

    def __repr__(self) -> str:
        return self.message

    _repr_pretty_ = None  # plain repr in IPython too


@dataclass
class Exercise:
    """One generated problem: question text, the model's answer, a worked explanation."""

    kind: str
    seed: int
    question: str
    answer: int
    explanation: str
    hint: str = ""
    params: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Exercise {self.kind} (seed {self.seed})\n{self.question}"

    def check(self, answer: int | None) -> CheckResult:
        """Compare ``answer`` with the model's; ``None`` means not answered yet."""
        if answer is None:
            msg = "Not answered yet: put your number in `answer` and run this cell again."
            if self.hint:
                msg += f"\nHint: {self.hint}"
            if _SHOW:
                msg += f"\nSolution: {self.answer}\n{self.explanation}"
            return CheckResult(None, msg)
        value = _whole_number(answer)
        if value is None:
            return CheckResult(False, f"{answer!r} is not a whole number; the answer is a count.")
        ok = value == self.answer
        if ok:
            return CheckResult(True, f"Right: {self.answer}.\n{self.explanation}")
        msg = f"Not quite: {answer} is not it."
        msg += f"\nHint: {self.hint}" if self.hint else ""
        if _SHOW:
            msg += f"\nSolution: {self.answer}\n{self.explanation}"
        return CheckResult(False, msg)

    def solution(self) -> str:
        """The worked answer (only with :func:`show_solutions` on)."""
        if not _SHOW:
            return "Solutions are hidden: call vmemlab.exercises.show_solutions() to reveal them."
        return f"{self.answer}\n{self.explanation}"


_GENERATORS: dict[str, Callable[[random.Random, int], Exercise]] = {}


def exercise(kind: str):
    def register(fn: Callable[[random.Random, int], Exercise]):
        _GENERATORS[kind] = fn
        return fn
    return register


def kinds() -> list[str]:
    """The problem kinds :func:`generate` knows."""
    return sorted(_GENERATORS)


def generate(kind: str, seed: int = 0) -> Exercise:
    """Generate problem ``kind`` from ``seed`` (deterministic)."""
    if not isinstance(kind, str) or kind not in _GENERATORS:
        raise ParameterError("kind", kind, "one of " + ", ".join(kinds()))
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ParameterError("seed", seed, "an integer")
    return _GENERATORS[kind](random.Random(f"{kind}:{seed}"), seed)


def _choice(r: random.Random, kind: str, seed: int, question: str, right: str,
            wrong: list[str], explanation: str, hint: str = "", params: dict | None = None
            ) -> Exercise:
    """A multiple-choice :class:`Exercise`: the options are shuffled by the seed and numbered
    from 1; the answer :meth:`Exercise.check` expects is the right option's number."""
    options = [right, *wrong]
    r.shuffle(options)
    answer = options.index(right) + 1
    text = question + "\n" + "\n".join(f"  {i}. {o}" for i, o in enumerate(options, 1))
    text += "\nAnswer with the number of the option."
    return Exercise(kind, seed, text, answer, f"option {answer}: {explanation}", hint=hint,
                    params={"options": options, **(params or {})})


