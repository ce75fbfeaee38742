"""The connection to meshplane: the `xds-grpc` cluster and the ADS config that uses it.

Mirrors Istio's bootstrap (tools/packaging/common/envoy_bootstrap.json): HTTP/2, TCP
keepalive so a dead control plane is noticed, node sent on the first message only. With a
CA certificate the cluster speaks TLS, verifies the server's SAN against the host it dials,
and sends the join token as gRPC metadata, which the TLS port requires.
"""

from __future__ import annotations

from typing import Any

from meshplane.api.formats import is_ip
from meshplane.bootstrap.options import BootstrapOptions, parse_host_port

__all__ = ["XDS_CLUSTER", "dynamic_resources", "xds_cluster"]

XDS_CLUSTER = "xds-grpc"

_HTTP2_OPTIONS = {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}},
    }
}


def xds_cluster(opts: BootstrapOptions) -> dict[str, Any]:
    """Static cluster `xds-grpc` pointing at the control plane."""
    host, port = parse_host_port(opts.xds_target)
    cluster: dict[str, Any] = {
        "name": XDS_CLUSTER,
        "type": "STATIC" if is_ip(host) else "STRICT_DNS",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": _socket(host, port)}}}
                    ]
                }
            ],
        },
        "upstream_connection_options": {"tcp_keepalive": {"keepalive_time": 300}},
        "typed_extension_protocol_options": _HTTP2_OPTIONS,
    }
    if opts.tls:
        cluster["transport_socket"] = _tls_socket(host, opts.ca_cert_pem or "")
    return cluster


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"address": host, "port_value": port}


def _tls_socket(host: str, ca_pem: str) -> dict[str, Any]:
    san_type = "IP_ADDRESS" if is_ip(host) else "DNS"
    context: dict[str, Any] = {
        "common_tls_context": {
            "alpn_protocols": ["h2"],
            "validation_context": {
                "trusted_ca": {"inline_string": ca_pem},
                "match_typed_subject_alt_names": [
                    {"san_type": san_type, "matcher": {"exact": host}}
                ],
            },
        }
    }
    if san_type == "DNS":
        context["sni"] = host
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
            "UpstreamTlsContext",
            **context,
        },
    }


def dynamic_resources(opts: BootstrapOptions) -> dict[str, Any]:
    """ADS for listeners and clusters; routes, endpoints and secrets follow over ADS too."""
    grpc_service: dict[str, Any] = {"envoy_grpc": {"cluster_name": XDS_CLUSTER}}
    if opts.token is not None:
        grpc_service["initial_metadata"] = [
            {"key": "authorization", "value": f"Bearer {opts.token}"}
        ]
    # initial_fetch_timeout 0s: wait for the control plane rather than start empty
    # (Istio does the same, so /ready means "has its config").
    ads_source = {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}
    return {
        "lds_config": dict(ads_source),
        "cds_config": dict(ads_source),
        "ads_config": {
            "api_type": "DELTA_GRPC" if opts.delta else "GRPC",
            "transport_api_version": "V3",
            "set_node_on_first_message_only": True,
            "grpc_services": [grpc_service],
        },
    }
