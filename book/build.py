"""Build the static book: every chapter with its stored outputs, the instructor's kit, search.

    python3 book/build.py            # writes _site/ (open _site/index.html)
    python3 book/build.py OUTDIR

Steps: (1) gather ``book/`` and the committed chapter notebooks into a staging directory;
(2) generate the kit pages computed by the model (cheat sheet, kernel timeline, answer key,
instructor's guide with its timed paths: ``book/_kit.py``; cached in ``build/book-kit/`` until
the model, a chapter or the generator changes); (3) fetch the widget manager
``@jupyter-widgets/html-manager`` from the npm registry (``npm pack``, cached in
``build/book-npm/``) and copy its bundle into the book's ``_static/``; (4) run Sphinx with
myst-nb, which never executes a notebook (the outputs are those ``notebooks/_build.py``
stored).  Needs ``npm`` and the ``book`` extra (``pip install -e ".[book]"``).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent
NOTEBOOKS = ROOT / "notebooks"
#: the html-manager release that speaks ipywidgets 8's widget protocol (controls 2.0.0)
HTML_MANAGER = "@jupyter-widgets/html-manager@1.0.15"
NPM_CACHE = ROOT / "build" / "book-npm"


def chapters() -> list[Path]:
    """The chapter notebooks, in order."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))


def widget_manager(dest: Path) -> Path:
    """Fetch the html-manager's release tarball from npm (once) and copy its ``dist/`` bundle
    to ``dest``.

    ``npm pack`` downloads the one package, checked against the registry's integrity hash, in
    under a second; ``npm install`` would also resolve and unpack its 130 dependencies (about
    13 s), none of which the bundle needs: ``dist/embed.js`` (the one ``conf.py`` loads) is
    webpack output with every dependency inside.
    """
    dist = NPM_CACHE / "dist"
    if not (dist / "embed.js").exists():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("book: npm is needed to fetch the widget manager (apt-get install npm)")
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([npm, "pack", "--silent", "--pack-destination", tmp, HTML_MANAGER],
                           check=True, stdout=subprocess.DEVNULL)
            (tgz,) = Path(tmp).glob("*.tgz")
            staged = Path(tmp) / "dist"
            staged.mkdir()
            with tarfile.open(tgz) as tar:
                for m in tar.getmembers():
                    name = m.name.removeprefix("package/dist/")
                    if m.isfile() and name != m.name and "/" not in name:
                        (staged / name).write_bytes(tar.extractfile(m).read())
            shutil.rmtree(NPM_CACHE, ignore_errors=True)  # an older layout (npm install's tree)
            NPM_CACHE.mkdir(parents=True)
            staged.rename(dist)
    dest.mkdir(parents=True, exist_ok=True)
    for f in dist.iterdir():
        if f.is_file() and not f.name.endswith(".map"):
            shutil.copy2(f, dest / f.name)
    return dest


def stage(src: Path) -> None:
    """Lay out the Sphinx source tree in ``src``."""
    shutil.copytree(BOOK, src, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "build.py"))
    for nb in chapters():
        shutil.copy2(nb, src / nb.name)
    kit_pages(src / "kit")
    widget_manager(src / "_static" / "html-manager")


def _kit_key() -> str:
    """A hash of everything the generated kit pages depend on: the model's source, the
    chapters and the generator."""
    h = hashlib.sha256()
    for f in sorted([*(ROOT / "vmemlab").rglob("*.py"), *chapters(), BOOK / "_kit.py"]):
        h.update(f.relative_to(ROOT).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def kit_pages(dest: Path) -> None:
    """Write the generated kit pages into ``dest`` (``book/_kit.py``), reusing the pages of an
    earlier build from ``build/book-kit/`` when nothing they depend on has changed."""
    cache = ROOT / "build" / "book-kit" / _kit_key()
    if not (cache / "answers.md").exists():
        sys.path.insert(0, str(BOOK))
        sys.path.insert(0, str(ROOT))
        import _kit

        # a private staging directory, renamed into place: two builds at once (two test
        # workers, a test run and a manual build) never write into each other's pages
        (ROOT / "build").mkdir(exist_ok=True)
        fresh = Path(tempfile.mkdtemp(prefix="book-kit.", dir=ROOT / "build"))
        _kit.write_all(fresh, chapters())
        cache.parent.mkdir(parents=True, exist_ok=True)
        for old in cache.parent.iterdir():  # keep only the newest
            if old != cache:
                shutil.rmtree(old, ignore_errors=True)
        try:
            fresh.rename(cache)
        except OSError:  # another build put the same pages there first
            shutil.rmtree(fresh, ignore_errors=True)
    dest.mkdir(parents=True, exist_ok=True)
    for f in cache.iterdir():
        shutil.copy2(f, dest / f.name)


def build(out: Path, in_process: bool = False) -> Path:
    """Build the book into ``out``; returns the path of its index page.  ``in_process``
    runs Sphinx in this interpreter (the book test: its worker has imported most of what
    Sphinx and myst-nb import, about 4 s of a fresh interpreter's start) instead of a
    ``python -m sphinx`` child."""
    with tempfile.TemporaryDirectory(prefix="vmemlab-book-") as tmp:
        src = Path(tmp) / "src"
        stage(src)
        args = ["-b", "html", "-q", "-E", "-d", str(Path(tmp) / "doctrees"), str(src), str(out)]
        if in_process:
            from sphinx.cmd.build import build_main

            if build_main(args) != 0:
                raise RuntimeError(f"sphinx-build {' '.join(args)} failed")
        else:
            subprocess.run([sys.executable, "-m", "sphinx", *args], check=True)
    return out / "index.html"


if __name__ == "__main__":
    t0 = time.perf_counter()
    index = build(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "_site")
    print(f"{index} ({time.perf_counter() - t0:.0f} s)")
