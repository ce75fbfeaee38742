"""bench/ca_bench.py runs end to end on a tiny fleet (the numbers themselves are not judged)."""

from __future__ import annotations

import pytest

from bench.ca_bench import _report, fleet, issuance_rate

pytestmark = pytest.mark.slow


def test_issuance_rate_counts_certificates() -> None:
    assert issuance_rate("ecdsa", 5) > 0


async def test_a_small_fleet_gets_its_certificates() -> None:
    result = await fleet("ecdsa", 5, timeout=60)
    assert (result.served, result.refused) == (5, 0)
    assert 0 < result.p50_s <= result.max_s
    text = _report({"ecdsa": 1.0}, [result], 5)
    assert "| ecdsa | 5 | 5 | 0 |" in text
