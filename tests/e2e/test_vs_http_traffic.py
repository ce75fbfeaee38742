"""VirtualService HTTP features through a real Envoy gateway driven by `meshplane serve`.

One control plane and one gateway serve every test of this module (a module fixture): each
test sends real requests on its own path and asserts on what the client and the upstreams
saw - weighted split, header routing, retries, timeout, fault delay and abort, mirroring,
rewrites, redirect, direct response, CORS preflight and header operations.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from mesh_harness import ControlPlane, Envoy, free_port, wait_for

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

MESH = """\
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: demo}}
spec:
  ports: [{{name: http, port: 8000}}]
  selector: {{app: echo}}
---
apiVersion: v1
kind: Service
metadata: {{name: shadow, namespace: demo}}
spec:
  ports: [{{name: http, port: 8000}}]
  selector: {{app: shadow}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: shadow, namespace: demo}}
spec:
  address: 127.0.0.1
  ports: {{http: {shadow}}}
  labels: {{app: shadow}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: echo-v1, namespace: demo}}
spec:
  address: 127.0.0.1
  ports: {{http: {v1}}}
  labels: {{app: echo, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: echo-v2, namespace: demo}}
spec:
  address: 127.0.0.1
  ports: {{http: {v2}}}
  labels: {{app: echo, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo, namespace: demo}}
spec:
  host: echo
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: demo}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gw}, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: features, namespace: demo}}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{{uri: {{prefix: /split}}}}]
    route:
    - {{destination: {{host: echo, subset: v1}}, weight: 80}}
    - {{destination: {{host: echo, subset: v2}}, weight: 20}}
  - match: [{{uri: {{prefix: /by-header}}, headers: {{x-version: {{exact: v2}}}}}}]
    route: [{{destination: {{host: echo, subset: v2}}}}]
  - match: [{{uri: {{prefix: /by-header}}}}]
    route: [{{destination: {{host: echo, subset: v1}}}}]
  - match: [{{uri: {{prefix: /flaky-no-retry}}}}]
    retries: {{attempts: 0}}
    route: [{{destination: {{host: echo, subset: v1}}}}]
  - match: [{{uri: {{prefix: /flaky}}}}]
    retries: {{attempts: 3, retryOn: 5xx, perTryTimeout: 2s}}
    route: [{{destination: {{host: echo, subset: v1}}}}]
  - match: [{{uri: {{prefix: /slow}}}}]
    timeout: 0.3s
    route: [{{destination: {{host: echo, subset: v1}}}}]
  - match: [{{uri: {{prefix: /delayed}}}}]
    fault: {{delay: {{fixedDelay: 0.5s, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: echo, subset: v1}}}}]
  - match: [{{uri: {{prefix: /aborted}}}}]
    fault: {{abort: {{httpStatus: 418, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: echo, subset: v1}}}}]
  - match: [{{uri: {{prefix: /mirrored}}}}]
    mirror: {{host: shadow}}
    route: [{{destination: {{host: echo, subset: v1}}}}]
  - match: [{{uri: {{prefix: /old/}}}}]
    rewrite: {{uri: /new/, authority: rewritten.example.com}}
    route: [{{destination: {{host: echo, subset: v1}}}}]
  - match: [{{uri: {{regex: "^/v[0-9]+/items/.*"}}}}]
    rewrite: {{uriRegexRewrite: {{match: "^/v([0-9]+)/items/(.*)$", rewrite: '/items/\\2?v=\\1'}}}}
    route: [{{destination: {{host: echo, subset: v1}}}}]
  - match: [{{uri: {{exact: /moved}}}}]
    redirect: {{uri: /here, authority: elsewhere.example.com, redirectCode: 302}}
  - match: [{{uri: {{exact: /teapot}}}}]
    directResponse: {{status: 418, body: {{string: short and stout}}}}
  - match: [{{uri: {{prefix: /cors}}}}]
    corsPolicy:
      allowOrigins: [{{exact: "https://app.example.com"}}]
      allowMethods: [GET, POST]
      allowHeaders: [x-token]
      maxAge: 1h
    route: [{{destination: {{host: echo, subset: v1}}}}]
  - match: [{{uri: {{prefix: /headers}}}}]
    headers:
      request:
        set: {{x-set: route}}
        add: {{x-added: route}}
        remove: [x-secret]
      response:
        set: {{x-served-by: meshplane}}
        remove: [x-internal]
    route:
    - destination: {{host: echo, subset: v1}}
      headers:
        request: {{set: {{x-destination: v1}}}}
        response: {{add: {{x-destination-reply: v1}}}}
