"""Istio's Egress Gateways task (examples/istio-samples/egress-gateway) moving real requests:
client sidecar -> egress gateway -> "external" server, all real Envoy.

test_istio_samples.py only checks that Envoy accepts this sample, because edition.cnn.com
is not reachable here. This test loads the sample's own files and changes only what the
machine forces (see `rewrite_sample`), so a request really crosses the egress gateway.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from mesh_harness import BIN, ControlPlane, Envoy, NoneModeSidecar, free_port, wait_for

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

SAMPLE = Path(__file__).parents[2] / "examples" / "istio-samples" / "egress-gateway"
EXTERNAL_HOST = "edition.cnn.com"
GATEWAY_HOST = "istio-egressgateway.istio-system.svc.cluster.local"
# A loopback address of this session's own for the client's listener (as test_istio_samples).
CLIENT_IP = f"127.{os.getpid() % 200 + 20}.{os.getpid() // 200 % 250 + 1}.9"


def rewrite_sample(docs: list[dict[str, Any]], mesh_port: int, gw_port: int, ext_port: int) -> None:
    """Rewrite the sample in place where this machine forces it; nothing else changes.

    - ServiceEntry `cnn`: `resolution: DNS` -> `STATIC` with one endpoint
      ``127.0.0.1`` whose ``http-port`` is `ext_port` (the local "external" server): there is
      no internet and no DNS name for a local server, and a ServiceEntry's endpoints are how
      Istio pins an external host to addresses. The host name stays edition.cnn.com (clients
      send it as Host; nothing resolves it).
    - Port 80 of edition.cnn.com (the ServiceEntry's ``http-port``, the mesh match
      ``port: 80`` and the gateway route's destination port) -> `mesh_port`: a NONE-mode
      sidecar listens on the service port, and 80 needs root.
    - The Gateway server's port 80 and the gateway match ``port: 80`` -> `gw_port`: the
      gateway listens on 0.0.0.0 with SO_REUSEPORT, so a fixed port would share connections
      with any other test session's gateway (and 80 needs root).

    The sidecar's route to the gateway keeps the Service port 80; the gateway's address is
    the WorkloadEntry the test adds (a pod in Istio), whose port map gives `gw_port`.
    """
    rewritten: set[str] = set()
    for doc in docs:
        kind, spec = doc["kind"], doc["spec"]
        rewritten.add(kind)
        if kind == "ServiceEntry":
            http_port = next(p for p in spec["ports"] if p["number"] == 80)
            http_port["number"] = mesh_port
            spec["resolution"] = "STATIC"
            spec["endpoints"] = [{"address": "127.0.0.1", "ports": {http_port["name"]: ext_port}}]
        elif kind == "Gateway":
            for server in spec["servers"]:
                server["port"]["number"] = gw_port
        elif kind == "VirtualService":
            for rule in spec["http"]:
                (match,) = rule["match"]
                (route,) = rule["route"]
                match["port"] = mesh_port if match["gateways"] == ["mesh"] else gw_port
                if route["destination"]["host"] == EXTERNAL_HOST:
                    route["destination"]["port"]["number"] = mesh_port
    # A sample that stops matching this shape fails here, not as a puzzling timeout.
    assert rewritten >= {"ServiceEntry", "Gateway", "VirtualService"}, rewritten


def sample_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for f in sorted(SAMPLE.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(f.read_text()) if d)
    return docs


def installed_files(mesh_port: int, gw_port: int) -> dict[str, str]:
    """What the task assumes is installed: the egress gateway's pod (a WorkloadEntry serving
    the Service's ``http2`` port on `gw_port`) and the `curl` client's NONE-mode Sidecar."""
    gateway_pod = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": {"name": "istio-egressgateway", "namespace": "istio-system"},
        "spec": {
            "address": "127.0.0.1",
            "ports": {"http2": gw_port},
            "labels": {"app": "istio-egressgateway", "istio": "egressgateway"},
        },
    }
    sidecar = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "curl"},
        "spec": {
            "workloadSelector": {"labels": {"app": "curl"}},
            "egress": [
                {
                    "port": {"number": mesh_port, "protocol": "HTTP", "name": "http"},
                    "bind": CLIENT_IP,
                    "captureMode": "NONE",
                    "hosts": ["*/*"],
                }
            ],
        },
    }
    return {"gateway-pod.yaml": yaml.safe_dump(gateway_pod), "curl.yaml": yaml.safe_dump(sidecar)}


@contextlib.contextmanager
def external_server(seen: list[dict[str, str]]) -> Iterator[int]:
    """The "external" HTTP service: records each request's headers, answers "cnn"."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            body = b"cnn"
            self.send_response(200)
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


def curl(port: int, path: str = "/politics") -> tuple[int, str]:
    """The task's ``curl -sSL -o /dev/null -D - http://edition.cnn.com/politics``, sent to
    the client sidecar's listener."""
    req = urllib.request.Request(
        f"http://{CLIENT_IP}:{port}{path}", headers={"Host": EXTERNAL_HOST}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


def counter(proxy: Envoy, cluster: str, stat: str) -> int:
    return int(proxy.stats().get(f"cluster.{cluster}.{stat}", "0"))


def test_request_crosses_the_egress_gateway(tmp_path: Path) -> None:
    mesh_port, gw_port = free_port(), free_port()
    config, logs = tmp_path / "config", tmp_path / "logs"
    config.mkdir()
    logs.mkdir()
    seen: list[dict[str, str]] = []
    with contextlib.ExitStack() as stack:
        ext_port = stack.enter_context(external_server(seen))
        docs = sample_docs()
        rewrite_sample(docs, mesh_port, gw_port, ext_port)
        (config / "egress-gateway.yaml").write_text(yaml.safe_dump_all(docs))
        for name, text in installed_files(mesh_port, gw_port).items():
            (config / name).write_text(text)
        analyzed = subprocess.run(
            [str(BIN / "meshplane"), "analyze", str(config)], capture_output=True, text=True
        )
        assert (analyzed.returncode, analyzed.stdout.strip()) == (0, "no problems found"), (
            analyzed.stdout + analyzed.stderr
        )

        cp = ControlPlane(config, logs)
        stack.callback(cp.stop)
        gateway = Envoy(
            cp,
            logs,
            kind="router",
            workload="istio-egressgateway",
            namespace="istio-system",
            labels="app=istio-egressgateway,istio=egressgateway",
        )
        stack.callback(gateway.stop)
        client = NoneModeSidecar(cp, logs, workload="curl", namespace="default", labels="app=curl")
        stack.callback(client.stop)

        wait_for("the request through the egress gateway", lambda: curl(mesh_port) == (200, "cnn"))
        assert gateway.rejected() == 0 and client.rejected() == 0

        # Through the gateway: the sidecar sent it to the gateway's `cnn` subset, the gateway
        # sent it to the external cluster, and the server saw the original Host with the
        # X-Forwarded-For only a gateway adds (sidecars keep what they receive: none here).
        to_gateway = f"outbound|80|cnn|{GATEWAY_HOST}"
        to_external = f"outbound|{mesh_port}||{EXTERNAL_HOST}"
        before = (counter(client, to_gateway, "upstream_rq_200"), len(seen))
        gw_before = counter(gateway, to_external, "upstream_rq_200")
        for _ in range(5):
            assert curl(mesh_port) == (200, "cnn")
        assert counter(client, to_gateway, "upstream_rq_200") - before[0] == 5
        wait_for(
            "the gateway's stats",
            lambda: counter(gateway, to_external, "upstream_rq_200") - gw_before == 5,
            timeout=10,
        )
        assert len(seen) - before[1] == 5
        last = seen[-1]
        assert last["host"] == EXTERNAL_HOST, last
        # (From a loopback peer Envoy appends its own host address, so only presence is fixed.)
        assert last.get("x-forwarded-for"), last

        # The gateway is the only way out: without it the request fails and nothing arrives.
        gateway.stop()
        arrived = len(seen)
        wait_for("requests to fail without the gateway", lambda: curl(mesh_port)[0] == 503)
        assert curl(mesh_port)[0] == 503
        assert len(seen) == arrived
