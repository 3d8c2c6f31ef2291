"""The instructor's kit pages that the model computes (run by ``book/build.py`` at every build).

* ``cheatsheet.md``: the key numbers, each from :func:`vmemlab.plan`, :mod:`vmemlab.arch` or
  :func:`vmemlab.hugetlb_vmemmap.hvo_savings`;
* ``timeline.md``: the kernel variants of :mod:`vmemlab.kernels` and what each one does;
* ``answers.md``: the answer key of every exercise kind of :mod:`vmemlab.exercises`, by seed
  (the seeds the chapters use, then 0-9);
* ``guide.md``: the instructor's guide, with its half-day and full-day paths timed from the
  chapters as stored (:func:`timings`).

The glossary (``book/kit/glossary.md``) is prose and is written by hand.

    python3 book/_kit.py OUTDIR      # write the four pages alone (book/build.py does this)
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vmemlab import exercises, kernels, plan  # noqa: E402
from vmemlab.arch import ARCHES, get_arch  # noqa: E402
from vmemlab.hugetlb_vmemmap import hvo_savings  # noqa: E402
from vmemlab.units import format_size  # noqa: E402

# -- timing model of the guide ----------------------------------------------------------------
#: reading speed over every word a reader meets: prose, code and printed output
WORDS_PER_MINUTE = 200
#: working one exercise: read it, compute, check, read the explanation
EXERCISE_MINUTES = 6
#: moving one explorer to answer its question
EXPLORER_MINUTES = 5
#: looking at one figure and its "what to notice" sentence
FIGURE_MINUTES = 1
#: the half-day path: these chapters; in each, the first exercise is done in the session and
#: the others are optional (homework)
HALF_DAY = [f"{n:02d}" for n in range(8)]
HALF_DAY_LIMIT_MINUTES = 210  # 3.5 h
#: a break the half-day includes, and the full day's breaks (lunch and two short ones)
HALF_DAY_BREAK = 15
FULL_DAY_BREAKS = 60 + 2 * 15

_GEN = re.compile(r"exercises\.generate\(\s*[\"']([\w-]+)[\"']\s*,\s*seed\s*=\s*(\d+)\s*\)")
_WORD = re.compile(r"\S+")


@dataclass
class Section:
    """One ``##`` section of a chapter and what it takes to go through it."""

    title: str
    words: int = 0
    exercises: int = 0
    figures: int = 0
    explorers: int = 0

    def minutes(self, exercises_done: int | None = None) -> float:
        ex = self.exercises if exercises_done is None else exercises_done
        return (self.words / WORDS_PER_MINUTE + EXERCISE_MINUTES * ex
                + EXPLORER_MINUTES * self.explorers + FIGURE_MINUTES * self.figures)


def _words(text: str) -> int:
    return len(_WORD.findall(text))


def sections(nb_path: Path) -> list[Section]:
    """The chapter's sections with the words, exercises, figures and explorers in each."""
    nb = json.loads(nb_path.read_text())
    out = [Section("(opening)")]
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            m = re.search(r"^## (.+)$", src, re.M)
            if m:
                out.append(Section(m.group(1).strip()))
            out[-1].words += _words(src)
            continue
        s = out[-1]
        s.words += _words(src)
        s.exercises += len(_GEN.findall(src))
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            s.words += _words("".join(o.get("text", "")))
            if "image/png" in data:
                s.figures += 1
            elif "application/vnd.jupyter.widget-view+json" in data:
                s.explorers += 1
            else:
                s.words += _words("".join(data.get("text/plain", "")))
    return [s for s in out if s.words or s.exercises]