"""


@dataclass
class Seen:
    """Requests an upstream received: (method, path, headers)."""

    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def paths(self) -> list[str]:
        with self.lock:
            return [p for _, p, _ in self.requests]

    def last(self, path: str) -> dict[str, str]:
        with self.lock:
            return next(h for _, p, h in reversed(self.requests) if p == path)


@contextlib.contextmanager
def recording_upstream(name: str) -> Iterator[tuple[int, Seen]]:
    """An upstream that records each request and answers with JSON naming itself, the path
    and Host it saw. `/slow*` answers after 1.5 s; `/flaky*` fails the first request of
    each path with 503; `/headers*` also sends an `x-internal` response header."""
    seen = Seen()
    failed: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            headers = {k.lower(): ",".join(self.headers.get_all(k) or []) for k in self.headers}
            with seen.lock:
                seen.requests.append((self.command, self.path, headers))
                first = self.path.startswith("/flaky") and self.path not in failed
                failed.add(self.path)
            if self.path.startswith("/slow"):
                time.sleep(1.5)
            status = 503 if first else 200
            body = json.dumps({"name": name, "path": self.path, "host": headers.get("host")})
            # A timed-out request's client (Envoy) is gone by the time /slow answers.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if self.path.startswith("/headers"):
                    self.send_header("x-internal", "secret")
                self.end_headers()
                self.wfile.write(body.encode())

        do_GET = do_POST = do_OPTIONS = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), seen
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> dict[str, str]:
        data: dict[str, str] = json.loads(self.body)
        return data


@dataclass
class Mesh:
    port: int
    v1: Seen
    v2: Seen
    shadow: Seen

    def request(
        self, path: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> Reply:
        """One request through the gateway; redirects are not followed."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, headers={"Host": "echo.example.com", **(headers or {})})
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
        finally:
            conn.close()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("vs-http")
    config, logdir = root / "config", root / "logs"
    config.mkdir()
    logdir.mkdir()
    gw_port = free_port()
    with (
        recording_upstream("v1") as (v1_port, v1),
        recording_upstream("v2") as (v2_port, v2),
        recording_upstream("shadow") as (shadow_port, shadow),
    ):
        text = MESH.format(v1=v1_port, v2=v2_port, shadow=shadow_port, gw=gw_port)
        (config / "mesh.yaml").write_text(text)
        cp = ControlPlane(config, logdir)
        envoy = None
        try:
            envoy = Envoy(
                cp,
                logdir,
                kind="router",
                workload="ingress",
                namespace="istio-system",
                labels="istio=ingressgateway",
            )
            result = Mesh(gw_port, v1, v2, shadow)

            def ready() -> bool:
                try:
                    return result.request("/by-header").status == 200
                except OSError:
                    return False

            wait_for("traffic through the gateway", ready)
            errors = cp.json("/debug/config_errors")["errors"]  # type: ignore[index]
            assert errors == [], errors
            yield result
            assert envoy.rejected() == 0, "Envoy rejected config meshplane sent"
        finally:
            if envoy is not None:
                envoy.stop()
            cp.stop()


def test_weighted_split_stays_within_bounds(mesh: Mesh) -> None:
    names = [mesh.request("/split").json()["name"] for _ in range(300)]
    share = names.count("v1") / len(names)
    assert set(names) == {"v1", "v2"}
    assert 0.6 <= share <= 0.95, f"v1 got {share:.0%} of 300 requests, configured 80%"


