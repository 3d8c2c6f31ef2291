"""The files :func:`vmemlab.inspect.inspect` reads: where they are under a root (``/`` or a
captured tree), a reader that records what it could not read, the /proc parsers, the kernel
variant guessed from the release and kallsyms, and trees rebuilt from ``validation/`` results.
Re-exported by :mod:`vmemlab.inspect`.
"""

from __future__ import annotations

import os
import re
import statistics
from pathlib import Path
from typing import Any

from .errors import VmemlabError

PATHS = {
    "vmstat": "proc/vmstat",
    "meminfo": "proc/meminfo",
    "cpuinfo": "proc/cpuinfo",
    "osrelease": "proc/sys/kernel/osrelease",
    "arch": "proc/sys/kernel/arch",
    "kallsyms": "proc/kallsyms",
    "hvo": "proc/sys/vm/hugetlb_optimize_vmemmap",
    "hugepages": "sys/kernel/mm/hugepages",
    "dax": "sys/bus/dax/devices",
    "nd": "sys/bus/nd/devices",
}


class InspectError(VmemlabError):
    """A file under the inspected root exists but cannot be used (bad content; with
    ``strict``, unreadable)."""

    def __init__(self, path: str, why: str) -> None:
        self.path, self.why = path, why
        super().__init__(f"{path}: {why}")


class Tree:
    """Reads files under ``root`` and remembers what it could not read."""

    def __init__(self, root: str | os.PathLike = "/", strict: bool = False) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InspectError(str(root), "not a directory to inspect")
        self.strict = strict
        self.not_read: dict[str, str] = {}
        self.read_ok: list[str] = []

    def path(self, rel: str) -> Path:
        return self.root / rel

    def read(self, rel: str) -> str | None:
        """The file's text, or None (and the reason recorded) if it is absent or unreadable."""
        p = self.path(rel)
        try:
            text = p.read_text()
        except FileNotFoundError:
            self.not_read["/" + rel] = "absent"
            return None
        except (PermissionError, IsADirectoryError, OSError) as e:
            why = "permission denied (needs root)" if isinstance(e, PermissionError) else \
                (e.strerror or type(e).__name__)
            if self.strict:
                raise InspectError("/" + rel, f"cannot be read: {why}") from None
            self.not_read["/" + rel] = why
            return None
        self.read_ok.append("/" + rel)
        return text

    def read_int(self, rel: str, base: int = 10) -> int | None:
        text = self.read(rel)
        if text is None:
            return None
        s = text.strip()
        try:
            return int(s, 0 if s.startswith("0x") else base)
        except ValueError:
            raise InspectError("/" + rel, f"expected a number, read {s[:40]!r}") from None

    def listdir(self, rel: str) -> list[str] | None:
        p = self.path(rel)
        try:
            return sorted(os.listdir(p))
        except FileNotFoundError:
            self.not_read["/" + rel] = "absent"
            return None
        except OSError as e:
            if self.strict:
                raise InspectError("/" + rel, f"cannot be listed: {e.strerror}") from None
            self.not_read["/" + rel] = e.strerror or type(e).__name__
            return None


def parse_vmstat(text: str, where: str = "/proc/vmstat") -> dict[str, int]:
    out = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not re.fullmatch(r"-?\d+", parts[1]):
            raise InspectError(where, f"line {i} is not 'name value': {line[:60]!r}")
        out[parts[0]] = int(parts[1])
    return out


def parse_meminfo(text: str, where: str = "/proc/meminfo") -> dict[str, int]:
    """Values in kB (or plain counts, e.g. HugePages_Total)."""
    out = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = re.fullmatch(r"([\w()]+):\s+(\d+)(?:\s+kB)?\s*", line)
        if not m:
            raise InspectError(where, f"line {i} is not 'Name: value [kB]': {line[:60]!r}")
        out[m.group(1)] = int(m.group(2))
    return out


def cpu_flags(text: str) -> set[str]:
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(val.split())
    return set()


