"""Benchmark: slider-to-pixels latency of every explorer in JupyterLab, driven by a real browser.

    python3 benchmarks/bench_browser.py [CHAPTER ...] [--think 0.5] [--no-placement]

Not a test (it times things; tests never do).  It copies the chapters (default: every chapter
with an explorer) into a scratch directory, starts JupyterLab there on a free port on
127.0.0.1 (kernels import this checkout: ``PYTHONPATH`` is set to it), and drives it with
Playwright through Debian's Chromium (``executable_path=/usr/bin/chromium``, headless, a fresh
profile; no browser is ever downloaded).  For each chapter it runs all cells, then for every
explorer on the page moves each control through each of its values (dropdowns, toggle
buttons, the slider through its read-out, checkboxes) and measures, in the page, from the
input event (``performance.now()`` in a capturing listener) until the explorer's numbers show
the new state *and* every figure of it is decoded, plus two animation frames (pixels on
screen).  After running the chapter it waits ``--settle`` seconds (a reader reading the
text above the explorer), and between moves ``--think`` seconds (a reader looking at the
figure); ``--settle 0 --think 0`` measures back-to-back moves on a just-run chapter.  A
scratch notebook adds the explorer no chapter shows (PlacementExplorer).

It prints, per explorer, the number of moves, median, p95 and max (ms), the slowest control,
and the machine's load average (``os.getloadavg``, sampled every second while it ran).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"]

# page-side helpers: find explorers and their controls, time one move
JS_HELPERS = r"""
window.__vm = {
  boxes() {
    return [...document.querySelectorAll('.widget-vbox')].filter(
      b => b.querySelector(':scope > .widget-html h4') && b.querySelector('.vmemlab-status'));
  },
  controls(i) {
    const box = this.boxes()[i];
    const out = [];
    for (const el of box.querySelectorAll('.widget-dropdown, .widget-toggle-buttons, ' +
                                          '.widget-slider, .widget-checkbox')) {
      const lab = (el.querySelector('.widget-label') || {}).innerText || '';
      if (el.classList.contains('widget-dropdown')) {
        const sel = el.querySelector('select');
        out.push({kind: 'dropdown', label: lab, values: [...sel.options].map(o => o.text),
                  current: sel.options[sel.selectedIndex].text});
      } else if (el.classList.contains('widget-toggle-buttons')) {
        const bs = [...el.querySelectorAll('button')];
        out.push({kind: 'toggle', label: lab, values: bs.map(b => b.innerText.trim()),
                  current: (bs.find(b => b.classList.contains('mod-active')) || {}).innerText});
      } else if (el.classList.contains('widget-slider')) {
        const h = el.querySelector('.noUi-handle');
        const lo = +h.getAttribute('aria-valuemin'), hi = +h.getAttribute('aria-valuemax');
        const vals = []; for (let v = lo; v <= hi; v++) vals.push(String(v));
        out.push({kind: 'slider', label: lab, values: vals,
                  current: el.querySelector('.widget-readout').innerText.trim()});
      } else {
        const cb = el.querySelector('input[type=checkbox]');
        out.push({kind: 'checkbox', label: el.innerText.trim(), values: ['false', 'true'],
                  current: String(cb.checked)});
      }
    }
    return out;
  },
  arm(i, evname) {
    const box = this.boxes()[i];
    box.scrollIntoView({block: 'start'});
    const st = box.querySelector('.vmemlab-status');
    this.old = st.getAttribute('data-state');
    this.t0 = null;
    const self = this;
    const h = e => {
      if (self.t0 === null && (evname !== 'keydown' || e.key === 'Enter')) {
        self.t0 = performance.now();
      }
    };
    if (this.listener) this.box.removeEventListener(this.ev, this.listener, true);
    this.box = box; this.ev = evname; this.listener = h;
    box.addEventListener(evname, h, true);
  },
  async wait(i, timeoutMs) {
    const box = this.boxes()[i];
    const end = performance.now() + timeoutMs;
    const frame = () => new Promise(r => requestAnimationFrame(() => r()));
    for (;;) {
      const st = box.querySelector('.vmemlab-status');
      if (this.t0 !== null && st && st.getAttribute('data-state') !== this.old) break;
      if (performance.now() > end) return {error: 'timeout', t0: this.t0};
      await new Promise(r => setTimeout(r, 2));
    }
    const tStatus = performance.now();
    const imgs = [...box.querySelectorAll('img')].filter(im => im.src);
    await Promise.all(imgs.map(im => im.decode().catch(() => null)));
    const tDecoded = performance.now();
    await frame(); await frame();
    return {ms: performance.now() - this.t0, status_ms: tStatus - this.t0,
            decoded_ms: tDecoded - this.t0, t0_epoch: performance.timeOrigin + this.t0,
            state: box.querySelector('.vmemlab-status').getAttribute('data-state'),
            figures: imgs.length,
            message: !!box.querySelector('.vmemlab-status b') &&
                     box.querySelector('.vmemlab-status').innerText.includes('Not possible')};
  },
};
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chapters_with_explorers() -> list[str]:
    return sorted(p.stem for p in (NOTEBOOKS / "src").glob("[0-9][0-9]-*.py")
                  if "vmemlab.widgets" in p.read_text())


