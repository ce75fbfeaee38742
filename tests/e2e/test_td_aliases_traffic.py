"""Trust domain aliases with real traffic: a policy written for another trust domain admits
the same service account once that domain is an alias of the mesh's.

`serve --trust-domain old.example` issues every certificate in old.example. Two sidecars
(INTERCEPTION_MODE NONE, on loopback) join its TLS port: the server `srv` (demo/server) and
the caller `cli` (demo/client), which reaches srv over auto mTLS. The server's ALLOW policy
names the caller as `new.example/ns/demo/sa/client`. Without aliases that is a foreign
identity (403); with `trustDomainAliases: [new.example]` in the `istio` ConfigMap it is the
caller in either domain (200); dropping the alias denies it again.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mesh_harness import ControlPlane, Envoy, free_port, http_get, upstream, wait_for
from mesh_harness import write_atomically as write

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

HOST = "srv.demo.svc.cluster.local"
CLIENT = "127.0.0.1"  # where `cli` listens

MESH = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: srv, namespace: demo}}
spec:
  hosts: [{host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {http_out}, name: http, protocol: HTTP, targetPort: {http_in}}}]
  workloadSelector: {{labels: {{app: srv}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: srv, namespace: demo}}
spec:
  address: 127.0.0.1
  serviceAccount: server
  labels: {{app: srv, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: srv, namespace: demo}}
spec:
  workloadSelector: {{labels: {{app: srv}}}}
  ingress:
  - port: {{number: {http_in}, name: http, protocol: HTTP}}
    bind: 127.0.0.1
    defaultEndpoint: 127.0.0.1:{app}
  egress: [{{hosts: ["~/*"]}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: cli, namespace: demo}}
spec:
  workloadSelector: {{labels: {{app: cli}}}}
  egress:
  - port: {{number: {http_out}, name: http, protocol: HTTP}}
    bind: {client}
    hosts: ["demo/*"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-client, namespace: demo}}
spec:
  selector: {{matchLabels: {{app: srv}}}}
  rules:
  - from: [{{source: {{principals: ["new.example/ns/demo/sa/client"]}}}}]
"""

MESH_CONFIG = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |-
    trustDomain: old.example
    trustDomainAliases: {aliases}
"""


@dataclass
class Mesh:
    cp: ControlPlane
    config: Path
    http_out: int
    server: Envoy

    def get(self) -> int:
        return http_get(f"http://{CLIENT}:{self.http_out}/", host=HOST, timeout=2.0)[0]

    def aliases(self, aliases: list[str]) -> None:
        write(self.config / "mesh-config.yaml", MESH_CONFIG.format(aliases=json.dumps(aliases)))


def synced(cp: ControlPlane, proxy: Envoy) -> bool:
    rows = cp.json("/debug/syncz")
    assert isinstance(rows, list)
    for row in rows:
        if row["proxy"].startswith(proxy.id_prefix):
            types = row["types"]
            acked = all(types[t]["status"] == "SYNCED" for t in ("cds", "lds", "sds"))
            return acked and all(v["status"] in ("SYNCED", "NOT_SENT") for v in types.values())
    return False


def certificate_sans(proxy: Envoy) -> list[str]:
    """The URI SANs of the workload certificate Envoy holds (its admin /certs)."""
    status, body = http_get(f"http://127.0.0.1:{proxy.admin_port}/certs")
    assert status == 200, body
    return [
        san["uri"]
        for entry in json.loads(body)["certificates"]
        for cert in entry["cert_chain"]
        for san in cert.get("subject_alt_names", [])
        if "uri" in san
    ]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("td-aliases")
    config, logdir = root / "config", root / "logs"
    config.mkdir()
    logdir.mkdir()
    ports = {"http_in": free_port(), "http_out": free_port()}
    with contextlib.ExitStack() as stack:
        app = stack.enter_context(upstream("srv"))
        text = MESH.format(host=HOST, app=app, client=CLIENT, **ports)
        (config / "mesh.yaml").write_text(text)
        cp = ControlPlane(config, logdir, "--trust-domain", "old.example")
        stack.callback(cp.stop)
        proxies = []
        for workload, sa in (("srv", "server"), ("cli", "client")):
            proxy = Envoy(
                cp,
                logdir,
                kind="sidecar",
                workload=workload,
                namespace="demo",
                labels=f"app={workload}",
                service_account=sa,
                tls=True,
                extra=("--interception", "NONE"),
            )
            stack.callback(proxy.stop)
            proxies.append(proxy)
        for proxy in proxies:
            wait_for(f"{proxy.id_prefix} synced", lambda p=proxy: synced(cp, p))  # type: ignore[misc]
        yield Mesh(cp, config, ports["http_out"], proxies[0])
        for proxy in proxies:
            assert proxy.rejected() == 0, proxy.output()


def test_policy_for_an_alias_domain_admits_the_caller_only_with_the_alias(mesh: Mesh) -> None:
    # The premise: certificates are in serve's trust domain, not the policy's.
    wait_for("srv's certificate", lambda: bool(certificate_sans(mesh.server)))
    assert certificate_sans(mesh.server) == ["spiffe://old.example/ns/demo/sa/server"]
    wait_for("no alias: the caller is foreign", lambda: mesh.get() == 403)

    mesh.aliases(["new.example"])
    wait_for("alias: the caller is admitted", lambda: mesh.get() == 200, timeout=20)
    assert mesh.cp.json("/debug/config_errors") == {"errors": [], "warnings": []}

    mesh.aliases([])
    wait_for("alias dropped: denied again", lambda: mesh.get() == 403, timeout=20)
