"""Sphinx configuration of the vmemlab book (built by ``python3 book/build.py``).

The chapters are the committed notebooks with their stored outputs: myst-nb renders them and
never executes them (``nb_execution_mode = "off"``).  The explorers' saved widget state is shown
by ``@jupyter-widgets/html-manager``, fetched from the npm registry at build time and copied
into ``_static/html-manager/``, so a reader needs no network.
"""

project = "vmemlab"
author = "the vmemlab developers"
copyright = "vmemlab developers"

extensions = ["myst_nb"]
nb_execution_mode = "off"  # stored outputs only: the notebooks are executed by notebooks/_build.py
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "deflist"]  # no dollarmath: no MathJax from a CDN
myst_heading_anchors = 3
exclude_patterns = ["_build", "**.ipynb_checkpoints", "build.py", "_kit.py"]
suppress_warnings = ["mystnb.unknown_mime_type"]

# The widget manager from the build's own _static/ (build.py puts it there), not a CDN:
# embed.js is the self-contained bundle (no RequireJS); it renders every saved
# application/vnd.jupyter.widget-state+json it finds on the page.
nb_ipywidgets_js = {"html-manager/embed.js": {}}  # relative to _static/

html_theme = "sphinx_book_theme"
html_title = "vmemlab: deduplicating the vmemmap"
html_static_path = ["_static"]
html_css_files = ["vmemlab.css"]
html_theme_options = {
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "navigation_with_keys": False,
}
html_last_updated_fmt = None