def scratch_notebook(path: Path, classes: list[str]) -> None:
    """A notebook showing the explorers no chapter shows."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"from vmemlab import widgets\nwidgets.{c}()")
                for c in classes]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, str(path))


class Load:
    """Samples ``os.getloadavg()`` every second in a thread."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float, float]] = [os.getloadavg()]
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append(os.getloadavg())

    def stop(self) -> str:
        self._stop.set()
        one = [s[0] for s in self.samples]
        return (f"load average (1 min) during the run: min {min(one):.2f}, median "
                f"{statistics.median(one):.2f}, max {max(one):.2f} on {os.cpu_count()} CPUs "
                f"({len(one)} samples)")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def start_lab(work: Path) -> tuple[subprocess.Popen, str, Path]:
    settings = work / ".settings"
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
    # render every cell (no virtual scrolling that would detach off-screen outputs)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}))
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
     ).write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg",
               JUPYTER_RUNTIME_DIR=str(work / ".runtime"),
               VMEMLAB_WIDGET_LOG=str(work / "updates.jsonl"))
    log = work / "lab.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=", "--ServerApp.password=",
         "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={work}",
         f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={work / '.ws'}",
         "--LabApp.news_url=None", "--allow-root", "--LabApp.expose_app_in_browser=True",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, cwd=work)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(url + "api/status", timeout=2)  # noqa: S310 - loopback
            return proc, url, log
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"JupyterLab did not start:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.5)


def run_notebook(page, url: str, name: str, timeout_s: float) -> None:
    # a workspace of its own: only this notebook open
    ws = "".join(c if c.isalnum() else "-" for c in name)
    page.goto(f"{url}lab/workspaces/{ws}/tree/{name}", timeout=120_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000, state="attached")
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                           timeout=120_000)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext && "
                           "window.jupyterapp.shell.currentWidget.sessionContext.isReady",
                           timeout=120_000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(
        """() => { const ps = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
                   return ps.length && ps.every(p => /\\[\\d+\\]/.test(p.innerText)); }""",
        timeout=timeout_s * 1000, polling=250)
    page.evaluate(JS_HELPERS)
    page.wait_for_function("() => window.__vm.boxes().length > 0", timeout=60_000)


def move(page, box: int, ctl: dict, value: str) -> None:
    """Perform one input on control ``ctl`` of explorer ``box`` (the page is armed)."""
    boxes = page.locator(".widget-vbox:has(> .widget-html h4):has(.vmemlab-status)")
    b = boxes.nth(box)
    kind = ctl["kind"]
    if kind == "dropdown":
        el = b.locator(".widget-dropdown", has=page.locator(".widget-label",
                                                             has_text=ctl["label"])).first
        el.locator("select").select_option(label=value)
    elif kind == "toggle":
        el = b.locator(".widget-toggle-buttons", has=page.locator(
            ".widget-label", has_text=ctl["label"])).first
        el.locator("button", has_text=value).first.click()
    elif kind == "slider":
        el = b.locator(".widget-slider", has_text=ctl["label"]).first
        ro = el.locator(".widget-readout")
        ro.click()
        ro.fill(value)
        ro.press("Enter")
    else:
        b.locator(".widget-checkbox input[type=checkbox]").first.click()


EVENT = {"dropdown": "change", "toggle": "click", "slider": "keydown", "checkbox": "click"}


