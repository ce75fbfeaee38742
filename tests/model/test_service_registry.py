"""The service registry: Kubernetes Services, EndpointSlices, Pods, ServiceEntries."""

from __future__ import annotations

import pytest
from model_inputs import NET, endpoint_slice, obj, pod, service, up

from meshplane.model.protocols import port_protocol
from meshplane.model.store import ConfigStore

HOST = "reviews.default.svc.cluster.local"


@pytest.mark.parametrize(
    ("name", "app_protocol", "want"),
    [("http", None, "HTTP"), ("http-web", None, "HTTP"), ("http2", None, "HTTP2"),
     ("grpc-api", None, "GRPC"), ("grpc-web", None, "GRPC-WEB"), ("https", None, "HTTPS"),
     ("tcp-db", None, "TCP"), ("tls", None, "TLS"), ("mongo", None, "MONGO"),
     ("redis-x", None, "REDIS"), ("mysql", None, "MYSQL"), ("web", None, "TCP"), ("", None, "TCP"),
     ("HTTP", None, "HTTP"), ("web", "http", "HTTP"), ("web", "kubernetes.io/h2c", "HTTP2"),
     ("httpx", None, "TCP")],
)  # fmt: skip
def test_port_protocol(name: str, app_protocol: str | None, want: str) -> None:
    assert port_protocol(name, app_protocol) == want


def test_kubernetes_service_with_slices_and_pods() -> None:
    store = ConfigStore()
    store.apply(up(service("reviews", ports=[{"name": "http", "port": 9080, "targetPort": 8080}],
                           selector={"app": "reviews"})))  # fmt: skip
    store.apply(up(endpoint_slice("reviews-a", "reviews", [("10.1.0.1", "r1"), ("10.1.0.2", "r2")],
                                  port=8080)))  # fmt: skip
    store.apply(up(pod("r1", "10.1.0.1", {"app": "reviews", "version": "v1"}, sa="bookinfo")))
    mesh = store.mesh()
    svc = mesh.services[HOST]
    assert (svc.addresses, svc.resolution, svc.source) == (("10.0.0.1",), "STATIC", "kubernetes")
    assert [(p.name, p.number, p.protocol, p.target_port) for p in svc.ports] == [
        ("http", 9080, "HTTP", 8080)
    ]
    eps = mesh.endpoints[HOST]
    assert [(e.address, e.port, e.service_port, e.service_account, e.labels.get("version"))
            for e in eps] == [("10.1.0.1", 8080, 9080, "bookinfo", "v1"),
                              ("10.1.0.2", 8080, 9080, "", None)]  # fmt: skip
    # Pod label change: endpoints change, the service's revision does not.
    revision = svc.revision
    change = store.apply(up(pod("r1", "10.1.0.1", {"app": "reviews", "version": "v9"})))
    assert change.endpoints_only
    mesh2 = store.mesh()
    assert mesh2.services[HOST].revision == revision
    assert mesh2.endpoints[HOST][0].labels["version"] == "v9"


def test_selector_without_slices_uses_pods_and_workload_entries() -> None:
    store = ConfigStore()
    store.apply(up(service("reviews", ports=[{"name": "http", "port": 9080, "targetPort": "web"}],
                           selector={"app": "reviews"})))  # fmt: skip
    p = pod("r1", "10.1.0.1", {"app": "reviews"})
    p["spec"]["containers"] = [{"name": "c", "ports": [{"name": "web", "containerPort": 7000}]}]
    store.apply(up(p))
    store.apply(up(pod("other", "10.1.0.9", {"app": "ratings"})))
    store.apply(up(obj("WorkloadEntry", "vm1", spec={"address": "192.168.0.5",
                       "labels": {"app": "reviews"}, "ports": {"http": 19000}})))  # fmt: skip
    eps = store.mesh().endpoints[HOST]
    assert [(e.address, e.port, e.workload) for e in eps] == [
        ("10.1.0.1", 7000, "r1"),
        ("192.168.0.5", 19000, "vm1"),
    ]
    # A new matching pod shows up as an endpoints-only change.
    change = store.apply(up(pod("r2", "10.1.0.2", {"app": "reviews"})))
    assert change.endpoints_only and change.endpoint_hosts == {HOST}


def test_service_entry_one_service_per_host_and_dns() -> None:
    store = ConfigStore()
    se = obj("ServiceEntry", "ext", spec={
        "hosts": ["api.example.com", "www.example.com"], "resolution": "DNS",
        "location": "MESH_EXTERNAL",
        "ports": [{"number": 443, "protocol": "TLS", "name": "tls"}],
    })  # fmt: skip
    store.apply(up(se))
    static = obj("ServiceEntry", "static", spec={
        "hosts": ["db.internal"], "resolution": "STATIC", "location": "MESH_INTERNAL",
        "ports": [{"number": 5432, "protocol": "TCP", "name": "pg", "targetPort": 5433}],
        "endpoints": [{"address": "10.2.0.1", "labels": {"v": "1"}}, {"address": "10.2.0.2"}],
    })  # fmt: skip
    store.apply(up(static))
    mesh = store.mesh()
    assert sorted(mesh.services) == ["api.example.com", "db.internal", "www.example.com"]
    api = mesh.services["api.example.com"]
    assert (api.resolution, api.location, api.source) == ("DNS", "MESH_EXTERNAL", "serviceentry")
    assert [(e.address, e.port) for e in mesh.endpoints["api.example.com"]] == [
        ("api.example.com", 443)
    ]
    assert [(e.address, e.port, dict(e.labels)) for e in mesh.endpoints["db.internal"]] == [
        ("10.2.0.1", 5433, {"v": "1"}),
        ("10.2.0.2", 5433, {}),
    ]


def test_host_declared_twice_first_wins_with_warning() -> None:
    store = ConfigStore()
    store.apply(up(service("reviews")))
    se = obj("ServiceEntry", "dup", spec={
        "hosts": [HOST], "resolution": "DNS",
        "ports": [{"number": 80, "protocol": "HTTP", "name": "http"}]})  # fmt: skip
    store.apply(up(se, path="b.yaml"))
    mesh = store.mesh()
    assert mesh.services[HOST].source == "kubernetes"
    assert any("also declared by Service default/reviews" in w.reason for w in mesh.warnings)
    assert NET  # the module constant is the v1 API


def test_many_services_endpoint_change_is_incremental() -> None:
    store = ConfigStore()
    for i in range(200):
        store.apply(up(service(f"s{i}")))
        store.apply(up(endpoint_slice(f"s{i}-a", f"s{i}", [(f"10.0.{i // 250}.{i % 250}", "")])))
    before = store.mesh()
    store.apply(up(endpoint_slice("s7-a", "s7", [("10.9.9.9", "")])))
    after = store.mesh()
    host7 = "s7.default.svc.cluster.local"
    assert after.endpoints[host7][0].address == "10.9.9.9"
    # Other hosts' endpoint tuples are the very same objects: not rebuilt.
    host8 = "s8.default.svc.cluster.local"
    assert after.endpoints[host8] is before.endpoints[host8]
    assert after.services[host7] is before.services[host7]
