"""A gateway's listener binds the targetPort of the Service in front of it (Istio's
resolvePorts): which Services count, which one wins, and that the view key follows them."""

from __future__ import annotations

from typing import Any

from model_inputs import obj, pod, service, up

from meshplane.model.gateway_ports import DISABLE_TRANSLATION_LABEL
from meshplane.model.proxy import Proxy
from meshplane.model.store import ConfigStore
from meshplane.model.views import view_for
from meshplane.translators.gateways import gateway_listeners_and_routes

NS = "istio-system"
LABELS = {"istio": "ingressgateway"}
GATEWAY = obj(
    "Gateway",
    "ingress",
    NS,
    {
        "selector": LABELS,
        "servers": [
            {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]},
            {"port": {"number": 8000, "name": "http-b", "protocol": "HTTP"}, "hosts": ["*"]},
        ],
    },
)


def gateway_proxy(ns: str = NS, name: str = "gw-7d9f") -> Proxy:
    node = f"router~10.0.9.9~{name}.{ns}~{ns}.svc.cluster.local"
    return Proxy.from_node(node, {"LABELS": LABELS, "WORKLOAD_NAME": "gw"})


def gw_service(name: str, ports: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return service(name, NS, ports, selector=LABELS, **kw)


def store_with(*manifests: dict[str, Any]) -> ConfigStore:
    store = ConfigStore()
    for i, m in enumerate((GATEWAY, *manifests)):
        store.apply(up(m, doc=i))
    return store


def listen(store: ConfigStore, proxy: Proxy | None = None) -> tuple[list[int], list[str]]:
    """The gateway's listener ports and route configuration names."""
    listeners, routes = gateway_listeners_and_routes(
        view_for(store.mesh(), proxy or gateway_proxy())
    )
    ports = sorted(ls.address.socket_address.port_value for ls in listeners)
    return ports, sorted(r.name for r in routes)


def test_no_service_binds_the_server_ports() -> None:
    assert listen(store_with()) == ([80, 8000], ["http.80", "http.8000"])


def test_service_port_binds_its_target_port() -> None:
    svc = gw_service("ingress", [{"name": "http2", "port": 80, "targetPort": 8080}])
    assert listen(store_with(svc)) == ([8000, 8080], ["http.8000", "http.8080"])


def test_service_in_another_namespace_does_not_count() -> None:
    svc = gw_service("ingress", [{"name": "http2", "port": 80, "targetPort": 8080}])
    svc["metadata"]["namespace"] = "default"
    assert listen(store_with(svc)) == ([80, 8000], ["http.80", "http.8000"])


def test_first_service_by_name_wins_and_opt_out_is_skipped() -> None:
    a = gw_service("a-ingress", [{"name": "http2", "port": 80, "targetPort": 8081}])
    b = gw_service("b-ingress", [{"name": "http2", "port": 80, "targetPort": 8082}])
    assert listen(store_with(b, a))[0] == [8000, 8081]
    a["metadata"]["labels"] = {DISABLE_TRANSLATION_LABEL: "true"}
    assert listen(store_with(b, a))[0] == [8000, 8082]
    b["metadata"]["labels"] = {DISABLE_TRANSLATION_LABEL: "true"}
    assert listen(store_with(b, a))[0] == [80, 8000]


def test_named_target_port_needs_the_gateway_pod() -> None:
    svc = gw_service("ingress", [{"name": "http2", "port": 80, "targetPort": "http"}])
    assert listen(store_with(svc))[0] == [80, 8000]
    gw_pod = pod("gw-7d9f", "10.0.9.9", LABELS, ns=NS)
    container_port = {"name": "http", "containerPort": 8088}
    gw_pod["spec"]["containers"] = [{"name": "istio-proxy", "ports": [container_port]}]
    assert listen(store_with(svc, gw_pod))[0] == [8000, 8088]
    # Another workload's pod at the same address (one machine) is not the gateway's.
    assert listen(store_with(svc, gw_pod), gateway_proxy(name="other"))[0] == [80, 8000]


def test_workload_entry_port_map_of_a_service_entry() -> None:
    entry = obj(
        "ServiceEntry",
        "vm-gateway",
        NS,
        {
            "hosts": ["gateway.vm.internal"],
            "ports": [{"number": 8000, "name": "http", "protocol": "HTTP"}],
            "workloadSelector": {"labels": LABELS},
            "resolution": "STATIC",
        },
    )
    we = obj("WorkloadEntry", "gw", NS, {"address": "10.0.9.9", "ports": {"http": 18000},
                                         "labels": LABELS})  # fmt: skip
    assert listen(store_with(entry, we))[0] == [80, 18000]


def test_view_key_and_listener_follow_a_target_port_change() -> None:
    store = store_with(gw_service("ingress", [{"name": "http2", "port": 80, "targetPort": 8080}]))
    before = view_for(store.mesh(), gateway_proxy())
    store.apply(up(gw_service("ingress", [{"name": "http2", "port": 80, "targetPort": 8090}])))
    after = view_for(store.mesh(), gateway_proxy())
    assert before.key != after.key
    assert after.gateway_ports == ((80, 8090),)
    assert listen(store)[0] == [8000, 8090]
    # A gateway of the same labels elsewhere keeps its ports and does not share the view.
    other = view_for(store.mesh(), gateway_proxy(ns="edge"))
    assert other.gateway_ports == () and other.key != after.key