def sweep(page, box: int, think: float, timeout_s: float, log) -> list[dict]:
    """Move every control of explorer ``box`` through its values, back to where it was."""
    out = []
    ctls = page.evaluate("i => window.__vm.controls(i)", box)
    for ci in range(len(ctls)):
        ctl = page.evaluate("i => window.__vm.controls(i)", box)[ci]
        start = ctl["current"]
        # "other" (dax align) only shows that the slider is off the presets: clicking it is
        # a no-op by design, so it is neither a move nor a place to return to
        values = [v for v in ctl["values"] if v != start and v != "other"]
        values += [start] if start != "other" else []
        for v in values:
            cur = page.evaluate("i => window.__vm.controls(i)", box)[ci]
            if v == cur["current"]:
                continue
            page.evaluate("([i, ev]) => window.__vm.arm(i, ev)", [box, EVENT[cur["kind"]]])
            move(page, box, cur, v)
            r = page.evaluate("([i, t]) => window.__vm.wait(i, t)", [box, timeout_s * 1000])
            r.update(control=cur["label"] or cur["kind"], value=v)
            out.append(r)
            log(r)
            if think:
                time.sleep(think)
    return out


def read_update_log(path: Path) -> dict[str, list[dict]]:
    """The explorers' update log (``VMEMLAB_WIDGET_LOG``, one JSON object per line), grouped by
    explorer title, in order."""
    logs: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        logs.setdefault(r["explorer"], []).append(r)
    return logs


def attach_kernel(path: Path, moves: list[dict]) -> None:
    """Give each move the kernel's update for it (the log's entries of that explorer, in
    order, whose state is the move's data-state): when the kernel finished (epoch ms, the
    browser's clock is the same machine's) and whether the cache served it."""
    if not path.exists():
        return
    logs = read_update_log(path)
    for m in moves:
        q = logs.get(m.get("explorer", ""), [])
        key = m.get("state")
        while q:
            r = q.pop(0)
            if key == ",".join(f"{k}={v}" for k, v in r["state"].items()):
                m["kernel_ms"] = 1e3 * r["seconds"]
                m["cached"] = r["cached"]
                if "t0_epoch" in m:
                    m["to_kernel_end_ms"] = 1e3 * r["end"] - m["t0_epoch"]
                break


def front_split(moves: list[dict]) -> None:
    """Medians over the moves, from the input event: kernel done with the update, numbers in
    the DOM, figures decoded, two frames later (the move's time)."""
    ok = [m for m in moves if "ms" in m]
    if not ok:
        return
    print()
    print(f"{'split (median ms from the input event)':<46}{'moves':>6}{'kernel done':>12}"
          f"{'status in DOM':>14}{'decoded':>9}{'frames':>8}{'  hits: median':>15}"
          f"{'misses: median':>15}")
    for title in dict.fromkeys(m["explorer"] for m in ok):
        ms = [m for m in ok if m["explorer"] == title]
        kd = [m["to_kernel_end_ms"] for m in ms if "to_kernel_end_ms" in m]
        hit = [m["ms"] for m in ms if m.get("cached")]
        miss = [m["ms"] for m in ms if m.get("cached") is False]

        def med(xs: list[float]) -> str:
            return f"{statistics.median(xs):.0f}" if xs else "-"
        print(f"{title[:45]:<46}{len(ms):>6}{med(kd):>12}{med([m['status_ms'] for m in ms]):>14}"
              f"{med([m['decoded_ms'] for m in ms]):>9}{med([m['ms'] for m in ms]):>8}"
              f"{med(hit) + f' ({len(hit)})':>15}{med(miss) + f' ({len(miss)})':>15}")


