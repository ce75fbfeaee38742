"""Istio's own sample configuration (examples/istio-samples/) through `meshplane serve` and real
Envoy: every step of each task is written into the watched directory as a user would apply
it, Envoy must accept all of it (no update rejected, every proxy SYNCED), and real requests
show what the docs say each step does.

The clients are a NONE-mode sidecar (the tasks' `curl` pod) whose Sidecar resource binds its
egress listeners on a loopback address of its own, and a gateway for the ingress samples.
Backends are small local servers registered by WorkloadEntries with the samples' labels.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mesh_harness import (
    ControlPlane,
    Envoy,
    NoneModeSidecar,
    free_port,
    tcp_read,
    tcp_upstream,
    upstream,
    wait_for,
    write_atomically,
)

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

SAMPLES = Path(__file__).parents[2] / "examples" / "istio-samples"
# A loopback address of this test session's own, so fixed sample ports (9080, 8000) never
# collide with another session's listeners.
CLIENT_IP = f"127.{os.getpid() % 200 + 20}.{os.getpid() // 200 % 250 + 1}.7"


def workload_entries(apps: dict[str, int], port_name: str = "http") -> str:
    """One WorkloadEntry per "app-version" -> port."""
    docs = []
    for name, port in apps.items():
        app, version = name.rsplit("-", 1)
        docs.append(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
            f"metadata: {{name: {name}}}\nspec:\n  address: 127.0.0.1\n"
            f"  ports: {{{port_name}: {port}}}\n  labels: {{app: {app}, version: {version}}}\n"
        )
    return "---\n".join(docs)


def client_sidecar(*ports: int) -> str:
    egress = "".join(
        f"  - port: {{number: {p}, protocol: HTTP, name: http-{p}}}\n"
        f"    bind: {CLIENT_IP}\n    captureMode: NONE\n    hosts: ['./*']\n"
        for p in ports
    )
    return (
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: curl}\nspec:\n"
        f"  workloadSelector: {{labels: {{app: curl}}}}\n  egress:\n{egress}"
    )


class Mesh:
    """A config dir served by meshplane: base files stay, a step's files come and go."""

    def __init__(self, root: Path, base: list[Path], extra: dict[str, str]) -> None:
        self.dir = root / "config"
        self.dir.mkdir()
        self.logs = root / "logs"
        self.logs.mkdir()
        for src in base:
            for f in sorted(src.glob("*.yaml")):
                shutil.copy(f, self.dir / f"base-{src.name}-{f.name}")
        for name, text in extra.items():
            (self.dir / name).write_text(text)
        self.step_files: set[str] = set()
        self.proxies: list[Envoy] = []
        self.cp = ControlPlane(self.dir, self.logs)

    def apply(self, step: Path, rewrite: dict[str, str] | None = None) -> None:
        """Make `step`'s files the sample in force: new ones written, old ones removed."""
        new = {f"step-{f.name}": f.read_text() for f in sorted(step.glob("*.yaml"))}
        for name, text in new.items():
            for old, repl in (rewrite or {}).items():
                text = text.replace(old, repl)
            write_atomically(self.dir / name, text)
        for stale in self.step_files - set(new):
            (self.dir / stale).unlink()
        self.step_files = set(new)

    def accepted(self) -> None:
        """No error reported, no update rejected, every proxy SYNCED."""
        errors = self.cp.json("/debug/config_errors")
        assert not errors["errors"], errors  # type: ignore[index]
        for proxy in self.proxies:
            wait_for(f"{proxy.log.stem} SYNCED", lambda p=proxy: self.synced(p))  # type: ignore[misc]
            assert proxy.rejected() == 0, proxy.output()[-2000:]

    def synced(self, proxy: Envoy) -> bool:
        """CDS and LDS acknowledged, EDS and RDS too unless nothing was sent (a TCP-only
        gateway has no route configuration)."""
        rows = self.cp.json("/debug/syncz")
        assert isinstance(rows, list)
        for row in rows:
            if row["proxy"].startswith(proxy.id_prefix):
                status = {t: row["types"][t]["status"] for t in ("cds", "eds", "lds", "rds")}
                optional = {t: s for t, s in status.items() if t in ("eds", "rds")}
                return status["cds"] == status["lds"] == "SYNCED" and set(optional.values()) <= {
                    "SYNCED",
                    "NOT_SENT",
                }
        return False

    def stop(self) -> None:
        for proxy in self.proxies:
            proxy.stop()
        self.cp.stop()


JASON = {"end-user": "jason"}


