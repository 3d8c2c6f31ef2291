"""The dependency lists in pyproject.toml, environment.yml and binder/environment.yml agree."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
#: pip names that conda-forge spells differently
CONDA_NAME = {"matplotlib": "matplotlib-base"}
#: only in pip's [test] extra: the real-browser test skips (with its reason) without them
PIP_ONLY = {"playwright", "voila"}


def _pip_reqs(extra: str | None) -> dict[str, str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"])
    if extra:
        reqs += meta["optional-dependencies"][extra]
    out = {}
    for r in reqs:
        name, spec = re.match(r"^([A-Za-z0-9_.-]+)(.*)$", r).groups()
        if name not in PIP_ONLY:
            out[CONDA_NAME.get(name, name)] = spec.replace(" ", "")
    return out


def _conda_reqs(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*-\s+([A-Za-z0-9_.-]+)(.*)$", line)
        if m and m.group(1) not in ("python", "pip", "conda-forge"):
            out[m.group(1)] = m.group(2).replace(" ", "")
    return out


def test_environment_yml_matches_test_extra():
    assert _conda_reqs(ROOT / "environment.yml") == _pip_reqs("test")


def test_binder_environment_matches_lab_extra():
    assert _conda_reqs(ROOT / "binder" / "environment.yml") == _pip_reqs("lab")


def test_binder_installs_the_package():
    post = ROOT / "binder" / "postBuild"
    assert post.stat().st_mode & 0o111, "postBuild must be executable"
    assert "pip install --no-deps -e ." in post.read_text()


def test_python_requirement_agrees():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["requires-python"] == ">=3.10"
    for path in (ROOT / "environment.yml", ROOT / "binder" / "environment.yml"):
        assert "python>=3.10" in path.read_text()
