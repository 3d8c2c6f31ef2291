"""The static book, opened in headless Chromium with the network off.

Builds the book (``book/build.py``: Sphinx + myst-nb over the stored notebook outputs, the
widget manager from npm) into a temporary directory, serves it on 127.0.0.1, opens its pages
in Debian's Chromium through Playwright, refuses every request that is not ``file:`` or
loopback and fails if any was made, and checks that every chapter page renders its text and figures,
that the explorers' saved widget state is drawn by the local widget manager (not blank), that
prev/next links and search work.  A figure is "not blank" when its grey levels span more than
``MIN_RANGE`` and more than ``MIN_LEVELS`` of them occur (``_spread``): measured on a screenshot
for a chapter's first figure, on the decoded image drawn to a canvas for every figure.  Expected
values come from the notebooks themselves (how many figures and widget views each one stores).
Skips, saying why, only when Chromium, Playwright, npm or the book's Python toolchain (Sphinx,
myst-nb, the theme) is absent.
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


#: what the book may load: its own files (served on loopback) and in-page data
LOCAL = ("file:", "data:", "blob:", "http://127.0.0.1", "http://localhost")


@pytest.fixture()
def page(browser):
    """A page whose every non-local request is refused and recorded (the test fails on any).

    Chromium sends every request whose host is not 127.0.0.1 or localhost (a name or an IP
    literal alike) to a proxy on a local port that refuses connections, so it fails at once
    (ERR_PROXY_CONNECTION_FAILED) and nothing leaves the machine; every request is seen as it is
    sent, and recorded unless its URL starts with one of ``LOCAL``.  (A Playwright route that
    aborts them does the same, but routing turns the HTTP cache off: each page fetched the
    theme's scripts and styles again, about a third of its load time.)"""
    import socket

    refuser = socket.socket()  # bound, never listening: connecting to it is refused
    refuser.bind(("127.0.0.1", 0))
    proxy = {"server": f"http://127.0.0.1:{refuser.getsockname()[1]}",
             "bypass": "127.0.0.1,localhost"}
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=2,
                              proxy=proxy)
    outside: list[str] = []

    def guard(request) -> None:
        if not request.url.startswith(LOCAL):
            outside.append(request.url)

    ctx.on("request", guard)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    refuser.close()
    assert not outside, f"the book asked the network for {outside}"
    assert not errors, f"JavaScript errors: {errors}"


#: "not blank": the grey levels (PIL's "L", ITU-R 601 luma) span more than MIN_RANGE and more
#: than MIN_LEVELS distinct ones occur; a blank, one-colour or two-tone placeholder image fails
MIN_RANGE, MIN_LEVELS = 64, 8


def _spread(lo: int, hi: int, levels: int) -> bool:
    return hi - lo > MIN_RANGE and levels > MIN_LEVELS


def _not_blank(png: bytes) -> bool:
    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("L")
    lo, hi = im.getextrema()
    return _spread(lo, hi, sum(1 for n in im.histogram() if n))


#: a chapter's figures: the notebooks' stored PNGs (the explorers' images are checked below)
FIGURES = "main .cell_output img:not(.jupyter-widgets img)"

