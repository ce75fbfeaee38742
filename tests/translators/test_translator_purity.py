"""Translators stay pure: no module of meshplane.translators imports I/O, clocks,
randomness or concurrency (STYLE.md: builders are input in, protobuf out)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import meshplane.translators

BANNED = {
    "asyncio", "socket", "subprocess", "os", "io", "pathlib", "time", "datetime", "random",
    "secrets", "threading", "multiprocessing", "uuid", "grpc", "aiohttp", "watchfiles",
    "logging", "shutil", "tempfile",
}  # fmt: skip
PACKAGE = Path(meshplane.translators.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_no_io_or_clock_imports(path: Path) -> None:
    assert _imported_roots(path) & BANNED == set()


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_module_says_why_it_exists(path: Path) -> None:
    assert ast.get_docstring(ast.parse(path.read_text())), f"{path.name} has no module docstring"
