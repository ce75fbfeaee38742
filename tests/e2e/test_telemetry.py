"""Telemetry through real Envoys: an ingress gateway and a NONE-mode sidecar whose mesh
config (Istio's `istio` ConfigMap) turns on Zipkin tracing to meshplane's own collector
(`python -m meshplane.local.zipkin`). A request through gateway -> sidecar leaves spans of
both proxies under one trace id; the sidecar's /stats/prometheus (on its own loopback IP)
counts its outbound requests by destination service and response code; editing the
ConfigMap switches tracing and access logs off while everything runs."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from mesh_harness import (
    ControlPlane,
    Envoy,
    Proc,
    StatsNoneModeSidecar,
    behaving_upstream,
    free_port,
    free_port_on,
    http_get,
    upstream,
    wait_for,
    write_atomically,
)

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

SIDECAR_IP = "127.0.0.2"  # the sidecar's own loopback address, as `up` gives each pod
# In Envoy's /config_dump, as typed configs (its extension list names them without this).
ZIPKIN = "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig"
STDOUT_LOG = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
ANY_LOG = "type.googleapis.com/envoy.extensions.access_loggers."

MESH_CONFIG = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |-
    accessLogFile: {log_file}
    accessLogEncoding: JSON
    enableTracing: {tracing}
    defaultConfig:
      tracing:
        sampling: 100
        zipkin:
          address: 127.0.0.1:{collector}
"""

MESH = """\
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: demo}}
spec:
  ports: [{{name: http, port: 8000}}]
  selector: {{app: web}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: web, namespace: demo}}
spec:
  address: 127.0.0.1
  ports: {{http: {inbound}}}
  labels: {{app: web}}
---
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: demo}}
spec:
  ports: [{{name: http, port: {egress}}}]
  selector: {{app: backend}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: backend, namespace: demo}}
spec:
  address: 127.0.0.1
  ports: {{http: {backend}}}
  labels: {{app: backend}}
---
apiVersion: v1
kind: Service
metadata: {{name: broken, namespace: demo}}
spec:
  ports: [{{name: http, port: {egress}}}]
  selector: {{app: broken}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: broken, namespace: demo}}
spec:
  address: 127.0.0.1
  ports: {{http: {broken}}}
  labels: {{app: broken}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: web, namespace: demo}}
spec:
  workloadSelector: {{labels: {{app: web}}}}
  ingress:
  - port: {{number: {inbound}, protocol: HTTP, name: http}}
    bind: 127.0.0.1
    defaultEndpoint: 127.0.0.1:{app}
  egress:
  - port: {{number: {egress}, protocol: HTTP, name: http}}
    bind: 127.0.0.1
    hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: demo}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gw}, name: http, protocol: HTTP}}
    bind: 127.0.0.1
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: demo}}
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{{route: [{{destination: {{host: web}}}}]}}]
"""


@dataclass
class Mesh:
    cp: ControlPlane
    config: Path
    collector: int
    gw: int
    egress: int
    inbound: int
    sidecar: StatsNoneModeSidecar
    gateway: Envoy

    def traces(self) -> list[list[dict[str, object]]]:
        status, body = http_get(f"http://127.0.0.1:{self.collector}/api/v2/traces?limit=100")
        return json.loads(body) if status == 200 else []

    def mesh_config(self, *, log_file: str, tracing: bool) -> str:
        values = {"log_file": json.dumps(log_file), "tracing": str(tracing).lower()}
        return MESH_CONFIG.format(collector=self.collector, **values)


@pytest.fixture
def mesh(tmp_path: Path, logdir: Path) -> Iterator[Mesh]:
    config = tmp_path / "config"
    config.mkdir()
    with ExitStack() as stack:
        ports = {
            "app": stack.enter_context(upstream("web")),
            "backend": stack.enter_context(upstream("backend")),
            "broken": stack.enter_context(behaving_upstream("broken", status=503)),
            "inbound": free_port(),
            "egress": free_port(),
            "gw": free_port(),
        }
        collector_port = free_port()
        collector = Proc(
            "zipkin",
            [
                sys.executable,
                *("-m", "meshplane.local.zipkin", "--address", f"127.0.0.1:{collector_port}"),
            ],
            logdir,
        )
        stack.callback(collector.stop)
        wait_for("collector", lambda: http_get(f"http://127.0.0.1:{collector_port}/")[0] == 200)
        (config / "mesh.yaml").write_text(MESH.format(**ports))
        cp = ControlPlane(config, logdir)
        stack.callback(cp.stop)
        labels = "app=web,version=v1"
        sidecar = StatsNoneModeSidecar(
            *(cp, logdir),
            workload="web",
            namespace="demo",
            labels=labels,
            ip=SIDECAR_IP,
            stats_port=free_port_on(SIDECAR_IP),
        )
        stack.callback(sidecar.stop)
        gateway = Envoy(
            *(cp, logdir),
            kind="router",
            workload="ingress",
            namespace="istio-system",
            labels="istio=ingressgateway",
        )
        stack.callback(gateway.stop)
        m = Mesh(
            *(cp, config, collector_port),
            *(ports["gw"], ports["egress"], ports["inbound"]),
            *(sidecar, gateway),
        )
        write_atomically(config / "istio.yaml", m.mesh_config(log_file="/dev/stdout", tracing=True))
        wait_for("tracing config in force", lambda: ZIPKIN in sidecar.config_dump())
        wait_for(
            "gateway -> sidecar -> app", lambda: http_get(f"http://127.0.0.1:{m.gw}/")[0] == 200
        )
        assert cp.json("/debug/config_errors") == {"errors": [], "warnings": []}
        yield m
        assert sidecar.rejected() == 0, sidecar.output()
        assert gateway.rejected() == 0, gateway.output()


