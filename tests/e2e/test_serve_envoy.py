"""`meshplane serve` on a watched directory driving a real Envoy gateway over ADS.

Issue 2's end-to-end check, once with State-of-the-World and once with Delta: Envoy reaches
an upstream through the config meshplane gives it, follows a file change without dropping a
request, ignores a bad file (the last good config stays), and rejects nothing.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from mesh_harness import (
    ControlPlane,
    Envoy,
    free_port,
    http_get,
    upstream,
    wait_for,
    write_atomically,
)

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

MESH = """\
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: demo}}
spec:
  ports: [{{name: http, port: 8000}}]
  selector: {{app: echo}}
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
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {{name: echo, namespace: demo}}
spec:
  host: echo
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {{name: gw, namespace: demo}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gw}, name: http, protocol: HTTP}}
    hosts: ["*"]
"""

ROUTE = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo, namespace: demo}}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route:
    - destination: {{host: echo, subset: {subset}}}
"""


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_gateway_follows_files_without_dropping_requests(
    tmp_path: Path, logdir: Path, delta: bool
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    gw_port = free_port()
    with upstream("v1") as v1, upstream("v2") as v2:
        (config / "mesh.yaml").write_text(MESH.format(v1=v1, v2=v2, gw=gw_port))
        (config / "route.yaml").write_text(ROUTE.format(subset="v1"))
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
                delta=delta,
            )
            url = f"http://127.0.0.1:{gw_port}/"
            wait_for("traffic through the gateway", lambda: http_get(url) == (200, "v1"))
            wait_for("the gateway to be SYNCED", lambda: envoy.synced(cp))

            # Requests keep flowing while the route moves from v1 to v2.
            seen: list[tuple[int, str]] = []
            stop = threading.Event()

            def load() -> None:
                for _ in range(5000):  # bounded
                    if stop.is_set():
                        return
                    seen.append(http_get(url))

            loader = threading.Thread(target=load)
            loader.start()
            try:
                write_atomically(config / "route.yaml", ROUTE.format(subset="v2"))
                wait_for("the route to reach v2", lambda: http_get(url) == (200, "v2"))
            finally:
                stop.set()
                loader.join(30)
            assert seen, "the load loop sent no request"
            failures = [r for r in seen if r[0] != 200]
            assert failures == [], f"{len(failures)} of {len(seen)} requests failed: {failures[:3]}"
            assert {body for _, body in seen} <= {"v1", "v2"}

            # A bad file is reported and changes nothing that is served.
            write_atomically(
                config / "route.yaml",
                ROUTE.format(subset="v1").replace("subset: v1", "subset: 7, weight: 900"),
            )
            wait_for(
                "the error to be reported",
                lambda: bool(cp.json("/debug/config_errors")["errors"]),  # type: ignore[index]
            )
            errors = cp.json("/debug/config_errors")["errors"]  # type: ignore[index]
            assert any(e["name"] == "echo" and "route.yaml" in e["file"] for e in errors), errors
            assert any("weight" in e["field"] for e in errors), errors
            for _ in range(20):
                assert http_get(url) == (200, "v2")
            assert envoy.rejected() == 0
            assert "update_rejected" in "".join(envoy.stats()), "Envoy stats not readable"
        finally:
            if envoy is not None:
                envoy.stop()
            cp.stop()