def test_header_match_routes_to_subset(mesh: Mesh) -> None:
    assert mesh.request("/by-header", headers={"x-version": "v2"}).json()["name"] == "v2"
    assert mesh.request("/by-header", headers={"x-version": "v3"}).json()["name"] == "v1"
    assert mesh.request("/by-header").json()["name"] == "v1"


def test_retries_recover_from_a_failing_first_attempt(mesh: Mesh) -> None:
    reply = mesh.request("/flaky/a")
    assert reply.status == 200, reply
    assert mesh.v1.paths().count("/flaky/a") == 2  # the 503, then the retry

    # Without retries the first attempt's 503 reaches the client.
    assert mesh.request("/flaky-no-retry/b").status == 503


def test_timeout_answers_504(mesh: Mesh) -> None:
    reply = mesh.request("/slow")
    assert reply.status == 504, reply
    assert "upstream request timeout" in reply.body


def test_fault_delay_and_abort(mesh: Mesh) -> None:
    start = time.monotonic()
    reply = mesh.request("/delayed")
    elapsed = time.monotonic() - start
    assert reply.status == 200
    # Envoy's timers tick in milliseconds: allow that much below the configured 0.5 s.
    assert elapsed >= 0.49, f"answered after {elapsed:.3f}s, the fault delays 0.5s"

    for _ in range(20):
        assert mesh.request("/aborted").status == 418  # percentage 100: every request
    assert "/aborted" not in mesh.v1.paths(), "an aborted request reached the upstream"


def test_mirrored_requests_reach_the_mirror(mesh: Mesh) -> None:
    reply = mesh.request("/mirrored/1")
    assert reply.status == 200 and reply.json()["name"] == "v1"
    wait_for("the mirrored request", lambda: "/mirrored/1" in mesh.shadow.paths(), 10)
    # Envoy marks a mirrored request's Host with a "-shadow" suffix.
    assert mesh.shadow.last("/mirrored/1")["host"].endswith("-shadow")


def test_rewrites_are_seen_by_the_upstream(mesh: Mesh) -> None:
    seen = mesh.request("/old/page?q=1").json()
    assert seen["path"] == "/new/page?q=1"
    assert seen["host"] == "rewritten.example.com"

    seen = mesh.request("/v2/items/book").json()
    assert seen["path"] == "/items/book?v=2"


def test_redirect_and_direct_response(mesh: Mesh) -> None:
    reply = mesh.request("/moved")
    assert reply.status == 302
    assert reply.headers["location"] == "http://elsewhere.example.com/here"

    reply = mesh.request("/teapot")
    assert (reply.status, reply.body) == (418, "short and stout")


def test_cors_preflight_is_answered_by_envoy(mesh: Mesh) -> None:
    preflight = {
        "Origin": "https://app.example.com",
        "Access-Control-Request-Method": "POST",
    }
    reply = mesh.request("/cors", method="OPTIONS", headers=preflight)
    assert reply.status == 200
    assert reply.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "POST" in reply.headers["access-control-allow-methods"]
    assert reply.headers["access-control-max-age"] == "3600"
    assert "/cors" not in mesh.v1.paths(), "the preflight reached the upstream"

    # An allowed origin on a real request gets the header; another origin does not.
    reply = mesh.request("/cors/x", headers={"Origin": "https://app.example.com"})
    assert reply.headers.get("access-control-allow-origin") == "https://app.example.com"
    reply = mesh.request("/cors/y", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in reply.headers


def test_header_operations(mesh: Mesh) -> None:
    reply = mesh.request(
        "/headers", headers={"x-set": "client", "x-added": "client", "x-secret": "s"}
    )
    assert reply.status == 200
    upstream = mesh.v1.last("/headers")
    assert upstream["x-set"] == "route"  # set overwrites
    assert upstream["x-added"] == "client,route"  # add appends
    assert "x-secret" not in upstream
    assert upstream["x-destination"] == "v1"
    assert reply.headers["x-served-by"] == "meshplane"
    assert reply.headers["x-destination-reply"] == "v1"
    assert "x-internal" not in reply.headers