def test_spans_from_gateway_and_sidecar_share_a_trace(mesh: Mesh) -> None:
    # Envoy flushes spans in batches of 5 (or every 5 s): send more than that.
    for i in range(8):
        assert http_get(f"http://127.0.0.1:{mesh.gw}/page/{i}")[0] == 200

    def both_proxies_in_one_trace() -> bool:
        return any(
            {"ingress.istio-system", "web.demo"} <= {_service(s) for s in trace}
            for trace in mesh.traces()
        )

    wait_for("a trace with spans of both proxies", both_proxies_in_one_trace, timeout=20)
    trace = next(t for t in mesh.traces() if len({_service(s) for s in t}) >= 2)
    assert len({s["traceId"] for s in trace}) == 1
    by_service = {_service(s): s for s in trace}
    gateway_span, sidecar_span = by_service["ingress.istio-system"], by_service["web.demo"]
    # The sidecar's server span continues the gateway's (b3 headers), it does not share it.
    assert sidecar_span.get("parentId") == gateway_span["id"]
    assert sidecar_span["tags"]["istio.namespace"] == "demo"  # type: ignore[index]
    # The collector's page lists it.
    status, page = http_get(f"http://127.0.0.1:{mesh.collector}/")
    assert status == 200 and str(trace[0]["traceId"]) in page


def _service(span: dict[str, object]) -> str:
    endpoint = span.get("localEndpoint")
    return str(endpoint.get("serviceName", "")) if isinstance(endpoint, dict) else ""


def _counter(text: str, name: str, **labels: str) -> int:
    """Sum of the samples of counter `name` whose labels include `labels`."""
    total = 0
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} (\d+)", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total += int(m.group(2))
    return total


def test_prometheus_stats_by_destination_and_response_code(mesh: Mesh) -> None:
    egress = f"http://127.0.0.1:{mesh.egress}/"
    for _ in range(3):
        assert http_get(egress, host=f"backend.demo.svc.cluster.local:{mesh.egress}")[0] == 200
    for _ in range(2):
        assert http_get(egress, host=f"broken.demo.svc.cluster.local:{mesh.egress}")[0] == 503
    source = {"source_workload": "web", "source_namespace": "demo", "source_app": "web"}
    backend = {"destination_service": "backend.demo.svc.cluster.local", **source}
    broken = {"destination_service": "broken.demo.svc.cluster.local", **source}

    def counted() -> bool:
        text = mesh.sidecar.prometheus()
        ok = _counter(text, "envoy_cluster_upstream_rq", response_code="200", **backend)
        failed = _counter(text, "envoy_cluster_upstream_rq", response_code="503", **broken)
        return ok == 3 and failed == 2

    wait_for("requests counted by destination and code", counted)
    text = mesh.sidecar.prometheus()
    assert f'destination_port="{mesh.egress}"' in text
    assert 'cluster_name="outbound|' in text and 'source_version="v1"' in text
    # The stats listener binds the proxy's own IP, not every address.
    assert http_get(f"http://127.0.0.1:{mesh.sidecar.stats_port}/stats/prometheus")[0] == 0


def test_config_map_edits_switch_tracing_and_access_logs(mesh: Mesh) -> None:
    """The requests go straight to the sidecar's inbound listener, each on a new connection,
    so each meets the listener config in force (a connection accepted earlier keeps its old
    filter chain until it drains)."""
    sidecar = mesh.sidecar

    def logged(path: str) -> bool:
        return f'"path":"{path}"' in _compact(sidecar)

    def get(path: str) -> int:
        return http_get(f"http://127.0.0.1:{mesh.inbound}{path}")[0]

    assert get("/logged") == 200
    wait_for("a JSON access log line", lambda: logged("/logged"))
    write_atomically(mesh.config / "istio.yaml", mesh.mesh_config(log_file="", tracing=False))
    for envoy in (mesh.gateway, sidecar):
        wait_for("tracing and logs off", lambda e=envoy: _has(e, ZIPKIN, ANY_LOG) == (0, 0))
    assert get("/unlogged") == 200
    # The ConfigMap going away restores meshplane's defaults (JSON on stdout, no tracing).
    (mesh.config / "istio.yaml").unlink()
    for envoy in (mesh.gateway, sidecar):
        wait_for("default logs back", lambda e=envoy: _has(e, ZIPKIN, STDOUT_LOG) == (0, 1))
    assert get("/relogged") == 200
    wait_for("logged again", lambda: logged("/relogged"))
    assert not logged("/unlogged")


def _has(envoy: Envoy, *needles: str) -> tuple[int, ...]:
    """For each needle, 1 if Envoy's active listeners (not the draining ones) hold it."""
    dump = json.loads(
        http_get(f"http://127.0.0.1:{envoy.admin_port}/config_dump", timeout=5)[1] or "{}"
    )
    active = [
        listener.get("active_state", {})
        for section in dump.get("configs", [])
        for listener in section.get("dynamic_listeners", [])
    ]
    text = json.dumps(active)
    return tuple(int(n in text) for n in needles)


def _compact(proc: Proc) -> str:
    """The process output with JSON lines re-serialised without spaces."""
    out = []
    for line in proc.output().splitlines():
        try:
            out.append(json.dumps(json.loads(line), separators=(",", ":")))
        except ValueError:
            continue
    return "\n".join(out)
