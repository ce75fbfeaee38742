"""view_for: exportTo, Sidecar egress, DestinationRule lookup, gateway binding, view keys."""

from __future__ import annotations

from typing import Any

from model_inputs import dr, obj, service, up, vs

from meshplane.model.proxy import Proxy
from meshplane.model.store import ConfigStore
from meshplane.model.views import view_for


def sidecar_proxy(ns: str, name: str = "p", ip: str = "10.0.0.1", labels: Any = None) -> Proxy:
    node = f"sidecar~{ip}~{name}.{ns}~{ns}.svc.cluster.local"
    return Proxy.from_node(node, {"LABELS": labels or {"app": name}})


def router(ns: str = "istio-system", labels: Any = None) -> Proxy:
    node = f"router~10.0.9.9~gw.{ns}~{ns}.svc.cluster.local"
    return Proxy.from_node(node, {"LABELS": labels or {"istio": "ingressgateway"}})


def h(name: str, ns: str) -> str:
    return f"{name}.{ns}.svc.cluster.local"


def base() -> ConfigStore:
    store = ConfigStore()
    for i, (name, ns) in enumerate([("reviews", "a"), ("ratings", "b"), ("private", "b"),
                                    ("shared", "istio-system")]):  # fmt: skip
        svc = service(name, ns)
        if name == "private":
            svc["metadata"]["annotations"] = {"networking.istio.io/exportTo": "."}
        store.apply(up(svc, doc=i))
    return store


def hosts_of(view: Any) -> list[str]:
    return [s.hostname for s in view.services]


def test_export_to() -> None:
    store = base()
    mesh = store.mesh()
    assert hosts_of(view_for(mesh, sidecar_proxy("a"))) == [
        h("ratings", "b"),
        h("reviews", "a"),
        h("shared", "istio-system"),
    ]
    assert h("private", "b") in hosts_of(view_for(mesh, sidecar_proxy("b")))


def test_sidecar_egress_and_selection() -> None:
    store = base()
    store.apply(up(obj("Sidecar", "default", "a", {"egress": [{"hosts": ["./*"]}]})))
    store.apply(
        up(
            obj(
                "Sidecar",
                "special",
                "a",
                {
                    "workloadSelector": {"labels": {"app": "special"}},
                    "egress": [
                        {"hosts": ["b/*", "istio-system/shared.istio-system.svc.cluster.local"]}
                    ],
                },
            )
        )
    )
    store.apply(up(obj("Sidecar", "default", "istio-system",
                       {"egress": [{"hosts": ["istio-system/*"]}]})))  # fmt: skip
    mesh = store.mesh()
    plain = view_for(mesh, sidecar_proxy("a"))
    assert hosts_of(plain) == [h("reviews", "a")]
    assert plain.sidecar is not None and plain.sidecar.name == "default"
    special = view_for(mesh, sidecar_proxy("a", "special"))
    assert special.sidecar is not None and special.sidecar.name == "special"
    assert hosts_of(special) == [h("ratings", "b"), h("shared", "istio-system")]
    # Namespace b has no Sidecar: the root namespace's applies.
    in_b = view_for(mesh, sidecar_proxy("b"))
    assert in_b.sidecar is not None and in_b.sidecar.namespace == "istio-system"
    assert hosts_of(in_b) == [h("shared", "istio-system")]


def test_destination_rule_lookup_order_and_export() -> None:
    store = base()
    store.apply(up(dr("in-root", "*.svc.cluster.local", "istio-system")))
    store.apply(up(dr("svc-ns", "ratings", "b")))
    store.apply(up(dr("svc-ns-private", "reviews", "a", exportTo=["."])))
    store.apply(up(dr("client-ns", "ratings.b.svc.cluster.local", "c")))
    mesh = store.mesh()
    in_a = view_for(mesh, sidecar_proxy("a")).destination_rules
    assert in_a[h("ratings", "b")].name == "svc-ns"
    assert in_a[h("reviews", "a")].name == "svc-ns-private"  # own namespace: always visible
    assert in_a[h("shared", "istio-system")].name == "in-root"
    in_c = view_for(mesh, sidecar_proxy("c")).destination_rules
    assert in_c[h("ratings", "b")].name == "client-ns"
    assert in_c[h("reviews", "a")].name == "in-root"  # a's rule is exported only to a


def test_destination_rule_most_specific_host_wins() -> None:
    store = base()
    store.apply(up(dr("wide", "*.svc.cluster.local", "a")))
    store.apply(up(dr("narrow", "*.b.svc.cluster.local", "a")))
    rules = view_for(store.mesh(), sidecar_proxy("a")).destination_rules
    assert rules[h("ratings", "b")].name == "narrow"
    assert rules[h("reviews", "a")].name == "wide"