def get(
    port: int,
    host: str,
    path: str = "/",
    timeout: float = 5.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """GET through the client sidecar's egress listener on `port`."""
    url = f"http://{CLIENT_IP}:{port}{path}"
    req = urllib.request.Request(url, headers={"Host": host, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


def until(
    what: str, port: int, host: str, expect: tuple[int, str], headers: dict[str, str] | None = None
) -> None:
    wait_for(what, lambda: get(port, host, headers=headers) == expect, timeout=20)


def curl_sidecar(mesh: Mesh) -> Envoy:
    """The tasks' client pod as a NONE-mode sidecar (its Sidecar is in the extra files)."""
    return NoneModeSidecar(
        mesh.cp, mesh.logs, workload="curl", namespace="default", labels="app=curl"
    )


def gateway(mesh: Mesh, workload: str, labels: str) -> Envoy:
    return Envoy(
        mesh.cp,
        mesh.logs,
        kind="router",
        workload=workload,
        namespace="istio-system",
        labels=labels,
    )


def all_of(port: int, host: str, expect: tuple[int, str], n: int = 20) -> bool:
    """True when `n` requests in a row all answer `expect` (a weighted step is gone)."""
    return all(get(port, host) == expect for _ in range(n))


@contextlib.contextmanager
def started(mesh: Mesh) -> Iterator[Mesh]:
    try:
        yield mesh
    finally:
        mesh.stop()


BOOKINFO_APPS = (
    "productpage-v1",
    "details-v1",
    "details-v2",
    "ratings-v1",
    "reviews-v1",
    "reviews-v2",
    "reviews-v3",
)


def test_bookinfo_tasks(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        ports = {a: stack.enter_context(upstream(a)) for a in BOOKINFO_APPS}
        extra = {"workloads.yaml": workload_entries(ports), "sidecar.yaml": client_sidecar(9080)}
        mesh = stack.enter_context(started(Mesh(tmp_path, [SAMPLES / "bookinfo"], extra)))
        mesh.apply(SAMPLES / "request-routing" / "1-all-v1")
        mesh.proxies.append(curl_sidecar(mesh))
        until("request routing: all v1", 9080, "reviews", (200, "reviews-v1"))
        for app in ("productpage", "details", "ratings"):
            assert get(9080, app) == (200, f"{app}-v1")
        mesh.accepted()

        mesh.apply(SAMPLES / "request-routing" / "2-reviews-test-v2")
        until("jason to reach v2", 9080, "reviews", (200, "reviews-v2"), JASON)
        assert get(9080, "reviews") == (200, "reviews-v1")
        mesh.accepted()

        mesh.apply(SAMPLES / "fault-injection" / "2-ratings-test-abort")
        until("jason's ratings to abort", 9080, "ratings", (500, "fault filter abort"), JASON)
        assert get(9080, "ratings") == (200, "ratings-v1")
        mesh.accepted()

        mesh.apply(SAMPLES / "fault-injection" / "1-ratings-test-delay")
        delayed = lambda: get(9080, "ratings", timeout=1.5, headers=JASON)[0] == 0  # noqa: E731
        wait_for("jason's ratings to be delayed (7s)", delayed)
        assert get(9080, "ratings") == (200, "ratings-v1")
        mesh.accepted()

        mesh.apply(SAMPLES / "traffic-shifting" / "1-reviews-50-v3")
        until("reviews to split", 9080, "reviews", (200, "reviews-v3"))
        split = Counter(get(9080, "reviews")[1] for _ in range(200))
        assert set(split) == {"reviews-v1", "reviews-v3"}, split
        assert 50 <= split["reviews-v3"] <= 150, split
        mesh.accepted()

        mesh.apply(SAMPLES / "traffic-shifting" / "2-reviews-v3")
        wait_for("all reviews on v3", lambda: all_of(9080, "reviews", (200, "reviews-v3")))

        mesh.apply(SAMPLES / "details-v2")
        until("details on v2", 9080, "details", (200, "details-v2"))

        mesh.apply(SAMPLES / "request-timeouts")
        until("reviews on v2", 9080, "reviews", (200, "reviews-v2"))
        started_at = time.monotonic()
        assert get(9080, "ratings") == (200, "ratings-v1")
        assert time.monotonic() - started_at >= 1.5, "ratings was not delayed by 2s"
        mesh.accepted()


@contextlib.contextmanager
def recording_upstream(name: str, seen: list[str], delay: float = 0.0) -> Iterator[int]:
    """An HTTP server recording each request's path in `seen`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            if delay and self.path.startswith("/delay"):
                time.sleep(delay)
            status = int(self.path.split("/")[2]) if self.path.startswith("/status/") else 200
            body = name.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_httpbin_tasks(tmp_path: Path) -> None:
    v1_seen: list[str] = []
    v2_seen: list[str] = []
    gw_port = free_port()
    with contextlib.ExitStack() as stack:
        ports = {
            "httpbin-v1": stack.enter_context(recording_upstream("httpbin-v1", v1_seen, 1.0)),
            "httpbin-v2": stack.enter_context(recording_upstream("httpbin-v2", v2_seen)),
        }
        extra = {"workloads.yaml": workload_entries(ports), "sidecar.yaml": client_sidecar(8000)}
        mesh = stack.enter_context(started(Mesh(tmp_path, [SAMPLES / "httpbin"], extra)))
        mesh.apply(SAMPLES / "mirroring" / "1-all-v1")
        mesh.proxies.append(curl_sidecar(mesh))
        until("httpbin v1", 8000, "httpbin", (200, "httpbin-v1"))
        before = len(v2_seen)
        assert {get(8000, "httpbin") for _ in range(10)} == {(200, "httpbin-v1")}
        assert len(v2_seen) == before
        mesh.accepted()

        mesh.apply(SAMPLES / "mirroring" / "2-mirror-v2")
        wait_for(
            "a request mirrored to v2",
            lambda: (
                get(8000, "httpbin", "/mirrored") == (200, "httpbin-v1") and "/mirrored" in v2_seen
            ),
        )
        mesh.accepted()

        # Circuit breaking: one connection, one pending request; slow requests overflow.
        mesh.apply(SAMPLES / "circuit-breaking")
        wait_for("the circuit breaker", lambda: breaker_trips(8000))
        stats = mesh.proxies[0].stats()
        overflow = [
            k
            for k in stats
            if k.endswith("httpbin.default.svc.cluster.local.upstream_rq_pending_overflow")
        ]
        assert overflow and int(stats[overflow[0]]) > 0, overflow
        mesh.accepted()

        # Ingress gateway: the sample's port 80 becomes a free port (no root needed).
        mesh.apply(SAMPLES / "ingress-httpbin", {"number: 80\n": f"number: {gw_port}\n"})
        mesh.proxies.append(gateway(mesh, "ingress", "istio=ingressgateway"))
        gw = f"http://127.0.0.1:{gw_port}"
        wait_for("the ingress route", lambda: via(gw, "/status/200") == 200)
        assert via(gw, "/status/418") == 418
        assert via(gw, "/headers") == 404  # only /status and /delay are exposed
        mesh.accepted()


def breaker_trips(port: int) -> bool:
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda _: get(port, "httpbin", "/delay/1")[0], range(6)))
    return 503 in codes and 200 in codes


def via(base: str, path: str) -> int:
    req = urllib.request.Request(base + path, headers={"Host": "httpbin.example.com"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_tcp_traffic_shifting(tmp_path: Path) -> None:
    gw_port = free_port()
    with contextlib.ExitStack() as stack:
        ports = {v: stack.enter_context(tcp_upstream(v)) for v in ("tcp-echo-v1", "tcp-echo-v2")}
        extra = {"workloads.yaml": workload_entries(ports, "tcp")}
        mesh = stack.enter_context(started(Mesh(tmp_path, [SAMPLES / "tcp-echo"], extra)))
        rewrite = {"31400": str(gw_port)}
        mesh.apply(SAMPLES / "tcp-traffic-shifting" / "1-all-v1", rewrite)
        mesh.proxies.append(gateway(mesh, "ingress", "istio=ingressgateway"))
        wait_for("tcp-echo v1", lambda: tcp_read(gw_port) == "tcp-echo-v1")
        mesh.accepted()

        mesh.apply(SAMPLES / "tcp-traffic-shifting" / "2-20-v2", rewrite)
        wait_for("tcp-echo v2", lambda: tcp_read(gw_port) == "tcp-echo-v2")
        split = Counter(tcp_read(gw_port) for _ in range(200))
        assert set(split) == {"tcp-echo-v1", "tcp-echo-v2"}, split
        assert 10 <= split["tcp-echo-v2"] <= 90, split
        mesh.accepted()


def test_egress_gateway_config_is_accepted(tmp_path: Path) -> None:
    """No internet here: edition.cnn.com cannot answer, so this checks that the sidecar and
    the egress gateway accept everything the task gives them, and where the mesh route goes."""
    gw_port = free_port()
    extra = {"sidecar.yaml": client_sidecar(80).replace("hosts: ['./*']", "hosts: ['*/*']")}
    extra["sidecar.yaml"] = extra["sidecar.yaml"].replace("number: 80,", f"number: {gw_port},")
    # The gateway's Service maps the Gateway's port 80 to its targetPort, where the gateway
    # listens (Istio): a port of this session's own instead of the sample's fixed 8080.
    target = free_port()
    with started(Mesh(tmp_path, [], extra)) as mesh:
        mesh.apply(SAMPLES / "egress-gateway", {"targetPort: 8080": f"targetPort: {target}"})
        mesh.proxies.append(gateway(mesh, "egress", "istio=egressgateway"))
        mesh.proxies.append(curl_sidecar(mesh))
        mesh.accepted()
        gateway_dump = mesh.cp.get("/debug/config_dump?proxyID=egress.istio-system")[1]
        assert "outbound|80||edition.cnn.com" in gateway_dump
        assert f'"0.0.0.0_{target}"' in gateway_dump and '"0.0.0.0_80"' not in gateway_dump
        sidecar = mesh.cp.get("/debug/config_dump?proxyID=curl.default")[1]
        assert "outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local" in sidecar
