"""Two gateway behaviours of Istio through `meshplane serve` and a real Envoy gateway:

- the Gateway server port is the port of the gateway's Service, and the gateway listens on
  that Service's targetPort (a Gateway on port 80 for a gateway that binds a high port);
- `defaultConfig.gatewayTopology.numTrustedProxies` in the mesh config: the gateway takes
  the client's address from X-Forwarded-For, so `remoteIpBlocks` and the access log see it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import pytest
from mesh_harness import ControlPlane, Envoy, free_port, upstream, wait_for, write_atomically

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

BACKEND = """\
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
  ports: {{http: {app}}}
  labels: {{app: web}}
"""

# The gateway's Service maps port 80 to `target`; the Gateway and its route say port 80.
TARGET_PORT_GATEWAY = """\
apiVersion: v1
kind: Service
metadata: {{name: istio-ingressgateway, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  ports: [{{name: http2, port: 80, targetPort: {target}}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: demo}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    bind: 127.0.0.1
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: demo}}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{{port: 80}}]
    route: [{{destination: {{host: web}}}}]
"""

TRUSTED_PROXIES_GATEWAY = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |-
    accessLogFile: {log}
    accessLogEncoding: JSON
    defaultConfig:
      gatewayTopology:
        numTrustedProxies: 1
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
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-documentation-net, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  action: DENY
  rules:
  - from: [{{source: {{remoteIpBlocks: ["203.0.113.0/24"]}}}}]
"""


def get(port: int, path: str = "/", xff: str | None = None) -> tuple[int, str]:
    """Status and body of a GET to 127.0.0.1:port (0 when nothing answers)."""
    headers = {"X-Forwarded-For": xff} if xff else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def gateway(cp: ControlPlane, logdir: Path) -> Envoy:
    return Envoy(
        cp,
        logdir,
        kind="router",
        workload="istio-ingressgateway",
        namespace="istio-system",
        labels="istio=ingressgateway",
    )


def test_gateway_listens_on_the_service_target_port(tmp_path: Path, logdir: Path) -> None:
    """A request to the targetPort reaches the backend through the port-80 server and route;
    a new targetPort moves the listener there."""
    config = tmp_path / "config"
    config.mkdir()
    target, moved = free_port(), free_port()
    with ExitStack() as stack:
        app = stack.enter_context(upstream("web"))
        (config / "backend.yaml").write_text(BACKEND.format(app=app))
        (config / "gateway.yaml").write_text(TARGET_PORT_GATEWAY.format(target=target))
        cp = ControlPlane(config, logdir)
        stack.callback(cp.stop)
        envoy = gateway(cp, logdir)
        stack.callback(envoy.stop)
        wait_for("the gateway on the targetPort", lambda: get(target) == (200, "web"))
        dump = cp.get("/debug/config_dump?proxyID=istio-ingressgateway.istio-system")[1]
        assert f'"127.0.0.1_{target}"' in dump and f'"http.{target}"' in dump
        assert '"127.0.0.1_80"' not in dump

        write_atomically(config / "gateway.yaml", TARGET_PORT_GATEWAY.format(target=moved))
        wait_for("the listener to move", lambda: get(moved) == (200, "web"))
        wait_for("the old port to close", lambda: get(target)[0] == 0)
        assert envoy.rejected() == 0, envoy.output()


def test_num_trusted_proxies_gives_remote_ip_blocks_the_forwarded_client(
    tmp_path: Path, logdir: Path
) -> None:
    """With one trusted proxy in front, the last X-Forwarded-For entry is the client: a DENY
    on its network answers 403, other clients pass, and the access log names the client."""
    config = tmp_path / "config"
    config.mkdir()
    gw, log = free_port(), tmp_path / "gateway-access.log"
    with ExitStack() as stack:
        app = stack.enter_context(upstream("web"))
        (config / "backend.yaml").write_text(BACKEND.format(app=app))
        (config / "gateway.yaml").write_text(TRUSTED_PROXIES_GATEWAY.format(gw=gw, log=log))
        cp = ControlPlane(config, logdir)
        stack.callback(cp.stop)
        envoy = gateway(cp, logdir)
        stack.callback(envoy.stop)
        wait_for("the gateway serving", lambda: get(gw) == (200, "web"))
        assert cp.json("/debug/config_errors") == {"errors": [], "warnings": []}

        assert get(gw, "/denied", xff="203.0.113.7")[0] == 403
        # Only the last entry counts: the one the trusted proxy appended.
        assert get(gw, "/denied-last", xff="198.51.100.1, 203.0.113.8")[0] == 403
        assert get(gw, "/passed", xff="198.51.100.9") == (200, "web")
        assert get(gw, "/passed-first", xff="203.0.113.9, 198.51.100.9") == (200, "web")

        def logged() -> dict[str, str]:
            lines = log.read_text().splitlines() if log.exists() else []
            entries = [json.loads(line) for line in lines if line.startswith("{")]
            return {e["path"]: e["downstream_remote_address"] for e in entries if "path" in e}

        wait_for("the access log", lambda: {"/denied", "/passed"} <= set(logged()))
        assert logged()["/denied"].startswith("203.0.113.7")
        assert logged()["/passed"].startswith("198.51.100.9")
        assert envoy.rejected() == 0, envoy.output()
