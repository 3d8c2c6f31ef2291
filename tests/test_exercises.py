"""Seeded exercises: deterministic, self-consistent, and checked against independent arithmetic."""

import pytest

from vmemlab import exercises


@pytest.mark.parametrize("kind", exercises.kinds())
def test_same_seed_same_problem_and_answer_checks(kind):
    a, b = exercises.generate(kind, 3), exercises.generate(kind, 3)
    assert a.question == b.question and a.answer == b.answer
    assert a.check(a.answer).correct is True
    assert a.check(a.answer + 1).correct is False
    assert a.check(None).correct is None
    assert a.check("lots").correct is False


def test_solutions_are_hidden_until_switched_on():
    ex = exercises.generate("sections", 0)
    exercises.show_solutions(False)
    assert str(ex.answer) not in ex.check(None).message
    assert "hidden" in ex.solution()
    exercises.show_solutions(True)
    try:
        assert str(ex.answer) in ex.check(None).message
    finally:
        exercises.show_solutions(False)


def test_answers_match_independent_arithmetic():
    ex = exercises.generate("pfn-to-page", 7)
    pfn, arch = ex.params["pfn"], ex.params["arch"]
    shift = {"x86_64": 12, "arm64-64k": 16}[arch]
    assert ex.answer == (pfn * 64) >> shift
    for seed in range(4):
        ex = exercises.generate("vmemmap-pages", seed)
        gib, align = ex.params["gib"], ex.params["align"]
        # 4K: 64 B per 4 KiB page; 2M: 2 of 8 vmemmap pages per 2 MiB; 1G: 2 per GiB
        expect = {"4K": gib * 2**30 // 4096 * 64 // 4096, "2M": gib * 512 * 2,
                  "1G": gib * 2}[align]
        assert ex.answer == expect
        ex = exercises.generate("teardown-refcount", seed)
        k = ex.params["sections"]
        assert ex.answer == 4095 - 511 - (k - 1) * 512


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind"):
        exercises.generate("nope")


def test_more_answers_match_independent_arithmetic():
    for seed in range(4):
        ex = exercises.generate("gup-grabs", seed)
        pages = ex.params["gib"] * 2**30 // 4096
        # head-once: one grab per 2 MiB compound page; otherwise one per 4 KiB page
        assert ex.answer == (pages // 512 if ex.params["kernel"] == "v3" else pages)
        ex = exercises.generate("memmap-counter", seed)
        gib, align = ex.params["gib"], ex.params["align"]
        full = gib * 2**30 // 4096 * 64 // 4096
        dedup = 2 * gib * 2**30 // {"2M": 2**21, "1G": 2**30}[align]
        assert ex.answer == (full if ex.params["kernel"] == "6.6" else dedup)
        ex = exercises.generate("ram-per-tib", seed)
        page = {"x86_64": 4096, "arm64-4k": 4096, "arm64-64k": 65536}[ex.params["arch"]]
        # 2 kept vmemmap pages per compound page of `align` bytes
        assert ex.answer == 2**40 // ex.params["align"] * 2 * page >> 20
