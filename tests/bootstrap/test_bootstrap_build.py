"""`meshplane bootstrap` options -> Bootstrap proto: node identity, xDS connection, ports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meshplane.bootstrap import (
    BadBootstrapOptions,
    BootstrapOptions,
    bootstrap,
    parse_labels,
    render_json,
)
from meshplane.model.proxy import Proxy

ROOT_PEM = (
    Path(__file__).parents[2] / "envoy-bootstrap" / "examples" / "example-root-cert.pem"
).read_text()


def _json(opts: BootstrapOptions) -> dict[str, Any]:
    rendered: dict[str, Any] = json.loads(render_json(bootstrap(opts)))
    return rendered


def _cluster(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in doc["static_resources"]["clusters"] if c["name"] == name)


@pytest.mark.parametrize(("ptype", "interception"), [("sidecar", "REDIRECT"), ("router", "NONE")])
def test_node_round_trips_through_the_control_planes_parser(ptype: str, interception: str) -> None:
    opts = BootstrapOptions(
        workload="reviews-v2",
        type=ptype,
        namespace="shop",
        service_account="bookinfo-reviews",
        ip="10.1.2.3",
        labels={"app": "reviews", "version": "v2"},
        interception=interception,
    )
    node = _json(opts)["node"]
    assert node["id"] == f"{ptype}~10.1.2.3~reviews-v2.shop~shop.svc.cluster.local"
    assert node["cluster"] == "reviews-v2.shop"
    proxy = Proxy.from_node(node["id"], node["metadata"])
    assert (proxy.type, proxy.ip, proxy.name, proxy.namespace) == (
        ptype,
        "10.1.2.3",
        "reviews-v2",
        "shop",
    )
    assert proxy.service_account == "bookinfo-reviews"
    assert dict(proxy.labels) == {"app": "reviews", "version": "v2"}
    assert proxy.instance_ips == ("10.1.2.3",)
    assert proxy.workload_name == "reviews-v2"
    assert proxy.interception_mode == interception


def test_plaintext_xds_cluster_is_http2_with_keepalive_and_ads_sotw() -> None:
    doc = _json(BootstrapOptions(workload="a"))
    xds = _cluster(doc, "xds-grpc")
    sock = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert sock["socket_address"] == {"address": "127.0.0.1", "port_value": 15010}
    assert "transport_socket" not in xds
    assert xds["upstream_connection_options"]["tcp_keepalive"]["keepalive_time"] == 300
    http = xds["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert "http2_protocol_options" in http["explicit_http_config"]
    dyn = doc["dynamic_resources"]
    assert dyn["ads_config"]["api_type"] == "GRPC"
    assert dyn["ads_config"]["set_node_on_first_message_only"] is True
    assert dyn["ads_config"]["grpc_services"] == [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]
    assert "ads" in dyn["cds_config"] and "ads" in dyn["lds_config"]
    assert doc["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 15000,
    }


def test_delta_switches_the_ads_api_type() -> None:
    doc = _json(BootstrapOptions(workload="a", delta=True))
    assert doc["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"


def test_tls_trusts_the_given_root_checks_the_san_and_sends_the_token() -> None:
    doc = _json(BootstrapOptions(workload="a", token="tok-123", ca_cert_pem=ROOT_PEM))
    xds = _cluster(doc, "xds-grpc")
    sock = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert sock["socket_address"]["port_value"] == 15012  # the TLS port by default
    tls = xds["transport_socket"]["typed_config"]
    assert tls["@type"].endswith("UpstreamTlsContext")
    validation = tls["common_tls_context"]["validation_context"]
    assert validation["trusted_ca"]["inline_string"] == ROOT_PEM
    assert validation["match_typed_subject_alt_names"] == [
        {"matcher": {"exact": "127.0.0.1"}, "san_type": "IP_ADDRESS"}
    ]
    grpc_service = doc["dynamic_resources"]["ads_config"]["grpc_services"][0]
    assert grpc_service["initial_metadata"] == [{"key": "authorization", "value": "Bearer tok-123"}]


def test_tls_to_a_hostname_uses_dns_sni_and_san() -> None:
    opts = BootstrapOptions(
        workload="a", ca_cert_pem=ROOT_PEM, xds_address="meshplane.istio-system.svc:15012"
    )
    xds = _cluster(_json(opts), "xds-grpc")
    assert xds["type"] == "STRICT_DNS"
    tls = xds["transport_socket"]["typed_config"]
    assert tls["sni"] == "meshplane.istio-system.svc"
    san = tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    assert san == [{"matcher": {"exact": "meshplane.istio-system.svc"}, "san_type": "DNS"}]


def test_status_listeners_route_to_admin_and_can_be_turned_off() -> None:
    doc = _json(BootstrapOptions(workload="a", ip="10.0.0.5", admin_port=15999))
    listeners = {item["name"]: item for item in doc["static_resources"]["listeners"]}
    # A REDIRECT sidecar owns its netns: 0.0.0.0 as Istio; NONE and gateways bind their IP.
    assert listeners["prometheus_stats"]["address"]["socket_address"] == {
        "address": "0.0.0.0",
        "port_value": 15090,
    }
    for kwargs in ({"interception": "NONE"}, {"type": "router"}):
        shared = _json(BootstrapOptions(workload="a", ip="10.0.0.5", **kwargs))  # type: ignore[arg-type]
        stats = next(
            x for x in shared["static_resources"]["listeners"] if x["name"] == "prometheus_stats"
        )
        assert stats["address"]["socket_address"]["address"] == "10.0.0.5"
    health = listeners["health_status"]
    hcm = health["filter_chains"][0]["filters"][0]["typed_config"]
    route = hcm["route_config"]["virtual_hosts"][0]["routes"][0]
    assert route["match"] == {"path": "/healthz/ready"}
    assert route["route"] == {"cluster": "envoy_admin_ready", "prefix_rewrite": "/ready"}
    admin_ep = _cluster(doc, "envoy_admin_ready")["load_assignment"]["endpoints"][0]
    assert admin_ep["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 15999,
    }

    off = _json(BootstrapOptions(workload="a", stats_port=0, health_port=0))
    assert off["static_resources"].get("listeners", []) == []
    assert [c["name"] for c in off["static_resources"]["clusters"]] == ["xds-grpc"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "waypoint"}, "--type"),
        ({"interception": "TPROXY"}, "--interception"),
        ({"namespace": "a.b"}, "--namespace"),
        ({"workload": "x~y"}, "--workload"),
        ({"ip": "not-an-ip"}, "--ip"),
        ({"stats_port": 70000}, "--stats-port"),
        ({"token": "t"}, "--token needs --ca-cert"),
        ({"ca_cert_pem": "garbage"}, "--ca-cert"),
        ({"xds_address": "nohostport"}, "HOST:PORT"),
        ({"xds_address": "h:0"}, "HOST:PORT"),
    ],
)
def test_bad_options_are_rejected_with_the_flag_named(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"workload": "a", **kwargs}
    with pytest.raises(BadBootstrapOptions, match=message):
        BootstrapOptions(**args)


def test_parse_labels() -> None:
    assert parse_labels("app=reviews, version=v2,") == {"app": "reviews", "version": "v2"}
    assert parse_labels("") == {}
    with pytest.raises(BadBootstrapOptions, match="key=value"):
        parse_labels("app")