#: One round trip per chapter page: its title, the length of its text and, for every figure, what
#: the old per-figure screenshots checked.  Each image must have loaded (complete, naturalWidth > 0),
#: be laid out and shown (non-zero box, not hidden or transparent), and have at least as many pixels
#: as it takes CSS pixels (HiDPI); its decoded pixels are drawn on white (the page's background)
#: and read back with getImageData, giving the same luma (PIL's fixed-point ITU-R 601 formula) and
#: so the same lowest/highest grey level and number of distinct levels that _not_blank computes
#: from a screenshot.  The rows are read in bands, stopping once _spread is met: the extrema and
#: the levels seen only grow with more pixels, so the verdict is the full image's.  The figures are
#: same-origin files (or data: URIs), so the canvas is not tainted; a cross-origin or undecodable
#: image reports its error, which fails the test.
_FIGURE_STATS = """async ([selector, minRange, minLevels]) => {
  const figures = [];
  for (const img of document.querySelectorAll(selector)) {
    const f = {complete: img.complete, naturalWidth: img.naturalWidth, clientWidth: img.clientWidth,
               shown: img.clientWidth > 0 && img.clientHeight > 0
                      && img.checkVisibility({opacityProperty: true, visibilityProperty: true})};
    figures.push(f);
    try {
      await img.decode();
      const w = img.naturalWidth, h = img.naturalHeight;
      const ctx = new OffscreenCanvas(w, h).getContext("2d", {willReadFrequently: true});
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, w, h);
      ctx.drawImage(img, 0, 0);
      const seen = new Uint8Array(256);
      let lo = 255, hi = 0, levels = 0;
      for (let y = 0; y < h && !(hi - lo > minRange && levels > minLevels); y += 64) {
        const band = ctx.getImageData(0, y, w, Math.min(64, h - y)).data;
        for (let i = 0; i < band.length; i += 4) {
          const l = (band[i] * 19595 + band[i + 1] * 38470 + band[i + 2] * 7471 + 0x8000) >> 16;
          if (!seen[l]) {
            seen[l] = 1;
            levels++;
            lo = Math.min(lo, l);
            hi = Math.max(hi, l);
          }
        }
      }
      Object.assign(f, {lo, hi, levels});
    } catch (err) {
      f.error = String(err);
    }
  }
  const h1 = document.querySelector("main h1"), main = document.querySelector("main");
  return {title: h1 && h1.innerText, text: main ? main.innerText.length : 0, figures};
}"""


def test_every_chapter_renders_text_and_figures(site, page):
    """Every chapter has a title, its text and every figure it stores, each loaded at HiDPI and
    not blank (_FIGURE_STATS, from the decoded pixels); the first figure is also screenshotted,
    so its pixels are known to reach the screen."""
    for nb_path in CHAPTERS:
        page.goto(f"{site}/{nb_path.stem}.html", wait_until="load")
        got = page.evaluate(_FIGURE_STATS, [FIGURES, MIN_RANGE, MIN_LEVELS])
        title = got["title"]
        assert title and title.strip() and "#" not in title, nb_path.name
        assert got["text"] > 1000, nb_path.name
        figs = got["figures"]
        assert len(figs) >= _outputs(nb_path, "image/png"), nb_path.name
        for i, f in enumerate(figs):
            where = (nb_path.name, i, f)
            assert f["complete"] and f["naturalWidth"] > 0 and f["shown"], where
            # HiDPI: the PNG has at least as many pixels as it takes CSS pixels on the page
            # (notebooks built after the 2x change; older ones fall back to 1x)
            assert f["naturalWidth"] >= f["clientWidth"], where
            assert "error" not in f and _spread(f["lo"], f["hi"], f["levels"]), where
        if figs:  # the screen, not just the decoder: one figure a page (it scrolls into view)
            assert _not_blank(page.locator(FIGURES).first.screenshot()), (nb_path.name, 0)


#: the explorers' text, top-level boxes and controls, in one round trip
_EXPLORER_DOM = """() => {
  const main = document.querySelector("main");
  return {text: main.innerText,
          boxes: main.querySelectorAll(".jupyter-widgets.widget-vbox:not(.widget-vbox .widget-vbox)").length,
          controls: main.querySelectorAll(".widget-dropdown, .widget-toggle-buttons").length};
}"""


def test_explorers_show_their_saved_state(site, page):
    with_widgets = [nb for nb in CHAPTERS
                    if _outputs(nb, "application/vnd.jupyter.widget-view+json")]
    assert with_widgets, "no chapter stores an explorer"
    for nb_path in with_widgets:
        page.goto(f"{site}/{nb_path.stem}.html")
        views = _outputs(nb_path, "application/vnd.jupyter.widget-view+json")
        page.wait_for_selector(".jupyter-widgets.widget-box", timeout=20_000)
        # the explorer's figure is the ImageModel's saved PNG buffer, drawn by the manager
        page.wait_for_function("() => { const e = document.querySelector('main .jupyter-widgets img');"
                               " return e && e.complete && e.naturalWidth > 0; }")
        dom = page.evaluate(_EXPLORER_DOM)
        assert "Error displaying widget" not in dom["text"], nb_path.name
        assert dom["boxes"] >= views, nb_path.name
        assert dom["controls"] > 0, nb_path.name
        # screenshot() scrolls the image into view itself
        assert _not_blank(page.locator("main .jupyter-widgets img").first.screenshot()), nb_path.name


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
