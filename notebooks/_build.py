"""Build the workbook: turn ``notebooks/src/*.py`` (percent format) into executed notebooks.

    python notebooks/_build.py            # every chapter
    python notebooks/_build.py 04 05      # chapters whose file name starts with these

Each source file is a chapter: ``# %% [markdown]`` cells hold prose (each line prefixed with
``# ``), ``# %%`` cells hold code.  The notebook is executed top to bottom in a fresh kernel
with timing metadata off, so the stored outputs are what ``pytest --nbval`` compares.  Edit the
source, rebuild, commit both.
"""

from __future__ import annotations

import json
import re
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


def _merge_streams(outputs: list) -> list:
    """Join consecutive stdout (or stderr) chunks: how a kernel splits a cell's printing into
    messages depends on timing, the text does not."""
    merged: list = []
    for o in outputs:
        if (o.get("output_type") == "stream" and merged
                and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == o.get("name")):
            merged[-1]["text"] = "".join(merged[-1]["text"]) + "".join(o["text"])
        else:
            merged.append(o)
    return merged


def _stable_widget_ids(text: str) -> str:
    """Widget model ids are random UUIDs; renumber them in a fixed order (the widgets each
    output shows, then the models they refer to, breadth first) so a rebuild of an unchanged
    chapter gives the same file.  nbval ignores widget views either way."""
    nb = json.loads(text)
    state = nb.get("metadata", {}).get("widgets", {}).get(
        "application/vnd.jupyter.widget-state+json", {}).get("state", {})
    queue = [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
             for c in nb["cells"] for o in c.get("outputs", [])
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    order: dict[str, str] = {}
    while queue:
        mid = queue.pop(0)
        if mid in order:
            continue
        order[mid] = f"{len(order) + 1:032x}"
        refs = re.findall(r"IPY_MODEL_([0-9a-f]{32})", json.dumps(state.get(mid, {}),
                                                                  sort_keys=True))
        queue.extend(refs)
    for mid in sorted(state, key=lambda k: json.dumps(state[k], sort_keys=True)):
        order.setdefault(mid, f"{len(order) + 1:032x}")
    renamed = re.sub(r"[0-9a-f]{32}", lambda m: order.get(m.group(0), m.group(0)), text)
    return nbformat.writes(nbformat.reads(renamed, as_version=4))


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
        if cell.cell_type == "code":
            cell.outputs = _merge_streams(cell.outputs)
    nb.metadata["language_info"] = {"name": "python"}
    nb.nbformat, nb.nbformat_minor = 4, 4
    out = HERE / (src.stem + ".ipynb")
    out.write_text(_stable_widget_ids(nbformat.writes(nb)) + "\n", encoding="utf-8")
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
