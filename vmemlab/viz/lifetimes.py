"""Chapter 10's picture: a deduplicated memmap torn down one section at a time.

Draws the rows a notebook records while it removes the sections of a compound page's memmap
one by one (``sparse_remove_section``), read from the model after each step: the shared tail
page's refcount (``m.frames.refcount``), whether the head and tail vmemmap pages are still
allocated (``m.frames.kind``), and the RAM pages in use (``m.ram.used``).  No model logic here:
the caller runs the teardown and passes what it read.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from ._style import C_MUTED, C_OWN, C_REUSED, FONT, new_figure


def teardown_view(rows: Sequence[dict], title: str | None = None) -> Figure:
    """Two panels over the steps of a teardown: the shared tail page's refcount (left) and the
    RAM pages in use (right).  ``rows[0]`` is the state before the first removal; every row has
    ``removed`` (sections removed so far), ``tail_refcount`` (0 once freed), ``tail_alive``,
    ``head_alive`` and ``ram_pages``."""
    fig = new_figure(9.5, 3.4)
    left, right = fig.subplots(1, 2)
    xs = [r["removed"] for r in rows]
    ref = [r["tail_refcount"] if r["tail_alive"] else 0 for r in rows]
    left.bar(xs, ref, color=[C_REUSED if r["tail_alive"] else C_MUTED for r in rows],
             width=0.7)
    for r, y in zip(rows, ref):
        left.text(r["removed"], y, str(y) if r["tail_alive"] else "freed", ha="center",
                  va="bottom", fontsize=FONT - 2)
    left.set_xlabel("sections removed", fontsize=FONT)
    left.set_ylabel("shared tail page refcount", fontsize=FONT)
    left.set_title("the shared tail page: one reference per PTE", fontsize=FONT)
    ram = [r["ram_pages"] for r in rows]
    right.plot(xs, ram, color=C_OWN, marker="o", drawstyle="steps-post")
    for r in rows:
        events = []
        prev = rows[rows.index(r) - 1] if rows.index(r) else None
        if prev is not None and prev["head_alive"] and not r["head_alive"]:
            events.append("head page freed")
        if prev is not None and prev["tail_alive"] and not r["tail_alive"]:
            events.append("tail page freed")
        if events:
            right.annotate(", ".join(events), (r["removed"], r["ram_pages"]),
                           xytext=(0, 14), textcoords="offset points", ha="center",
                           fontsize=FONT - 2, arrowprops={"arrowstyle": "-", "lw": 0.6})
    right.set_xlabel("sections removed", fontsize=FONT)
    right.set_ylabel("RAM pages in use (vmemmap + tables)", fontsize=FONT)
    right.set_title("RAM given back as each section goes", fontsize=FONT)
    right.margins(y=0.25)
    for ax in (left, right):
        ax.set_xticks(xs)
        ax.tick_params(labelsize=FONT - 1)
        ax.spines[["top", "right"]].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=FONT + 1)
    return fig