def kernel_split(path: Path) -> None:
    """The kernel's share of the moves, from the explorers' update log
    (``VMEMLAB_WIDGET_LOG``): per explorer, how many updates the cache served and the median
    / p95 of the time ``Explorer.update`` took (cache lookup or model + figure + SVG), and of
    model and SVG encoding on the misses.  The rest of a move's time is the front-end:
    the comm messages both ways, the DOM update, decoding the figures, two frames."""
    if not path.exists():
        return
    by = read_update_log(path)
    print()
    print(f"{'kernel side (Explorer.update)':<46}{'updates':>8}{'cached':>7}{'median':>9}"
          f"{'p95':>8}{'miss: model':>13}{'encode':>8}")
    for title, rs in by.items():
        sec = [1e3 * r["seconds"] for r in rs]
        miss = [r for r in rs if not r["cached"]]
        mm = statistics.median([1e3 * r["model"] for r in miss]) if miss else 0.0
        me = statistics.median([1e3 * r["encode"] for r in miss]) if miss else 0.0
        print(f"{title[:45]:<46}{len(rs):>8}{len(rs) - len(miss):>7}"
              f"{statistics.median(sec):>7.0f}ms{pct(sec, 0.95):>6.0f}ms{mm:>11.0f}ms"
              f"{me:>6.0f}ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("chapters", nargs="*", help="chapter numbers (default: all with explorers)")
    ap.add_argument("--think", type=float, default=0.5,
                    help="seconds between moves (a reader looking; default 0.5)")
    ap.add_argument("--settle", type=float, default=10.0,
                    help="seconds between running the chapter and the first move (a reader "
                         "reading the cell above the explorer; default 10)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per move at most")
    ap.add_argument("--no-placement", action="store_true",
                    help="skip the scratch notebook with PlacementExplorer")
    ap.add_argument("--verbose", "-v", action="store_true", help="print every move")
    ap.add_argument("--json", type=Path, help="write every move's result here")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    names = chapters_with_explorers()
    if args.chapters:
        names = [n for n in names if any(n.startswith(c) for c in args.chapters)]
    load = Load()
    work = Path(tempfile.mkdtemp(prefix="vmemlab-bench-browser-"))
    files = []
    for n in names:
        shutil.copy(NOTEBOOKS / f"{n}.ipynb", work / f"{n}.ipynb")
        files.append(f"{n}.ipynb")
    if not args.no_placement:
        scratch_notebook(work / "zz-placement.ipynb", ["PlacementExplorer"])
        files.append("zz-placement.ipynb")
    proc, url, lablog = start_lab(work)
    rows, allres = [], []
    t_start = time.monotonic()
    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                str(work / ".chromium-profile"), executable_path=CHROMIUM, headless=True,
                args=FLAGS, viewport={"width": 1400, "height": 1000})
            for f in files:
                page = ctx.new_page()
                t0 = time.monotonic()
                run_notebook(page, url, f, args.timeout * 5)
                nbox = page.evaluate("() => window.__vm.boxes().length")
                print(f"# {f}: ran in {time.monotonic() - t0:.1f} s, {nbox} explorer(s)",
                      flush=True)
                time.sleep(args.settle)
                for i in range(nbox):
                    title = page.evaluate(
                        "i => window.__vm.boxes()[i].querySelector('h4').innerText", i)

                    def log(r, f=f):
                        if args.verbose:
                            print(f"  {f} {r.get('control')}={r.get('value')}: "
                                  f"{r.get('ms', float('nan')):.0f} ms "
                                  f"{r.get('error', '')}", flush=True)

                    res = sweep(page, i, args.think, args.timeout, log)
                    for r in res:
                        r.update(notebook=f, explorer=title)
                    allres += res
                    rows.append((f, title, res))
                # close the kernel: the next notebook should not compete with it
                page.evaluate("() => fetch('/api/sessions').then(r => r.json()).then(ss => "
                              "Promise.all(ss.map(s => fetch('/api/sessions/' + s.id, "
                              "{method: 'DELETE'}))))")
                page.close(run_before_unload=False)
            ctx.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    loadline = load.stop()
    print()
    print(f"{'notebook':<40}{'explorer':<46}{'moves':>6}{'median':>9}{'p95':>8}{'max':>8}"
          f"{'fails':>6}  slowest control")
    every = []
    for f, title, res in rows:
        ms = [r["ms"] for r in res if "ms" in r]
        fails = sum("ms" not in r for r in res)
        every += ms
        if not ms:
            print(f"{f:<40}{title[:45]:<46}{len(res):>6}{'-':>9}{'-':>8}{'-':>8}{fails:>6}")
            continue
        by: dict[str, list[float]] = {}
        for r in res:
            if "ms" in r:
                by.setdefault(r["control"], []).append(r["ms"])
        worst = max(by, key=lambda k: statistics.median(by[k]))
        print(f"{f:<40}{title[:45]:<46}{len(ms):>6}{statistics.median(ms):>7.0f}ms"
              f"{pct(ms, 0.95):>6.0f}ms{max(ms):>6.0f}ms{fails:>6}  {worst} "
              f"(median {statistics.median(by[worst]):.0f} ms)")
    if every:
        print(f"{'all moves':<86}{len(every):>6}{statistics.median(every):>7.0f}ms"
              f"{pct(every, 0.95):>6.0f}ms{max(every):>6.0f}ms")
    kernel_split(work / "updates.jsonl")
    attach_kernel(work / "updates.jsonl", allres)
    front_split(allres)
    print(f"settle {args.settle:g} s, think time between moves {args.think:g} s; wall time "
          f"{time.monotonic() - t_start:.0f} s")
    print(loadline)
    if args.json:
        args.json.write_text(json.dumps(allres, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