def title(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return nb_path.stem


@dataclass
class ChapterTime:
    chapter: str
    stem: str
    title: str
    full: float
    half: float
    exercises: int
    explorers: int
    figures: int
    words: int


def timings(chapters: list[Path]) -> list[ChapterTime]:
    """Minutes per chapter on the full path (everything) and on the half-day path (the first
    exercise of each chapter only)."""
    out = []
    for nb in chapters:
        secs = sections(nb)
        full = sum(s.minutes() for s in secs)
        left, half = 1, 0.0
        for s in secs:
            done = min(s.exercises, left)
            left -= done
            half += s.minutes(done)
        out.append(ChapterTime(nb.name[:2], nb.stem, title(nb), full, half,
                               sum(s.exercises for s in secs), sum(s.explorers for s in secs),
                               sum(s.figures for s in secs), sum(s.words for s in secs)))
    return out


def half_day_minutes(chapters: list[Path]) -> float:
    """The half-day path's total: chapters 00-07 on their half path plus the break."""
    return sum(t.half for t in timings(chapters) if t.chapter in HALF_DAY) + HALF_DAY_BREAK


def _hm(minutes: float) -> str:
    m = round(minutes)
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"


def guide(chapters: list[Path]) -> str:
    ts = timings(chapters)
    half = [t for t in ts if t.chapter in HALF_DAY]
    half_total = half_day_minutes(chapters)
    full_total = sum(t.full for t in ts) + FULL_DAY_BREAKS
    lines = [
        "# Instructor's guide",
        "",
        "This guide plans a workshop on the workbook. Its times are **counted from the chapters "
        "as built**, not estimated: every word a reader meets (prose, code and printed output) "
        f"at {WORDS_PER_MINUTE} words per minute, plus {EXERCISE_MINUTES} minutes per exercise, "
        f"{EXPLORER_MINUTES} per explorer and {FIGURE_MINUTES} per figure. The counts are "
        "redone each time the book is built (`book/_kit.py`).",
        "",
        "## Before the session",
        "",
        "* Each participant runs the set-up command of the README (or opens the Binder link) "
        "and runs chapter 00 top to bottom; it checks the install and poses the first exercise.",
        "* Exercises are seeded: give each table a different seed (`exercises.generate(kind, "
        "seed=N)`) and keep the [answer key](answers.md) at hand. `exercises.show_solutions()` "
        "reveals worked answers in a notebook.",
        "* Keep the [cheat sheet](cheatsheet.md) and the [glossary](glossary.md) projected or "
        "printed; the [kernel timeline](timeline.md) answers 'which kernel did that?'.",
        "",
        f"## Half-day path (chapters {HALF_DAY[0]}-{HALF_DAY[-1]}, {_hm(half_total)})",
        "",
        "Go through every section of chapters "
        f"{HALF_DAY[0]}-{HALF_DAY[-1]} and do the **first exercise of each chapter** in the "
        "room; the other exercises are optional (homework). Move every explorer to answer the "
        f"question its chapter asks. A {HALF_DAY_BREAK}-minute break after chapter 03.",
        "",
        "| chapter | words | figures | explorers | exercises (done / in chapter) | minutes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in half:
        lines.append(f"| [{t.chapter}]({'../' + t.stem}.ipynb) {t.title.split('—')[-1].strip()} "
                     f"| {t.words} | {t.figures} | {t.explorers} | {min(1, t.exercises)} / "
                     f"{t.exercises} | {t.half:.0f} |")
    lines += [
        f"| break | | | | | {HALF_DAY_BREAK} |",
        f"| **total** | | | | | **{half_total:.0f}** ({_hm(half_total)}) |",
        "",
        f"The path fits the half-day limit of {HALF_DAY_LIMIT_MINUTES} minutes (3.5 h): "
        f"{half_total:.0f} minutes.",
        "",
        "What to stress, chapter by chapter:",
        "",
        "* **00-01**: the 64-byte `struct page` per 4 KiB frame and `pfn_to_page` as array "
        "indexing; the vmemmap figure of 01 is the picture everything else modifies.",
        "* **02**: a tail page's `compound_head` points at the head; on 5.17's plain vmemmap "
        "every tail of one compound page holds the same words, which is what 03 and 04 exploit.",
        "* **03**: HVO before and after in one figure: it remaps an already-populated memmap "
        "read-only and frees pages; the reused page takes no extra reference.",
        "* **04-05**: the create-namespace pipeline figure first, then the shared tail page and "
        "its reference count; why `--map=dev` (the altmap) gives up the saving; HVO against "
        "device-dax; why 1 GiB pages save less per TiB in mainline than in v3.",
        "* **06-07**: fewer distinct struct pages mean less initialisation and fewer cache lines "
        "touched by GUP; be honest about what each cost model can and cannot show.",
        "",
        f"## Full-day path (chapters 00-11, {_hm(full_total)})",
        "",
        "Every section and every exercise of every chapter, with a lunch break and two short "
        "breaks. Chapter 09 can also be given on its own to engineers who only need sizing.",
        "",
        "| chapter | words | figures | explorers | exercises | minutes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in ts:
        lines.append(f"| [{t.chapter}]({'../' + t.stem}.ipynb) {t.title.split('—')[-1].strip()} "
                     f"| {t.words} | {t.figures} | {t.explorers} | {t.exercises} "
                     f"| {t.full:.0f} |")
    lines += [f"| breaks | | | | | {FULL_DAY_BREAKS} |",
              f"| **total** | | | | | **{full_total:.0f}** ({_hm(full_total)}) |", ""]
    lines += ["## Sections, timed", "",
              "Where the minutes of each chapter go (full path), to cut or stretch on the day.", ""]
    for nb in chapters:
        lines.append(f"* **{nb.name[:2]}**: " + "; ".join(
            f"{s.title} {s.minutes():.0f}" for s in sections(nb)))
    return "\n".join(lines) + "\n"


# -- cheat sheet -------------------------------------------------------------------------------
def cheatsheet() -> str:
    x = get_arch("x86_64")
    ps, sp = x.PAGE_SIZE, x.struct_page_size
    lines = [
        "# Cheat sheet: the key numbers",
        "",
        "Every number on this page was computed by vmemlab when the book was built "
        "(`book/_kit.py`; x86_64 and the default kernel "
        f"{kernels.DEFAULT_KERNEL} unless a row says otherwise).",
        "",
        "## One struct page per page frame (x86_64)",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| `PAGE_SIZE` | {format_size(ps)} |",
        f"| `sizeof(struct page)` | {sp} B |",
        f"| struct pages per vmemmap page | {x.STRUCT_PAGES_PER_PAGE} |",
        f"| share of memory spent on struct pages | {100 * sp / ps:.3g}% "
        f"({format_size((1 << 40) * sp // ps)} per TiB) |",
        f"| section (`SECTION_SIZE_BITS` {x.section_size_bits}) | "
        f"{format_size(1 << x.section_size_bits)}, {x.PAGES_PER_SECTION} pages, memmap "
        f"{format_size(x.PAGES_PER_SECTION * sp)} |",
        f"| subsection (`SUBSECTION_SHIFT` {x.SUBSECTION_SHIFT}) | "
        f"{format_size(1 << x.SUBSECTION_SHIFT)}, {x.PAGES_PER_SUBSECTION} pages |",
        f"| one PTE table maps | {format_size(x.PTRS_PER_PTE * ps)} of vmemmap = "
        f"{format_size(x.PTRS_PER_PTE * ps // sp * ps)} of memory |",
        "",
        "## 1 TiB of device-dax (x86_64): RAM spent on its vmemmap",
        "",
        "| kernel | align | map | compound order | vmemmap pages per compound page (kept) "
        "| struct-page RAM | page tables | RAM total |",
        "|---|---|---|---:|---|---:|---:|---:|",
    ]
    for kern in ("5.17", "5.19", kernels.DEFAULT_KERNEL, "v3"):
        for align in ("4K", "2M", "1G"):
            for mp in ("mem", "dev"):
                if mp == "dev" and (align != "2M" or kern != kernels.DEFAULT_KERNEL):
                    continue
                p = plan("1T", align=align, map=mp, kernel=kern)
                kept = p.vmemmap_pages_per_compound - p.saved_vmemmap_pages_per_compound
                lines.append(
                    f"| {kern} | {align} | {mp} | {p.vmemmap_shift} | "
                    f"{p.vmemmap_pages_per_compound} ({kept}) | "
                    f"{format_size(p.ram_data_pages * p.page_size)} | "
                    f"{format_size(p.ram_pagetable_pages * p.page_size)} | "
                    f"{format_size(p.ram_bytes)} |")
    lines += [
        "",
        "`--map=dev` puts the struct pages on the device (the altmap): no deduplication, "
        "and only page tables in RAM.",
        "",
        "## Every architecture, 1 TiB at its largest device-dax alignment (kernel "
        f"{kernels.DEFAULT_KERNEL})",
        "",
        "| arch | `PAGE_SIZE` | section | largest align | RAM at align `PAGE_SIZE` "
        "| RAM at the largest align |",
        "|---|---|---|---|---:|---:|",
    ]
    for name in ARCHES:
        a = get_arch(name)
        big = max(a.dax_aligns)
        base = plan("1T", align=a.PAGE_SIZE, arch=name)
        p = plan("1T", align=big, arch=name)
        lines.append(f"| {name} | {format_size(a.PAGE_SIZE)} | "
                     f"{format_size(1 << a.section_size_bits)} | {format_size(big)} | "
                     f"{format_size(base.ram_bytes)} | {format_size(p.ram_bytes)} |")
    lines += ["", "## HugeTLB Vmemmap Optimization, one HugeTLB page (x86_64)", "",
              "| HugeTLB page | vmemmap pages | kept | freed | PTE tables the split adds "
              "| net pages saved |",
              "|---|---:|---:|---:|---:|---:|"]
    for size in ("2M", "1G"):
        h = hvo_savings(size=size)
        lines.append(f"| {size} | {h['vmemmap_pages']} | {h['kept']} | "
                     f"{h['data_pages_freed']} | {h['split_pte_tables']} | "
                     f"{h['net_pages_saved']} |")
    return "\n".join(lines) + "\n"


# -- kernel timeline ---------------------------------------------------------------------------
_FLAG_TEXT = {
    "compound_devmap": "compound devmap pages (`vmemmap_shift`)",
    "vmemmap_dedup": "tail vmemmap pages deduplicated",
    "can_optimize_rule": "`vmemmap_can_optimize` rule",
    "pmd_reuse": "PMD-level reuse (v3 patch 14)",
    "gup": "GUP refcounting",
    "hvo_reserve_pages": "HVO keeps (vmemmap pages per HugeTLB page)",
    "pincount": "pin count lives in",
    "layout": "struct page layout",
    "memmap_counter": "`nr_memmap_pages` in /proc/vmstat",
    "memmap_counter_dedup": "`nr_memmap_pages` counts the deduplicated memmap",
}


def timeline() -> str:
    ks = sorted([kernels.PRE_COMPOUND, *kernels.KERNELS.values()], key=lambda k: k.year)
    names = [f.name for f in fields(kernels.Kernel) if f.name in _FLAG_TEXT]
    lines = ["# Kernel timeline", "",
             "The kernel variants the model follows, in time order, generated from "
             "`vmemlab.kernels` (the `5.16` column is the GUP model's pre-compound baseline). "
             "`v3` is the posted series of July 2021; its PMD reuse and head-once GUP were "
             "never merged.", ""]
    for k in ks:
        lines.append(f"* **{k.name}** ({k.year}): {k.summary}")
    lines += ["", "| | " + " | ".join(k.name for k in ks) + " |",
              "|---|" + "---|" * len(ks)]

    def cell(v: object) -> str:
        if isinstance(v, bool):
            return "yes" if v else "no"
        return "-" if v is None else f"`{v}`" if isinstance(v, str) else str(v)

    for n in names:
        lines.append(f"| {_FLAG_TEXT[n]} | " + " | ".join(cell(getattr(k, n)) for k in ks) + " |")
    doc = (kernels.__doc__ or "").strip()
    lines += ["", "## The model's notes on each variant", "", "```text", doc, "```", ""]
    return "\n".join(lines)


# -- answer key --------------------------------------------------------------------------------
def chapter_exercises(chapters: list[Path]) -> dict[str, list[tuple[int, str]]]:
    """kind -> [(seed, chapter)] for every exercise a chapter generates."""
    out: dict[str, list[tuple[int, str]]] = {}
    for nb in chapters:
        text = "".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"])
        for kind, seed in _GEN.findall(text):
            out.setdefault(kind, []).append((int(seed), nb.name[:2]))
    return out


def answers(chapters: list[Path], seeds: range = range(10)) -> str:
    used = chapter_exercises(chapters)
    lines = ["# Answer key", "",
             "The model's answer to every exercise kind, by seed: first the exercises the "
             "chapters pose (with their question and worked answer), then seeds "
             f"{seeds.start}-{seeds.stop - 1} of every kind for tables given other seeds. "
             "Generated from `vmemlab.exercises` at build time.", ""]
    for kind in exercises.kinds():
        lines += [f"## `{kind}`", ""]
        for seed, ch in used.get(kind, []):
            ex = exercises.generate(kind, seed)
            lines += [f"**Chapter {ch}, seed {seed}.** {ex.question}", "",
                      f"Answer: **{ex.answer}**. {ex.explanation}", ""]
        row = [exercises.generate(kind, s).answer for s in seeds]
        lines += ["| seed | " + " | ".join(str(s) for s in seeds) + " |",
                  "|---|" + "---:|" * len(row),
                  "| answer | " + " | ".join(str(a) for a in row) + " |", ""]
    return "\n".join(lines)


def write_all(dest: Path, chapters: list[Path]) -> None:
    """Write the generated kit pages into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "guide.md").write_text(guide(chapters))
    (dest / "cheatsheet.md").write_text(cheatsheet())
    (dest / "timeline.md").write_text(timeline())
    (dest / "answers.md").write_text(answers(chapters))


if __name__ == "__main__":
    chs = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("kit"), chs)
