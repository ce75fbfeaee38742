"""Istio's mesh config ConfigMap (istio-system/istio, `data.mesh`): parsed with errors that
name the field, carried into the model's MeshConfig, applied and withdrawn live, and keyed
into every proxy's view so a change re-translates it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from meshplane.api.core.mesh_config import MeshConfigSpec
from meshplane.api.errors import InvalidObject
from meshplane.api.registry import UnsupportedKind, parse
from meshplane.model.mesh import MeshConfig
from meshplane.model.proxy import Proxy
from meshplane.model.store import ConfigStore
from meshplane.model.views import view_for
from meshplane.sources.events import Event, Op, Origin
from meshplane.translators import TranslationMemo, translate

ORIGIN = Origin("mesh.yaml", 0, 1)


def config_map(mesh: Any, name: str = "istio", namespace: str = "istio-system") -> dict[str, Any]:
    text = mesh if isinstance(mesh, str) else yaml.safe_dump(mesh)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"mesh": text},
    }


def parsed(mesh: Any) -> tuple[MeshConfigSpec, list[str]]:
    obj, warnings = parse(config_map(mesh), ORIGIN, 1)
    return obj.spec, [f"{w.field}: {w.reason}" for w in warnings]


def test_fields_meshplane_reads() -> None:
    spec, warnings = parsed(
        {
            "accessLogFile": "/dev/stdout",
            "accessLogEncoding": "TEXT",
            "enableTracing": True,
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
            "defaultConfig": {
                "tracing": {"sampling": 100, "zipkin": {"address": "zipkin.istio-system:9411"}}
            },
        }
    )
    assert warnings == []
    assert spec == MeshConfigSpec(
        access_log_file="/dev/stdout",
        access_log_encoding="TEXT",
        enable_tracing=True,
        zipkin_address="zipkin.istio-system:9411",
        trace_sampling=100.0,
        outbound_traffic_policy="REGISTRY_ONLY",
    )


def test_unknown_mesh_config_fields_warn_and_the_rest_applies() -> None:
    spec, warnings = parsed(
        {
            "enablePrometheusMerge": True,
            "accessLogFile": "",
            "defaultConfig": {
                "discoveryAddress": "istiod.istio-system.svc:15012",
                "tracing": {"zipkin": {"address": "10.0.0.9:9411"}, "max_path_tag_length": 99},
            },
        }
    )
    assert spec.access_log_file == "" and spec.zipkin_address == "10.0.0.9:9411"
    assert warnings == [
        "data.mesh.enablePrometheusMerge: not supported yet, ignored",
        "data.mesh.defaultConfig.discoveryAddress: ignored: proxies connect where "
        "`meshplane bootstrap --xds-address` says",
        "data.mesh.defaultConfig.tracing.max_path_tag_length: not supported yet, ignored",
    ]


@pytest.mark.parametrize(
    ("mesh", "fields"),
    [
        ({"accessLogEncoding": "XML"}, {"data.mesh.accessLogEncoding"}),
        ({"enableTracing": "yes"}, {"data.mesh.enableTracing"}),
        (
            {"defaultConfig": {"tracing": {"sampling": 101}}},
            {"data.mesh.defaultConfig.tracing.sampling"},
        ),
        (
            {"defaultConfig": {"tracing": {"zipkin": {"address": "zipkin:http"}}}},
            {"data.mesh.defaultConfig.tracing.zipkin.address"},
        ),
        (
            {"defaultConfig": {"tracing": {"zipkin": {"address": "bad_host!:9411"}}}},
            {"data.mesh.defaultConfig.tracing.zipkin.address"},
        ),
        ({"outboundTrafficPolicy": {"mode": "OPEN"}}, {"data.mesh.outboundTrafficPolicy.mode"}),
        ("accessLogFile: [unclosed", {"data.mesh"}),
        ("- a list", {"data.mesh"}),
    ],
    ids=["encoding", "tracing-flag", "sampling", "port", "host", "outbound", "yaml", "not-map"],
)
def test_bad_values_name_their_field(mesh: Any, fields: set[str]) -> None:
    with pytest.raises(InvalidObject) as exc:
        parse(config_map(mesh), ORIGIN, 1)
    assert {e.field for e in exc.value.errors if e.severity == "error"} == fields
    assert all(e.kind == "ConfigMap" and e.name == "istio" for e in exc.value.errors)


@pytest.mark.parametrize(
    ("name", "namespace"), [("istio", "default"), ("app-settings", "istio-system")]
)
def test_other_config_maps_are_not_mesh_config(name: str, namespace: str) -> None:
    with pytest.raises(UnsupportedKind) as exc:
        parse(config_map("not: [yaml", name, namespace), ORIGIN, 1)
    assert exc.value.severity == "ignore"


SIDECAR = Proxy.from_node(
    "sidecar~10.0.0.1~web-1.default~default.svc.cluster.local",
    {"NAMESPACE": "default", "LABELS": {"app": "web"}, "INTERCEPTION_MODE": "NONE"},
)
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "reviews", "namespace": "default"},
    "spec": {"clusterIP": "10.96.0.12", "ports": [{"name": "http", "port": 9080}]},
}
TRACING = {
    "accessLogFile": "/dev/stdout",
    "accessLogEncoding": "JSON",
    "defaultConfig": {"tracing": {"sampling": 100, "zipkin": {"address": "127.0.0.1:9411"}}},
}


def upsert(manifest: dict[str, Any]) -> Event:
    return Event(Op.UPSERT, manifest, ORIGIN)


def test_store_applies_the_config_map_live_and_keeps_the_last_good_one() -> None:
    store = ConfigStore(MeshConfig(trust_domain="example.org"))
    store.apply(upsert(SERVICE))
    assert store.mesh().mesh_config == MeshConfig(trust_domain="example.org")

    change = store.apply(upsert(config_map(TRACING)))
    assert not change.is_empty
    mesh_config = store.mesh().mesh_config
    assert mesh_config.trust_domain == "example.org"  # from serve, untouched
    assert mesh_config.tracing and mesh_config.zipkin_address == "127.0.0.1:9411"
    assert mesh_config.trace_sampling == 100.0 and mesh_config.access_log_file == "/dev/stdout"

    # A bad edit is reported, and the last good version stays in force.
    store.apply(upsert(config_map({**TRACING, "accessLogEncoding": "XML"})))
    assert [e.field for e in store.errors()] == ["data.mesh.accessLogEncoding"]
    assert store.mesh().mesh_config == mesh_config

    # Istio's defaults for what the ConfigMap leaves out: no access log, 1% sampling.
    store.apply(upsert(config_map({"defaultConfig": TRACING["defaultConfig"]})))
    assert store.errors() == []
    assert store.mesh().mesh_config.access_log_file == ""
    assert store.mesh().mesh_config.enable_tracing is True

    # Deleted: back to serve's options.
    store.apply(Event(Op.DELETE, config_map({}), ORIGIN))
    assert store.mesh().mesh_config == MeshConfig(trust_domain="example.org")


def test_a_trust_domain_other_than_serves_is_a_warning() -> None:
    store = ConfigStore()
    store.apply(upsert(config_map({"trustDomain": "other.org", "enableTracing": True})))
    warnings = {(w.field, w.reason.split(":")[0]) for w in store.warnings()}
    assert ("data.mesh.trustDomain", "ignored") in warnings
    assert (
        "data.mesh.enableTracing",
        "no effect without defaultConfig.tracing.zipkin.address (nothing is traced)",
    ) in warnings
    assert store.mesh().mesh_config.trust_domain == "cluster.local"
    assert not store.mesh().mesh_config.tracing


def test_a_mesh_config_change_changes_the_view_key_and_the_translation() -> None:
    store = ConfigStore()
    store.apply(upsert(SERVICE))
    memo = TranslationMemo()
    before = view_for(store.mesh(), SIDECAR)
    plain = translate(before, memo)
    store.apply(upsert(config_map(TRACING)))
    after = view_for(store.mesh(), SIDECAR)
    traced = translate(after, memo)
    assert before.key != after.key
    assert "zipkin" not in plain.clusters and "zipkin" in traced.clusters
    listener = traced.listeners["127.0.0.1_9080"]
    hcm = listener.filter_chains[0].filters[0].typed_config
    assert b"envoy.tracers.zipkin" in hcm.value
