"""A real browser moves the page-order slider of chapter 04's explorer and sees it respond.

Starts Voilà on 127.0.0.1 with the chapter, drives Debian's headless Chromium through
Playwright (no browser download: ``executable_path=/usr/bin/chromium``), types a new page order
into the slider's read-out, and checks that the explorer's numbers and figure change.  A
screenshot is written to ``tests/artifacts/browser-04.png``.  Skips, saying why, only when no
Chromium, Playwright or Voilà is installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "notebooks" / "04-device-dax-compound-pagemaps.ipynb"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def voila_url(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="Playwright (pip) is not installed")
    pytest.importorskip("voila", reason="Voilà (pip) is not installed")
    port = _free_port()
    env = dict(os.environ, MPLBACKEND="Agg")
    log = tmp_path_factory.mktemp("voila") / "voila.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voila", str(CHAPTER), "--no-browser", f"--port={port}",
             "--Voila.ip=127.0.0.1", "--Voila.tornado_settings={'disable_check_xsrf': True}"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT / "notebooks")
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "static/", timeout=2)  # noqa: S310 - loopback
                break
            except urllib.error.HTTPError:
                break  # the server answers: it is up
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Voilà did not start: {log.read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def chapter_page(voila_url):
    """Chapter 04 loaded once in Chromium (Voilà runs the whole chapter for each page load, so
    both tests share one): the page, once the explorer's slider is there."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        page.goto(voila_url, timeout=120_000)
        page.locator(".widget-slider", has_text="page order").first.wait_for(timeout=120_000)
        yield page
        browser.close()


def test_explorer_labels_are_not_clipped(chapter_page):
    """Every control label, toggle button and dropdown of the explorer shows its whole text
    (before, 52 px toggle buttons cut "mem"/"other" to "m…"/"ot…"): no element's text is
    wider than its box."""
    page = chapter_page
    clipped = page.evaluate("""() => {
        const sel = '.widget-label, .widget-toggle-button, .widget-readout, ' +
                    '.widget-dropdown select, .widget-checkbox span';
        return [...document.querySelectorAll(sel)]
            .filter(el => el.offsetParent !== null && el.innerText.trim())
            .filter(el => el.scrollWidth > el.clientWidth + 1)
            .map(el => `${el.className}: "${el.innerText.trim()}" needs ` +
                       `${el.scrollWidth}px, has ${el.clientWidth}px`);
    }""")
    n = page.evaluate("() => document.querySelectorAll('.widget-toggle-button').length")
    assert n >= 5  # the dax-align, map and view buttons are there to check
    assert clipped == [], clipped


def test_page_order_slider_changes_numbers_and_figure(chapter_page):
    page = chapter_page
    ARTIFACTS.mkdir(exist_ok=True)
    slider = page.locator(".widget-slider", has_text="page order").first
    box = slider.locator("xpath=ancestor::div[contains(@class,'widget-vbox')][1]")
    summary = box.locator(".widget-html").last
    image = box.locator(".widget-image img, img.widget-image").first
    image.wait_for(timeout=60_000)
    before_text = summary.inner_text()
    before_src = image.get_attribute("src")
    assert "saved vmemmap pages" in before_text

    readout = slider.locator(".widget-readout")
    readout.click()
    readout.fill("10")
    readout.press("Enter")
    page.wait_for_function(
        "([el, old]) => el.innerText !== old", arg=[summary.element_handle(), before_text],
        timeout=60_000)
    page.wait_for_function(
        "([el, old]) => el.getAttribute('src') !== old",
        arg=[image.element_handle(), before_src], timeout=60_000)
    after_text = summary.inner_text()
    page.screenshot(path=str(ARTIFACTS / "browser-04.png"), full_page=False)
    box.screenshot(path=str(ARTIFACTS / "explorer-04.png"))
    content = page.content()
    assert after_text != before_text
    assert "Error displaying widget" not in content
    # order 9 keeps 2 of 8 vmemmap pages; order 10 (4 MiB pages, 16 vmemmap pages) 2 of 16
    assert "6 of 8" in before_text and "14 of 16" in after_text
