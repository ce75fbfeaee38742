"""`defaultConfig.gatewayTopology.numTrustedProxies` in Istio's mesh config: parsed with
errors that name the field, defaulted to 0, and put on gateway HCMs only
(`xff_num_trusted_hops`), re-translating a gateway when it changes."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2 import (  # noqa: E501
    HttpConnectionManager,
)

from meshplane.api.errors import InvalidObject
from meshplane.api.registry import parse
from meshplane.model.proxy import Proxy
from meshplane.model.store import ConfigStore
from meshplane.model.views import view_for
from meshplane.sources.events import Event, Op, Origin
from meshplane.translators import translate

ORIGIN = Origin("mesh.yaml", 0, 1)


def config_map(mesh: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {"mesh": yaml.safe_dump(mesh)},
    }


def topology(value: Any, **more: Any) -> dict[str, Any]:
    return {"defaultConfig": {"gatewayTopology": {"numTrustedProxies": value, **more}}}


def test_num_trusted_proxies_is_read_and_other_topology_fields_warn() -> None:
    obj, warnings = parse(config_map(topology(2, forwardClientCertDetails="SANITIZE")), ORIGIN, 1)
    assert obj.spec.num_trusted_proxies == 2
    assert [f"{w.field}: {w.reason}" for w in warnings] == [
        "data.mesh.defaultConfig.gatewayTopology.forwardClientCertDetails: "
        "not supported yet, ignored"
    ]
    obj, _ = parse(config_map({"defaultConfig": {"tracing": {"sampling": 5}}}), ORIGIN, 1)
    assert obj.spec.num_trusted_proxies is None and obj.spec.trace_sampling == 5.0


@pytest.mark.parametrize("value", [-1, "1", 2**32, 1.5], ids=["negative", "string", "big", "float"])
def test_bad_num_trusted_proxies_names_its_field(value: Any) -> None:
    with pytest.raises(InvalidObject) as exc:
        parse(config_map(topology(value)), ORIGIN, 1)
    assert [e.field for e in exc.value.errors if e.severity == "error"] == [
        "data.mesh.defaultConfig.gatewayTopology.numTrustedProxies"
    ]


GATEWAY = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "Gateway",
    "metadata": {"name": "ingress", "namespace": "istio-system"},
    "spec": {
        "selector": {"istio": "ingressgateway"},
        "servers": [{"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
    },
}
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 9080}]},
}
GATEWAY_NODE = "router~10.0.9.9~gw.istio-system~istio-system.svc.cluster.local"
SIDECAR_NODE = "sidecar~10.0.0.5~app.default~default.svc.cluster.local"


def hcm_hops(listeners: dict[str, Listener]) -> set[int]:
    """xff_num_trusted_hops of every HCM in these listeners."""
    found = set()
    for listener in listeners.values():
        for chain in listener.filter_chains:
            for f in chain.filters:
                hcm = HttpConnectionManager()
                if f.typed_config.Unpack(hcm):
                    found.add(hcm.xff_num_trusted_hops)
    return found


def test_only_gateway_hcms_trust_the_hops_and_a_change_retranslates() -> None:
    store = ConfigStore()
    store.apply(Event(Op.UPSERT, GATEWAY, Origin("gw.yaml", 0, 1)))
    store.apply(Event(Op.UPSERT, SERVICE, Origin("web.yaml", 0, 1)))
    gateway = Proxy.from_node(GATEWAY_NODE, {"LABELS": {"istio": "ingressgateway"}})
    sidecar = Proxy.from_node(SIDECAR_NODE, {"LABELS": {"app": "app"}})
    assert hcm_hops(translate(view_for(store.mesh(), gateway)).listeners) == {0}
    store.apply(Event(Op.UPSERT, config_map(topology(1)), ORIGIN))
    assert hcm_hops(translate(view_for(store.mesh(), gateway)).listeners) == {1}
    assert hcm_hops(translate(view_for(store.mesh(), sidecar)).listeners) == {0}
    store.apply(Event(Op.DELETE, config_map(topology(1)), ORIGIN))
    assert hcm_hops(translate(view_for(store.mesh(), gateway)).listeners) == {0}
