"""Serve the debug API over the sample mesh of tests/debug, for the CLI to read."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

from meshplane.debug import build_app, start_debug_server


def load_debug_samples() -> ModuleType:
    """tests/debug/debug_samples.py (shared sample data), loaded by path."""
    if "debug_samples" in sys.modules:
        return sys.modules["debug_samples"]
    path = Path(__file__).parents[1] / "debug" / "debug_samples.py"
    spec = importlib.util.spec_from_file_location("debug_samples", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["debug_samples"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def debug_address() -> AsyncIterator[str]:
    """HOST:PORT of a running debug API serving the sample mesh."""
    samples = load_debug_samples()
    runner, port = await start_debug_server(build_app(samples.sample_sources()), "127.0.0.1:0")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()
