"""Build the workbook: turn ``notebooks/src/*.py`` (percent format) into executed notebooks.

    python notebooks/_build.py            # every chapter
    python notebooks/_build.py 04 05      # chapters whose file name starts with these

Each source file is a chapter: ``# %% [markdown]`` cells hold prose (each line prefixed with
``# ``), ``# %%`` cells hold code.  The notebook is executed top to bottom in a fresh kernel
with timing metadata off, so the stored outputs are what ``pytest --nbval`` compares.  Edit the
source, rebuild, commit both.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"


def parse(text: str) -> list[nbformat.NotebookNode]:
    cells: list[nbformat.NotebookNode] = []
    kind, lines = None, []

    def flush() -> None:
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#")
                             for line in body.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(body))
        elif body.strip():
            cells.append(nbformat.v4.new_code_cell(body))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        else:
            lines.append(line)
    flush()
    return cells


def build(src: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = parse(src.read_text())
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    client = NotebookClient(nb, timeout=600, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(HERE)}})
    t0 = time.perf_counter()
    client.execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.pop("id", None)
    nb.metadata["language_info"] = {"name": "python"}
    nb.nbformat, nb.nbformat_minor = 4, 4
    out = HERE / (src.stem + ".ipynb")
    nbformat.write(nb, out)
    print(f"{out.name}: {len(nb.cells)} cells, {time.perf_counter() - t0:.1f}s")
    return out


def main(argv: list[str]) -> None:
    sources = sorted(SRC.glob("*.py"))
    if argv:
        sources = [s for s in sources if any(s.name.startswith(a) for a in argv)]
    for src in sources:
        build(src)


if __name__ == "__main__":
    main(sys.argv[1:])
