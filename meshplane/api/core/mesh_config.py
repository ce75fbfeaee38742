"""MeshConfigSpec: the fields of Istio's MeshConfig (ConfigMap `istio`, key `mesh`) that
meshplane reads.

Every field is None when the user left it out, so the model can tell "not set" (Istio's
default applies) from an explicit value.
"""

from __future__ import annotations

from dataclasses import dataclass

MESH_CONFIGMAP_NAME = "istio"
MESH_CONFIGMAP_NAMESPACE = "istio-system"  # istiod's namespace, where Istio reads it from
MESH_CONFIGMAP_KEY = "mesh"


@dataclass(frozen=True)
class MeshConfigSpec:
    """MeshConfig as written; see the Istio names in the comments."""

    access_log_file: str | None = None  # accessLogFile: "" off, "/dev/stdout", a path
    access_log_encoding: str | None = None  # accessLogEncoding: JSON | TEXT
    enable_tracing: bool | None = None  # enableTracing
    zipkin_address: str | None = None  # defaultConfig.tracing.zipkin.address (HOST:PORT)
    trace_sampling: float | None = None  # defaultConfig.tracing.sampling (percent)
    outbound_traffic_policy: str | None = None  # outboundTrafficPolicy.mode
    root_namespace: str | None = None  # rootNamespace
    trust_domain: str | None = None  # trustDomain (serve --trust-domain decides)
    num_trusted_proxies: int | None = None  # defaultConfig.gatewayTopology.numTrustedProxies
    trust_domain_aliases: tuple[str, ...] | None = None  # trustDomainAliases
    # extensionProviders: the external authorizers CUSTOM AuthorizationPolicies name.
    extension_providers: tuple[ExtensionProvider, ...] | None = None


@dataclass(frozen=True)
class ExtensionProvider:
    """One `extensionProviders[]` entry of kind envoyExtAuthzHttp (`grpc` False) or
    envoyExtAuthzGrpc (`grpc` True). `service` is a hostname of the registry (a leading
    ``NAMESPACE/`` is dropped), `timeout` seconds (None: Istio's 600 s placeholder)."""

    name: str
    grpc: bool
    service: str
    port: int
    timeout: float | None = None
    fail_open: bool = False
    status_on_error: int | None = None
    # HTTP only.
    path_prefix: str = ""
    include_request_headers_in_check: tuple[str, ...] = ()
    headers_to_upstream_on_allow: tuple[str, ...] = ()
    headers_to_downstream_on_deny: tuple[str, ...] = ()
    headers_to_downstream_on_allow: tuple[str, ...] = ()
