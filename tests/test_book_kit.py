"""book/_kit.py: the instructor's guide's timing, the answer key and the cheat sheet."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))


@pytest.fixture(scope="module")
def kit_pages(tmp_path_factory) -> Path:
    """The kit pages as the book build writes them (``book/build.py``'s ``kit_pages``: generated
    by ``_kit.write_all``, reused from ``build/book-kit/`` while nothing they depend on has
    changed), so the book test and this file generate them once between them."""
    spec = importlib.util.spec_from_file_location("book_build", ROOT / "book" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    dest = tmp_path_factory.mktemp("kit")
    mod.kit_pages(dest)
    return dest


def _kit():
    spec = importlib.util.spec_from_file_location("book_kit", ROOT / "book" / "_kit.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["book_kit"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_timing_counts_words_exercises_figures_explorers(tmp_path):
    kit = _kit()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# T\n\n" + "word " * 398),  # 400 words
                nbformat.v4.new_code_cell('ex = exercises.generate("sections", seed=1)'),
                nbformat.v4.new_code_cell('ex2 = exercises.generate("pfn-to-page", seed=2)')]
    nb.cells[1].outputs = [nbformat.v4.new_output("display_data", {"image/png": "", "text/plain":
                                                                    "<Figure>"})]
    path = tmp_path / "99-t.ipynb"
    path.write_text(json.dumps(nb))
    (t,) = kit.timings([path])
    # independent arithmetic: words = 400 prose + 2 x 4 whitespace-separated code tokens = 408;
    # full path 408/200 min + 2 exercises x 6 + 1 figure x 1; the half path does one exercise
    assert t.words == 408 and t.exercises == 2 and t.figures == 1
    assert abs(t.full - (408 / 200 + 12 + 1)) < 1e-9
    assert abs(t.half - (408 / 200 + 6 + 1)) < 1e-9


def test_half_day_path_fits_three_and_a_half_hours():
    # issue 13: chapters 00-07 on the half-day path must take <= 3.5 h, counted
    kit = _kit()
    assert kit.half_day_minutes(CHAPTERS) <= 210


def test_answer_key_lists_every_kind_and_chapter_exercise(kit_pages):
    kit = _kit()
    from vmemlab import exercises

    used = kit.chapter_exercises(CHAPTERS)
    text = (kit_pages / "answers.md").read_text()
    for kind in exercises.kinds():
        assert f"## `{kind}`" in text
    for kind, uses in used.items():
        for seed, ch in uses:
            ex = exercises.generate(kind, seed)
            assert f"**Chapter {ch}, seed {seed}.**" in text
            assert f"Answer: **{ex.answer}**" in text


def test_cheatsheet_numbers_come_from_the_model(kit_pages):
    text = (kit_pages / "cheatsheet.md").read_text()
    # the cover letter: 1 TiB at 2M costs 4 GiB of struct pages, 16 GiB without compound pages
    assert "| 6.6 | 2M | mem | 9 | 8 (2) | 4G |" in text
    assert "| 5.17 | 2M | mem | 9 | 8 (8) | 16G |" in text
