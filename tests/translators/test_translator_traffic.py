"""Real traffic through a real Envoy running translated config: a captureMode NONE sidecar
whose egress listener routes by VirtualService (header match -> subset v2, else v1) to two
HTTP backends. EDS is inlined as static endpoints (envoy_validate's bootstrap), so this
checks the listeners, routes, domains and clusters behave, not just that they parse."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from meshplane.api.networking.sidecar import IstioEgressListener, SidecarPort, SidecarSpec
from meshplane.api.networking.virtual_service import (
    Destination,
    HTTPMatchRequest,
    HTTPRoute,
    HTTPRouteDestination,
    StringMatch,
)
from meshplane.translators import translate
from tests.fixtures import builders as b
from tests.golden.envoy_validate import bootstrap_for
from tests.golden.harness import canonical_json

pytestmark = pytest.mark.envoy

ENVOY = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
READY_TIMEOUT_S = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _backend(name: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = name.encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def backends() -> Iterator[dict[str, int]]:
    servers = {name: _backend(name) for name in ("v1", "v2")}
    try:
        yield {name: int(s.server_address[1]) for name, s in servers.items()}
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()


def _get(port: int, headers: dict[str, str]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, "envoy exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"envoy did not listen on {port} within {READY_TIMEOUT_S}s")


@pytest.mark.skipif(ENVOY is None, reason="envoy binary not found")
def test_virtual_service_routes_real_requests(backends: dict[str, int], tmp_path: Path) -> None:
    port = _free_port()
    svc = b.service("reviews", ports=[("http", port, "HTTP")])
    endpoints = [
        b.endpoint(svc, "127.0.0.1", backends[v], labels={"version": v}) for v in ("v1", "v2")
    ]
    rule = b.destination_rule(b.fqdn("reviews"), {"v1": {"version": "v1"}, "v2": {"version": "v2"}})
    jason = HTTPRoute(
        match=(HTTPMatchRequest(headers={"end-user": StringMatch(exact="jason")}),),
        route=(HTTPRouteDestination(Destination("reviews", "v2")),),
    )
    vs = b.virtual_service(["reviews"], [jason, b.weighted_route("reviews", {"v1": 100})])
    egress = IstioEgressListener(hosts=("./*",), port=SidecarPort(port, "HTTP", "http"))
    view = b.view(
        [svc], endpoints, [rule], [vs],
        sidecar=b.sidecar(SidecarSpec(egress=(egress,))), interception_mode="NONE",
    )  # fmt: skip
    config = tmp_path / "envoy.json"
    config.write_text(json.dumps(bootstrap_for(json.loads(canonical_json(translate(view))), "t")))
    proc = subprocess.Popen(
        [str(ENVOY), "-c", str(config), "--use-dynamic-base-id", "-l", "error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, proc)
        assert _get(port, {"host": "reviews"}) == (200, "v1")
        assert _get(port, {"host": f"reviews.default:{port}", "end-user": "jason"}) == (200, "v2")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