def _version(release: str | None) -> tuple[int, int, int] | None:
    if not release:
        return None
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    return None if not m else (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def kernel_variant(release: str | None, kallsyms: str | None) -> tuple[str, str]:
    """The :data:`vmemlab.kernels.KERNELS` variant for a kernel release, and why.

    By release: before 5.19 ``5.17``; 5.19-6.0 and 6.2-6.3 ``5.19``; 6.1.y ``6.1`` (Debian
    bookworm's 6.1, measured in 6.1.0-57 = 6.1.192); 6.4-6.10 ``6.6`` (no memmap counters: they
    are 6.11+); 6.11 and later ``6.12`` (``nr_memmap_pages`` counts the full memmap), or
    ``6.12.117`` when kallsyms has ``section_nr_vmemmap_pages`` (the 2026 fix, which makes it
    count the deduplicated memmap).  ``mm-2026`` (in no release) is never chosen: pass it."""
    v = _version(release)
    if v is None:
        return "6.6", "kernel release not read: the 6.6 rules (the model's default)"
    if v < (5, 17):
        return "5.17", (f"{release} is older than 5.17: no compound devmaps, so the full memmap "
                        "(as the 5.17 variant populates it)")
    if v < (5, 19):
        return "5.17", f"{release}: compound devmaps without vmemmap deduplication"
    if v[:2] == (6, 1):
        return "6.1", (f"{release}: the 6.1 variant (Debian bookworm's 6.1.192: 5.18 struct "
                       "page, backported vmemmap_can_optimize, HVO without head copy; no memmap "
                       "counters)")
    if v < (6, 4):
        return "5.19", f"{release}: deduplication with the 5.19-6.3 rule (vmemmap_nr > 1)"
    if v < (6, 11):
        return "6.6", (f"{release}: vmemmap_can_optimize rules of 6.6; no nr_memmap_pages / "
                       "nr_memmap_boot_pages (6.11+)")
    fixed = kallsyms is not None and re.search(r"\bsection_nr_vmemmap_pages\b", kallsyms)
    newer = " (newer than the 6.12 trees the model follows)" if v > (6, 12, 999) else ""
    if fixed:
        return "6.12.117", (f"{release}{newer}: 6.12 rules; section_nr_vmemmap_pages in "
                            "kallsyms, so nr_memmap_pages counts the deduplicated memmap "
                            "(2026 fix)")
    why = ("section_nr_vmemmap_pages not in kallsyms" if kallsyms is not None else
           "kallsyms not read (pass kernel='6.12.117' for a kernel with the 2026 fix)")
    return "6.12", (f"{release}{newer}: 6.12 rules; {why}, so nr_memmap_pages is taken to "
                    "count the full memmap")


def _write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def rebuild_tree(results: dict[str, Any], config: str, dest: str | os.PathLike,
                 phase: str) -> Path:
    """Write the /proc and /sys files :func:`inspect` reads, with the values a
    ``validation/harness.py`` run recorded for ``config`` in ``phase`` (``"before"`` or
    ``"after_create"``), under ``dest``; return ``dest``.

    What the harness recorded goes in unchanged: the guest's release and kallsyms symbol names,
    its pdpe1gb flag, the median read of ``nr_memmap_pages``, ``nr_memmap_boot_pages`` and
    ``DirectMap*`` in that phase (7 reads: the median is one of them), and after create the
    sysfs attributes of the namespace, its nd dax device and the dax device.  What it did not
    record (MemTotal, HugeTLB files, the HVO sysctl) is left out, so inspect names it."""
    if phase not in ("before", "after_create"):
        raise InspectError(phase, "phase must be 'before' or 'after_create'")
    try:
        c = next(x for x in results["configs"] if x["name"] == config)
    except StopIteration:
        raise InspectError(config, "no such configuration in the results") from None
    root = Path(dest)
    g = results["guest"]
    fields = results["reading_fields"]

    def med(field: str) -> int | None:
        vals = [r[fields.index(field)] for r in c["readings"][phase]]
        return None if None in vals else statistics.median_low(vals)

    _write(root, PATHS["osrelease"], g["uname_r"] + "\n")
    _write(root, PATHS["arch"], "x86_64\n")       # the harness boots qemu-system-x86_64
    flags = "fpu pse pae" + (" pdpe1gb" if str(g.get("pdpe1gb", "0")) not in ("0", "") else "")
    _write(root, PATHS["cpuinfo"], f"processor\t: 0\nflags\t\t: {flags} lm\n\n")
    _write(root, PATHS["kallsyms"],
           "".join(f"0000000000000000 T {s}\n" for s in g.get("kallsyms", "").split()))
    _write(root, PATHS["vmstat"], "".join(
        f"{f} {med(f)}\n" for f in ("nr_free_pages", "nr_memmap_pages", "nr_memmap_boot_pages")))
    mi = {k[:-3]: med(k) for k in ("MemFree_kb", "DirectMap4k_kb", "DirectMap2M_kb",
                                   "DirectMap1G_kb") if k in fields}
    _write(root, PATHS["meminfo"], "".join(f"{k}:{v:>16} kB\n" for k, v in mi.items()
                                           if v is not None))
    (root / PATHS["dax"]).mkdir(parents=True, exist_ok=True)
    (root / PATHS["nd"]).mkdir(parents=True, exist_ok=True)
    if phase == "after_create":
        sysfs = c["sysfs"]
        ns, nd = sysfs["namespace"], sysfs["nd_dax"]
        daxname = next(k.split(":")[1] for k in sysfs if k.startswith("dax:") and
                       k.count(":") == 1)
        for f in ("mode", "size", "resource", "holder"):
            _write(root, f"{PATHS['nd']}/{nd['namespace']}/{f}", ns[f] + "\n")
        for f in ("mode", "align", "size", "resource", "namespace"):
            _write(root, f"{PATHS['nd']}/{ns['holder']}/{f}", nd[f] + "\n")
        (root / PATHS["nd"] / ns["holder"] / daxname).mkdir(exist_ok=True)
        for f, v in sysfs[f"dax:{daxname}"].items():
            _write(root, f"{PATHS['dax']}/{daxname}/{f}", v + "\n")
    return root
