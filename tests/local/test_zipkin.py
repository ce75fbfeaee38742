"""The local Zipkin collector over real HTTP: spans posted as Envoy posts them (JSON v2,
also gzip), read back through Zipkin's v2 API shapes and the index page, and memory
bounded by `max_spans`."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from meshplane.local.zipkin import SpanStore, start_collector, trace_summary


def span(trace: str, span_id: str, service: str, parent: str | None = None, **kw: Any) -> dict:
    out: dict[str, Any] = {
        "traceId": trace,
        "id": span_id,
        "name": kw.get("name", "get"),
        "timestamp": kw.get("timestamp", 1_000_000),
        "duration": kw.get("duration", 500),
        "localEndpoint": {"serviceName": service},
    }
    if parent:
        out["parentId"] = parent
    return out


@pytest.fixture
async def collector() -> AsyncIterator[tuple[str, SpanStore]]:
    runner, port, store = await start_collector("127.0.0.1:0", max_spans=5)
    try:
        yield f"http://127.0.0.1:{port}", store
    finally:
        await runner.cleanup()


async def test_spans_in_traces_out(collector: tuple[str, SpanStore]) -> None:
    url, _ = collector
    trace = "a" * 32
    root = span(trace, "1" * 16, "ingress.istio-system", name="gateway", duration=900)
    child = span(trace, "2" * 16, "web.demo", "1" * 16, timestamp=1_000_100, duration=400)
    other = span("b" * 16, "3" * 16, "ratings.default")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/v2/spans", json=[root, child]) as resp:
            assert resp.status == 202
        body = gzip.compress(json.dumps([other]).encode())
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        async with http.post(f"{url}/api/v2/spans", data=body, headers=headers) as resp:
            assert resp.status == 202
        async with http.get(f"{url}/api/v2/traces") as resp:
            traces = await resp.json()
        assert [[s["id"] for s in t] for t in traces] == [["3" * 16], ["1" * 16, "2" * 16]]
        async with http.get(f"{url}/api/v2/traces?serviceName=web.demo") as resp:
            assert [t[0]["traceId"] for t in await resp.json()] == [trace]
        async with http.get(f"{url}/api/v2/trace/{trace}") as resp:
            assert [s["name"] for s in await resp.json()] == ["gateway", "get"]
        async with http.get(f"{url}/api/v2/trace/{'c' * 32}") as resp:
            assert resp.status == 404
        async with http.get(f"{url}/api/v2/services") as resp:
            assert await resp.json() == ["ingress.istio-system", "ratings.default", "web.demo"]
        async with http.get(f"{url}/") as resp:
            page = await resp.text()
        assert trace in page and "gateway" in page and "ingress.istio-system, web.demo" in page
        async with http.post(f"{url}/api/v2/spans", data=b"{not json") as resp:
            assert resp.status == 400


async def test_only_the_last_spans_are_kept(collector: tuple[str, SpanStore]) -> None:
    url, store = collector
    spans = [span(f"{i:032x}", f"{i:016x}", "web.demo") for i in range(1, 8)]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/v2/spans", json=spans) as resp:
            assert resp.status == 202
        async with http.get(f"{url}/api/v2/traces?limit=100") as resp:
            kept = [t[0]["id"] for t in await resp.json()]
    assert kept == [f"{i:016x}" for i in range(7, 2, -1)]  # newest first, the first two gone
    assert store.received == 7


def test_trace_summary_finds_the_root_and_the_span_of_the_whole_trace() -> None:
    trace = "d" * 32
    spans = [
        span(trace, "2" * 16, "web.demo", "1" * 16, timestamp=1_000_200, duration=100),
        span(trace, "1" * 16, "ingress.istio-system", name="root", duration=1_000),
    ]
    summary = trace_summary(spans)
    assert summary == {
        "traceId": trace,
        "root": "root",
        "services": ["ingress.istio-system", "web.demo"],
        "spans": 2,
        "duration": 1_000,
    }
