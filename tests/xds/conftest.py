"""Fixtures for the xDS protocol tests: a real ADS server on 127.0.0.1:0."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from xds_testkit import Server, running_server


@pytest.fixture
async def xds() -> AsyncIterator[Server]:
    async with running_server() as srv:
        yield srv


@pytest.fixture
async def xds_plain() -> AsyncIterator[Server]:
    """A server like the plaintext port: SDS tracked, never served."""
    async with running_server(serve_secrets=False) as srv:
        yield srv
