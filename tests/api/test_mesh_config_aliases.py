"""MeshConfig `trustDomainAliases` from the `istio` ConfigMap: validated as Istio validates
trust domains, carried into the model next to serve's trust domain (which still decides
certificates), keyed into every view, and withdrawn with the ConfigMap."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from envoy.extensions.transport_sockets.tls.v3.tls_pb2 import UpstreamTlsContext

from meshplane.api.errors import InvalidObject
from meshplane.api.registry import parse
from meshplane.model.mesh import MeshConfig
from meshplane.model.proxy import Proxy
from meshplane.model.store import ConfigStore
from meshplane.model.views import view_for
from meshplane.sources.events import Event, Op, Origin
from meshplane.translators import translate

ORIGIN = Origin("mesh.yaml", 0, 1)
CLIENT = Proxy.from_node(
    "sidecar~10.0.0.1~web-1.default~default.svc.cluster.local",
    {
        "NAMESPACE": "default",
        "LABELS": {"app": "web"},
        "INTERCEPTION_MODE": "NONE",
        "MESHPLANE_WORKLOAD_CERTS": True,
    },
)
REVIEWS = [
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {
            "clusterIP": "10.96.0.12",
            "selector": {"app": "reviews"},
            "ports": [{"name": "http", "port": 9080}],
        },
    },
    {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "reviews-1",
            "namespace": "default",
            "labels": {"app": "reviews", "security.istio.io/tlsMode": "istio"},
        },
        "spec": {"serviceAccountName": "reviews"},
        "status": {"podIP": "10.1.0.7", "phase": "Running"},
    },
]


def config_map(mesh: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {"mesh": yaml.safe_dump(mesh)},
    }


def upsert(manifest: dict[str, Any]) -> Event:
    return Event(Op.UPSERT, manifest, ORIGIN)


def test_aliases_are_read_without_warnings() -> None:
    obj, warnings = parse(config_map({"trustDomainAliases": ["old.example", "td."]}), ORIGIN, 1)
    assert obj.spec.trust_domain_aliases == ("old.example", "td.")
    assert warnings == []


@pytest.mark.parametrize("alias", ["", "Old.Example", "a..b", "*.example", "td/ns", 7])
def test_an_alias_that_is_no_trust_domain_names_its_entry(alias: Any) -> None:
    with pytest.raises(InvalidObject) as exc:
        parse(config_map({"trustDomainAliases": ["ok.example", alias]}), ORIGIN, 1)
    errors = [e.field for e in exc.value.errors if e.severity == "error"]
    assert errors == ["data.mesh.trustDomainAliases[1]"]


def _sans(store: ConfigStore) -> list[str]:
    """The SANs the client checks for reviews (its auto mTLS transport socket)."""
    clusters = translate(view_for(store.mesh(), CLIENT)).clusters
    socket = clusters["outbound|9080||reviews.default.svc.cluster.local"]
    context = UpstreamTlsContext()
    socket.transport_socket_matches[0].transport_socket.typed_config.Unpack(context)
    validation = context.common_tls_context.combined_validation_context.default_validation_context
    return [m.matcher.exact for m in validation.match_typed_subject_alt_names]


def test_aliases_apply_live_change_the_view_and_the_client_sans() -> None:
    store = ConfigStore(MeshConfig(trust_domain="new.example"))
    for manifest in REVIEWS:
        store.apply(upsert(manifest))
    before = view_for(store.mesh(), CLIENT)
    assert _sans(store) == ["spiffe://new.example/ns/default/sa/reviews"]

    store.apply(upsert(config_map({"trustDomainAliases": ["old.example"]})))
    mesh_config = store.mesh().mesh_config
    assert mesh_config.trust_domain == "new.example"
    assert mesh_config.trust_domain_aliases == ("old.example",)
    assert view_for(store.mesh(), CLIENT).key != before.key
    assert _sans(store) == [
        "spiffe://new.example/ns/default/sa/reviews",
        "spiffe://old.example/ns/default/sa/reviews",
    ]

    store.apply(Event(Op.DELETE, config_map({}), ORIGIN))
    assert store.mesh().mesh_config.trust_domain_aliases == ()
    assert view_for(store.mesh(), CLIENT).key == before.key


def test_a_different_trust_domain_is_still_ignored_and_points_at_aliases() -> None:
    store = ConfigStore(MeshConfig(trust_domain="old.example"))
    store.apply(upsert(config_map({"trustDomain": "new.example"})))
    (warning,) = [w for w in store.warnings() if w.field == "data.mesh.trustDomain"]
    assert "trustDomainAliases" in warning.reason
    assert store.mesh().mesh_config.trust_domain == "old.example"
    assert store.mesh().mesh_config.trust_domain_aliases == ()
