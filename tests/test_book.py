"""The static book, opened in headless Chromium with the network off.

Builds the book (``book/build.py``: Sphinx + myst-nb over the stored notebook outputs, the
widget manager from npm) into a temporary directory, serves it on 127.0.0.1, opens its pages
in Debian's Chromium through Playwright, aborts every request that is not ``file:`` or
loopback and fails if any was made, and checks that every chapter page renders its text and figures,
that the explorers' saved widget state is drawn by the local widget manager (not blank), that
prev/next links and search work.  Expected values come from the notebooks themselves (how many
figures and widget views each one stores).  Skips, saying why, only when Chromium, Playwright,
npm or the book's Python toolchain (Sphinx, myst-nb, the theme) is absent.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update"]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))


def _outputs(nb_path: Path, mime: str) -> int:
    nb = json.loads(nb_path.read_text())
    return sum(mime in o.get("data", {}) for c in nb["cells"] if c["cell_type"] == "code"
               for o in c["outputs"])


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="Playwright (pip) is not installed")
    for mod in ("sphinx", "myst_nb", "sphinx_book_theme"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"the book toolchain is not installed ({mod}: pip install -e '.[book]')")
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed (needed to fetch the widget manager; apt-get install npm)")
    sys.path.insert(0, str(ROOT / "book"))
    try:
        import build as book_build
    finally:
        sys.path.remove(str(ROOT / "book"))
    out = tmp_path_factory.mktemp("book")
    book_build.build(out, in_process=True)
    return out


@pytest.fixture(scope="module")
def site(book):
    """The built book served on 127.0.0.1 (as a reader hosting it would; search fetches page
    summaries, which browsers refuse over ``file://``)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(_QuietHandler, directory=str(book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _quiet_handler():
    import http.server

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep pytest's output clean
            pass

    return Handler


_QuietHandler = _quiet_handler()


@pytest.fixture(scope="module")
def browser(site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    """A page whose every non-local request is aborted and recorded (the test fails on any)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=2)
    outside: list[str] = []

    def guard(route):
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:", "http://127.0.0.1", "http://localhost")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    ctx.route("**/*", guard)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not outside, f"the book asked the network for {outside}"
    assert not errors, f"JavaScript errors: {errors}"


def _not_blank(png: bytes) -> bool:
    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("L")
    lo, hi = im.getextrema()
    return hi - lo > 64 and sum(1 for n in im.histogram() if n) > 8


def test_every_chapter_renders_text_and_figures(site, page):
    for nb_path in CHAPTERS:
        page.goto(f"{site}/{nb_path.stem}.html")
        page.wait_for_load_state("load")
        title = page.locator("main h1").first.inner_text()
        assert title.strip() and "#" not in title, nb_path.name
        assert len(page.locator("main").inner_text()) > 1000, nb_path.name
        figures = _outputs(nb_path, "image/png")
        imgs = page.locator("main .cell_output img:not(.jupyter-widgets img)")
        assert imgs.count() >= figures, nb_path.name
        for i in range(imgs.count()):
            img = imgs.nth(i)
            img.scroll_into_view_if_needed()
            assert img.evaluate("e => e.complete && e.naturalWidth > 0"), (nb_path.name, i)
            # HiDPI: the PNG has at least as many pixels as it takes CSS pixels on the page
            # (notebooks built after the 2x change; older ones fall back to 1x)
            assert img.evaluate("e => e.naturalWidth >= e.clientWidth"), (nb_path.name, i)
            assert _not_blank(img.screenshot()), (nb_path.name, i)


def test_explorers_show_their_saved_state(site, page):
    with_widgets = [nb for nb in CHAPTERS
                    if _outputs(nb, "application/vnd.jupyter.widget-view+json")]
    assert with_widgets, "no chapter stores an explorer"
    for nb_path in with_widgets:
        page.goto(f"{site}/{nb_path.stem}.html")
        views = _outputs(nb_path, "application/vnd.jupyter.widget-view+json")
        page.wait_for_selector(".jupyter-widgets.widget-box", timeout=20_000)
        assert "Error displaying widget" not in page.locator("main").inner_text(), nb_path.name
        boxes = page.locator("main .jupyter-widgets.widget-vbox:not(.widget-vbox .widget-vbox)")
        assert boxes.count() >= views, nb_path.name
        # the explorer's figure is the ImageModel's saved PNG buffer, drawn by the manager
        img = page.locator("main .jupyter-widgets img").first
        img.scroll_into_view_if_needed()
        page.wait_for_function("e => e.complete && e.naturalWidth > 0", arg=img.element_handle())
        assert _not_blank(img.screenshot()), nb_path.name
        assert page.locator("main .widget-dropdown, main .widget-toggle-buttons").count() > 0


def test_navigation_and_search(site, page):
    page.goto(f"{site}/index.html")
    nav = page.locator("nav.bd-links a.reference.internal")
    hrefs = [nav.nth(i).get_attribute("href") or "" for i in range(nav.count())]
    missing = [nb.stem for nb in CHAPTERS if not any(nb.stem in h for h in hrefs)]
    assert not missing, f"the sidebar lists every chapter; missing: {missing}"
    assert nav.first.inner_text().startswith("00"), "the first entry is chapter 00"
    page.goto(f"{site}/{CHAPTERS[1].stem}.html")
    nxt = page.locator("a.right-next")
    assert CHAPTERS[2].stem in nxt.get_attribute("href")
    assert CHAPTERS[0].stem in page.locator("a.left-prev").get_attribute("href")
    page.goto(f"{site}/search.html?q=altmap")
    page.wait_for_selector("#search-results li", timeout=20_000)
    assert page.locator("#search-results li").count() >= 2


def test_kit_pages_render(site, page):
    for name in ("guide", "glossary", "cheatsheet", "timeline", "answers"):
        page.goto(f"{site}/kit/{name}.html")
        assert len(page.locator("main").inner_text()) > 500, name
