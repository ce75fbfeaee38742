"""AuthorizationPolicy action CUSTOM through a real Envoy sidecar (INTERCEPTION_MODE NONE):
a small local HTTP authorizer, registered with a ServiceEntry and named by the mesh
config's `extensionProviders`, decides the requests the policy's rules select (/admin*)
and never sees the others. A CUSTOM policy naming an unknown provider is an error on the
policy and fails closed, with config Envoy accepts."""

from __future__ import annotations

import contextlib
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mesh_harness import ControlPlane, NoneModeSidecar, free_port, upstream, wait_for

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

CONFIG = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |-
    accessLogFile: ""
    extensionProviders:
    - name: local-authz
      envoyExtAuthzHttp:
        service: ext-authz.local
        port: {se_port}
        includeRequestHeadersInCheck: ["x-allow"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext-authz, namespace: default}}
spec:
  hosts: ["ext-authz.local"]
  location: MESH_EXTERNAL
  resolution: STATIC
  # The sidecar binds an egress listener on the service port (NONE mode): the authorizer
  # listens on another one.
  ports: [{{number: {se_port}, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {authz}}}}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: web, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: web}}}}
  ingress:
  - port: {{number: {http}, protocol: HTTP, name: http}}
    bind: 127.0.0.1
    defaultEndpoint: 127.0.0.1:{app}
  egress:
  - hosts: ["./*"]
"""

POLICY = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: admin-authz, namespace: default}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  action: CUSTOM
  provider: {{name: {provider}}}
  rules:
  - to: [{{operation: {{paths: ["/admin*"]}}}}]
"""


@dataclass
class Authorizer:
    """What the authorizer saw: the paths it was asked about."""

    port: int = 0
    paths: list[str] = field(default_factory=list)


@contextlib.contextmanager
def authorizer() -> Iterator[Authorizer]:
    """Envoy's HTTP ext_authz contract: 200 allows, anything else denies. This one allows
    requests carrying ``x-allow: yes``."""
    seen = Authorizer()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            seen.paths.append(self.path)
            allowed = self.headers.get("x-allow") == "yes"
            body = b"allowed" if allowed else b"denied by authorizer"
            self.send_response(200 if allowed else 403)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    seen.port = int(server.server_address[1])
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    except OSError:
        return 0, ""


@dataclass
class Mesh:
    cp: ControlPlane
    config: Path
    http: int
    authz: Authorizer


@pytest.fixture
def mesh(tmp_path: Path, logdir: Path) -> Iterator[Mesh]:
    config = tmp_path / "config"
    config.mkdir()
    with ExitStack() as stack:
        app = stack.enter_context(upstream("web"))
        authz = stack.enter_context(authorizer())
        http, se_port = free_port(), free_port()
        mesh_config = CONFIG.format(app=app, http=http, authz=authz.port, se_port=se_port)
        (config / "mesh.yaml").write_text(mesh_config)
        (config / "policy.yaml").write_text(POLICY.format(provider="local-authz"))
        cp = ControlPlane(config, logdir)
        stack.callback(cp.stop)
        envoy = NoneModeSidecar(cp, logdir, workload="web", namespace="default", labels="app=web")
        stack.callback(envoy.stop)
        wait_for("ingress listener serving", lambda: get(http, "/public")[0] == 200)
        assert cp.json("/debug/config_errors") == {"errors": [], "warnings": []}
        yield Mesh(cp, config, http, authz)
        assert envoy.rejected() == 0, envoy.output()


def test_only_selected_requests_reach_the_authorizer(mesh: Mesh) -> None:
    assert get(mesh.http, "/public/page") == (200, "web")
    assert get(mesh.http, "/public/page", {"x-allow": "no"}) == (200, "web")
    assert mesh.authz.paths == []  # the rules select /admin* only
    assert get(mesh.http, "/admin/users") == (403, "denied by authorizer")
    assert get(mesh.http, "/admin/users", {"x-allow": "yes"}) == (200, "web")
    assert mesh.authz.paths == ["/admin/users", "/admin/users"]


def test_unknown_provider_is_an_error_and_fails_closed(mesh: Mesh) -> None:
    (mesh.config / "policy.yaml").write_text(POLICY.format(provider="nope"))
    wait_for(
        "bad CUSTOM policy in force",
        lambda: get(mesh.http, "/admin", {"x-allow": "yes"})[0] == 403,
    )
    errors = mesh.cp.json("/debug/config_errors")
    assert isinstance(errors, dict)
    [error] = errors["errors"]
    assert error["field"] == "spec.provider.name" and "'nope'" in error["reason"]
    assert error["file"].endswith("policy.yaml")
    mesh.authz.paths.clear()  # asked while the good policy was still in force
    assert get(mesh.http, "/admin/users", {"x-allow": "yes"})[0] == 403
    assert get(mesh.http, "/public") == (200, "web")
    assert mesh.authz.paths == []  # denied by meshplane's fail-closed RBAC, not asked