def test_virtual_service_binding() -> None:
    store = base()
    store.apply(up(obj("Gateway", "gw", "istio-system", {
        "selector": {"istio": "ingressgateway"},
        "servers": [{"port": {"number": 80, "protocol": "HTTP", "name": "http"}, "hosts": ["*"]}],
    })))  # fmt: skip
    store.apply(up(vs("edge", ["bookinfo.example.com"], "reviews.a.svc.cluster.local", "a",
                      gateways=["istio-system/gw"])))  # fmt: skip
    store.apply(up(vs("both", ["reviews"], "reviews", "a", gateways=["istio-system/gw", "mesh"])))
    store.apply(up(vs("local-gw", ["x.example.com"], "reviews.a.svc.cluster.local", "istio-system",
                      gateways=["gw"])))  # fmt: skip
    store.apply(up(vs("mesh-only", ["ratings.b.svc.cluster.local"], "ratings.b.svc.cluster.local",
                      "a")))  # fmt: skip
    mesh = store.mesh()
    gw_view = view_for(mesh, router())
    assert [g.name for g in gw_view.gateways] == ["gw"]
    assert [v.name for v in gw_view.virtual_services] == ["edge", "both", "local-gw"]
    assert gw_view.inbound == ()
    side = view_for(mesh, sidecar_proxy("b"))
    assert [v.name for v in side.virtual_services] == ["both", "mesh-only"]
    assert side.virtual_services[0].spec.hosts == (h("reviews", "a"),)  # short name resolved
    # A router whose labels match no Gateway gets no gateway-bound routes.
    assert view_for(mesh, router(labels={"istio": "egress"})).virtual_services == ()


def test_oldest_virtual_service_wins_a_host_on_the_mesh() -> None:
    store = base()
    store.apply(up(vs("first", ["reviews", "extra.example.com"], "reviews", "a"), doc=1))
    store.apply(up(vs("second", ["reviews.a.svc.cluster.local"], "reviews", "a"), doc=2))
    store.apply(up(vs("third", ["reviews", "mine.example.com"], "reviews", "a"), doc=3))
    view = view_for(store.mesh(), sidecar_proxy("a"))
    assert [(v.name, v.spec.hosts) for v in view.virtual_services] == [
        ("first", (h("reviews", "a"), "extra.example.com")),
        ("third", ("mine.example.com",)),
    ]
    conflicts = [w for w in store.warnings() if "also routed by" in w.reason]
    assert sorted(w.name for w in conflicts) == ["second", "third"]


def test_inbound_ports_from_own_endpoints() -> None:
    store = base()
    store.apply(
        up(
            obj(
                "WorkloadEntry",
                "reviews-v1",
                "a",
                {"address": "10.0.0.1", "labels": {"app": "reviews"}, "ports": {"http": 19080}},
            )
        )
    )
    store.apply(up(service("reviews", "a", selector={"app": "reviews"})))
    view = view_for(store.mesh(), sidecar_proxy("a", "reviews-v1", ip="10.0.0.1"))
    assert [(p.port, p.service_port, p.protocol, p.hostnames) for p in view.inbound] == [
        (19080, 9080, "HTTP", (h("reviews", "a"),))
    ]
    assert [e.port for e in view.endpoints[h("reviews", "a")]] == [19080]


def test_keys_shared_and_stable() -> None:
    store = base()
    mesh = store.mesh()
    one = view_for(mesh, sidecar_proxy("a", "one", ip="10.0.1.1"))
    two = view_for(mesh, sidecar_proxy("a", "two", ip="10.0.1.2"))
    assert one.key == two.key and one is two  # same view, shared
    assert view_for(mesh, sidecar_proxy("b")).key != one.key
    # An unrelated namespace's object exported only to itself does not change a's key.
    store.apply(up(vs("hidden", ["ratings"], "ratings", "b", exportTo=["."])))
    store.apply(up(dr("hidden", "ratings", "b", exportTo=["."])))
    store.apply(up(service("more", "b", selector={"app": "x"},
                           )))  # fmt: skip
    store.apply(up(obj("Sidecar", "default", "b", {"egress": [{"hosts": ["./*"]}]})))
    assert store.mesh().version > mesh.version
    # "more" is exported to all; hide it to keep this change unrelated to namespace a.
    more = service("more", "b", selector={"app": "x"})
    more["metadata"]["annotations"] = {"networking.istio.io/exportTo": "."}
    store.apply(up(more))
    assert view_for(store.mesh(), sidecar_proxy("a", "one", ip="10.0.1.1")).key == one.key
    # A visible change does change it.
    store.apply(up(dr("seen", "reviews", "a")))
    assert view_for(store.mesh(), sidecar_proxy("a", "one", ip="10.0.1.1")).key != one.key
