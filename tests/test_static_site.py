"""The static HTML rendering: one page per chapter, every stored figure visible, an index."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _render_module():
    spec = importlib.util.spec_from_file_location("nb_render", NOTEBOOKS / "_render.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_chapter_renders_with_its_figures(tmp_path):
    render = _render_module()
    pages = render.render(tmp_path)
    chapters = render.chapters()
    assert chapters, "no chapters found"
    assert [p.stem for p in pages] == [c.stem for c in chapters]
    index = (tmp_path / "index.html").read_text()
    for nb_path, page in zip(chapters, pages):
        nb = json.loads(nb_path.read_text())
        figures = sum("image/png" in o.get("data", {})
                      for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"])
        text = page.read_text()
        assert text.count("data:image/png;base64") >= figures, nb_path.name
        assert page.name in index
        assert ".ipynb\"" not in text, "chapter links should point at the HTML pages"
