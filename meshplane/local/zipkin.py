"""A small Zipkin collector for the local mesh, so `meshplane up` can show traces without a
Zipkin or Jaeger install.

`python -m meshplane.local.zipkin --address 127.0.0.1:9411` accepts what Envoy's Zipkin
tracer posts (`POST /api/v2/spans`, JSON v2, gzip too) and keeps the last `--max-spans`
spans in memory (older ones fall off). It answers the parts of Zipkin's v2 API a user or a
test needs: `GET /api/v2/traces` (a list of traces, each a list of spans; `serviceName`,
`spanName` and `limit` filter as in Zipkin), `GET /api/v2/trace/{traceId}`,
`GET /api/v2/services`, and `GET /` (a page listing recent traces: id, root span, services,
span count, duration).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import html
import json
import signal
import socket
from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import Any

from aiohttp import web

__all__ = ["SpanStore", "build_app", "main", "start_collector"]

DEFAULT_MAX_SPANS = 10_000
Span = dict[str, Any]


class SpanStore:
    """The last `max_spans` spans, grouped by trace id (newest trace last)."""

    def __init__(self, max_spans: int = DEFAULT_MAX_SPANS) -> None:
        self._spans: deque[Span] = deque()
        self._traces: OrderedDict[str, list[Span]] = OrderedDict()
        self.max_spans = max_spans
        self.received = 0

    def add(self, spans: list[Span]) -> int:
        """Keep the valid spans (those with a traceId and an id); returns how many."""
        kept = 0
        for span in spans:
            if not isinstance(span, dict) or not span.get("traceId") or not span.get("id"):
                continue
            span["traceId"] = str(span["traceId"]).lower().zfill(16)
            self._spans.append(span)
            trace = self._traces.setdefault(span["traceId"], [])
            trace.append(span)
            self._traces.move_to_end(span["traceId"])
            kept += 1
            if len(self._spans) > self.max_spans:
                self._forget(self._spans.popleft())
        self.received += kept
        return kept

    def _forget(self, span: Span) -> None:
        trace = self._traces.get(span["traceId"])
        if trace is None:
            return
        trace.remove(span)
        if not trace:
            del self._traces[span["traceId"]]

    def trace(self, trace_id: str) -> list[Span]:
        return list(self._traces.get(trace_id.lower().zfill(16), ()))

    def traces(
        self, service: str | None = None, span_name: str | None = None, limit: int = 10
    ) -> list[list[Span]]:
        """Newest traces first, those with a span of `service` / named `span_name` only."""
        found: list[list[Span]] = []
        for spans in reversed(self._traces.values()):
            if service and service.lower() not in services(spans):
                continue
            if span_name and not any(s.get("name") == span_name.lower() for s in spans):
                continue
            found.append(list(spans))
            if len(found) >= limit:
                break
        return found

    def service_names(self) -> list[str]:
        return sorted({name for spans in self._traces.values() for name in services(spans)})


def services(spans: list[Span]) -> list[str]:
    """The local service names of `spans`, sorted (Zipkin lower-cases them)."""
    names = {
        str(endpoint["serviceName"]).lower()
        for s in spans
        if isinstance(endpoint := s.get("localEndpoint"), Mapping) and endpoint.get("serviceName")
    }
    return sorted(names)


def trace_summary(spans: list[Span]) -> dict[str, Any]:
    """Trace id, root span name, services, span count and duration (microseconds)."""
    ids = {s["id"] for s in spans}
    root = next((s for s in spans if s.get("parentId") not in ids), spans[0])
    starts = [int(s.get("timestamp") or 0) for s in spans]
    ends = [int(s.get("timestamp") or 0) + int(s.get("duration") or 0) for s in spans]
    return {
        "traceId": spans[0]["traceId"],
        "root": root.get("name", ""),
        "services": services(spans),
        "spans": len(spans),
        "duration": max(ends) - min(starts),
    }


def _decode_body(raw: bytes) -> Any:
    # Gzip by its magic number: aiohttp may or may not have inflated it already.
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def build_app(store: SpanStore) -> web.Application:
    """The collector's HTTP API over `store`."""

    async def post_spans(request: web.Request) -> web.Response:
        try:
            body = _decode_body(await request.read())
        except (OSError, EOFError, ValueError) as exc:
            return web.Response(status=400, text=f"bad spans: {exc}\n")
        if not isinstance(body, list):
            return web.Response(status=400, text="want a JSON list of spans (Zipkin v2)\n")
        store.add(body)
        return web.Response(status=202)

    async def get_traces(request: web.Request) -> web.Response:
        query = request.query
        try:
            limit = max(1, int(query.get("limit", "10")))
        except ValueError:
            return web.Response(status=400, text="limit must be an integer\n")
        found = store.traces(query.get("serviceName"), query.get("spanName"), limit)
        return web.json_response(found)

    async def get_trace(request: web.Request) -> web.Response:
        spans = store.trace(request.match_info["trace_id"])
        if not spans:
            return web.Response(status=404, text="trace not found\n")
        return web.json_response(spans)

    async def get_services(request: web.Request) -> web.Response:
        return web.json_response(store.service_names())

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=_index_html(store), content_type="text/html")

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/api/v2/spans", post_spans)
    app.router.add_get("/api/v2/traces", get_traces)
    app.router.add_get("/api/v2/trace/{trace_id}", get_trace)
    app.router.add_get("/api/v2/services", get_services)
    app.router.add_get("/", index)
    return app


def _index_html(store: SpanStore, limit: int = 50) -> str:
    rows = []
    for spans in store.traces(limit=limit):
        t = trace_summary(spans)
        link = f"/api/v2/trace/{t['traceId']}"
        rows.append(
            f"<tr><td><a href='{link}'>{t['traceId']}</a></td><td>{html.escape(t['root'])}</td>"
            f"<td>{html.escape(', '.join(t['services']))}</td><td>{t['spans']}</td>"
            f"<td>{t['duration'] / 1000:.1f} ms</td></tr>"
        )
    head = "<tr><th>trace</th><th>root span</th><th>services</th><th>spans</th><th>duration</th>"
    return (
        "<!doctype html><title>meshplane traces</title><h1>Recent traces</h1>"
        f"<p>{store.received} spans received; newest first.</p>"
        f"<table border=1 cellpadding=4>{head}</tr>{''.join(rows)}</table>\n"
    )


async def start_collector(
    address: str, max_spans: int = DEFAULT_MAX_SPANS
) -> tuple[web.AppRunner, int, SpanStore]:
    """Serve a collector on ``HOST:PORT`` (port 0: any free one); returns the runner (call
    `cleanup()` to stop), the bound port and the store."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, int(port)), family=family)
    store = SpanStore(max_spans)
    runner = web.AppRunner(build_app(store), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner, int(sock.getsockname()[1]), store


async def _serve(address: str, max_spans: int) -> None:
    runner, port, _ = await start_collector(address, max_spans)
    print(f"zipkin collector on {address.rpartition(':')[0]}:{port}", flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    await stopped.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meshplane.local.zipkin", description=__doc__)
    parser.add_argument("--address", default="127.0.0.1:9411", help="HOST:PORT to listen on")
    parser.add_argument("--max-spans", type=int, default=DEFAULT_MAX_SPANS)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.address, args.max_spans))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
