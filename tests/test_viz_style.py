"""vmemlab.viz._style: the figures notebooks store are HiDPI PNGs with their CSS size."""

from __future__ import annotations

import struct

from vmemlab.viz._style import new_figure


def test_notebook_png_is_twice_the_css_size():
    # independent arithmetic: a 4 x 2 inch figure at 100 dpi is 400 x 200 CSS pixels, and
    # twice that in PNG pixels (width/height are bytes 16-24 of the PNG IHDR chunk)
    fig = new_figure(4, 2)
    fig.add_subplot().plot([0, 1], [0, 1])
    data, meta = fig._repr_mimebundle_()
    png = data["image/png"]
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (800, 400)
    assert meta == {"image/png": {"width": 400, "height": 200}}
    assert "text/plain" not in data  # IPython adds matplotlib's "<Figure size ...>" text
