"""verikv's code as a harness run found it at its start.

The tree may be edited while a run goes on: every node of the run, also one restarted after a
kill, runs a copy taken at the start, and the verdict names that copy by its hash.
"""

from __future__ import annotations

import hashlib
import shutil
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the source tree (jepsen/drivers/ is two levels down)
SUFFIXES = (".py", ".so")


def package_layout(root: Path) -> dict[str, str]:
    """Where each of verikv's packages lives in the source tree at root, as pyproject.toml's
    setuptools table says (the one place the layout is written): {"verikv/shim": "shim", ...}."""
    with open(root / "pyproject.toml", "rb") as f:
        setuptools = tomllib.load(f)["tool"]["setuptools"]
    dirs = setuptools.get("package-dir", {})
    layout = {}
    for package in setuptools["packages"]:
        parent = max((p for p in dirs if package == p or package.startswith(p + ".")), key=len, default=None)
        source = package.replace(".", "/") if parent is None else \
            "/".join([dirs[parent], *package[len(parent):].split(".")[1:]])
        layout[package.replace(".", "/")] = source
    return layout


def code_files(root: Path = ROOT) -> list[tuple[str, Path]]:
    """Every module and extension of every package: (its path in the installed layout, its
    path in the source tree), sorted."""
    out = []
    for target, source in package_layout(root).items():
        for f in (root / source).iterdir():
            if f.is_file() and f.suffix in SUFFIXES:
                out.append((f"{target}/{f.name}", f))
    return sorted(out)


def fingerprint(root: Path = ROOT) -> str:
    """A hash of the code as it is on disk now."""
    h = hashlib.sha256()
    for target, f in code_files(root):
        h.update(target.encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def freeze(dest: Path, root: Path = ROOT) -> Path:
    """Copy the code into dest, in the installed layout (dest/verikv/...): a PYTHONPATH entry."""
    for target, f in code_files(root):
        (dest / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest / target)
    return dest
