"""Render every chapter to static HTML for readers without a running kernel.

    python notebooks/_render.py [OUTDIR]        # default: _site/

Uses the outputs stored in the notebooks (figures as embedded PNG; each interactive explorer is
followed in its chapter by a static rendering, which is what a static reader sees).  Writes
``index.html`` with the chapter list.
"""

from __future__ import annotations

import html
import json
import sys
from pathlib import Path

from nbconvert import HTMLExporter

HERE = Path(__file__).resolve().parent


def chapters() -> list[Path]:
    return sorted(p for p in HERE.glob("[0-9][0-9]-*.ipynb"))


def title_of(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return nb_path.stem


def render(outdir: Path) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    pages = []
    for nb_path in chapters():
        body, _ = exporter.from_filename(str(nb_path))
        body = body.replace(".ipynb\"", ".html\"")  # chapter links point at the HTML pages
        page = outdir / (nb_path.stem + ".html")
        page.write_text(body, encoding="utf-8")
        pages.append(page)
    items = "\n".join(f'<li><a href="{p.name}">{html.escape(title_of(HERE / (p.stem + ".ipynb")))}'
                      f"</a></li>" for p in pages)
    (outdir / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>vmemlab</title>"
        "<h1>vmemlab: deduplicating the vmemmap for compound pages</h1>"
        f"<ol start='0'>{items}</ol>\n", encoding="utf-8")
    return pages


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "_site"
    for p in render(out):
        print(p)
    print(out / "index.html")
