"""MeshModel: the whole mesh as one immutable value that translators read and never change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meshplane.api.core.credential import TlsCredential
from meshplane.api.core.mesh_config import ExtensionProvider
from meshplane.api.errors import ValidationError
from meshplane.api.meta import Object
from meshplane.api.networking.destination_rule import DestinationRuleSpec
from meshplane.api.networking.gateway import GatewaySpec
from meshplane.api.networking.sidecar import SidecarSpec
from meshplane.api.networking.virtual_service import VirtualServiceSpec
from meshplane.api.security.authorization_policy import AuthorizationPolicySpec
from meshplane.api.security.peer_authentication import PeerAuthenticationSpec
from meshplane.api.security.request_authentication import RequestAuthenticationSpec
from meshplane.model.services import Endpoint, Service


@dataclass(frozen=True)
class MeshConfig:
    """Mesh-wide settings (Istio's MeshConfig subset that the translators read)."""

    trust_domain: str = "cluster.local"
    # Other trust domains whose identities count as this mesh's (Istio's trustDomainAliases):
    # policies naming one match the same service account in all; clients accept them.
    trust_domain_aliases: tuple[str, ...] = ()
    root_namespace: str = "istio-system"
    outbound_traffic_policy: str = "ALLOW_ANY"  # or REGISTRY_ONLY
    dns_domain_suffix: str = "svc.cluster.local"
    connect_timeout: float = 10.0
    enable_auto_mtls: bool = True
    # The system trust bundle (a file path, "" if none): what TLS origination verifies a
    # server against when a DestinationRule gives no caCertificates (Istio's
    # VERIFY_CERTIFICATE_AT_CLIENT). `serve` sets it; translators never look at the disk.
    system_ca_bundle: str = ""
    # Telemetry (Istio's accessLogFile, accessLogEncoding, enableTracing and
    # defaultConfig.tracing). Without an `istio` ConfigMap proxies log JSON to stdout and
    # trace nothing; with one, Istio's defaults apply to what it leaves out.
    access_log_file: str = "/dev/stdout"  # "" = no access log
    access_log_encoding: str = "JSON"  # or TEXT
    enable_tracing: bool = False
    zipkin_address: str = ""  # HOST:PORT of the Zipkin collector; tracing needs one
    trace_sampling: float = 1.0  # percent of requests a proxy starts a trace for
    # Istio's defaultConfig.gatewayTopology.numTrustedProxies: gateways take the client's
    # address from X-Forwarded-For, that many hops from the right (xff_num_trusted_hops).
    num_trusted_proxies: int = 0
    # Istio's extensionProviders (ext_authz over HTTP or gRPC): what CUSTOM
    # AuthorizationPolicies name in `provider.name`.
    extension_providers: tuple[ExtensionProvider, ...] = ()

    @property
    def tracing(self) -> bool:
        """Whether proxies send Zipkin spans: enabled and given a collector address."""
        return self.enable_tracing and bool(self.zipkin_address)


@dataclass(frozen=True, eq=False)
class MeshModel:
    """Every accepted object and the service registry at one `version`.

    Collections are ordered deterministically (by hostname, or by creation order
    then namespace/name for config), so translation is reproducible.
    """

    version: int
    services: Mapping[str, Service]  # hostname -> Service
    endpoints: Mapping[str, tuple[Endpoint, ...]]  # hostname -> endpoints
    destination_rules: tuple[Object[DestinationRuleSpec], ...] = ()
    virtual_services: tuple[Object[VirtualServiceSpec], ...] = ()
    gateways: tuple[Object[GatewaySpec], ...] = ()
    sidecars: tuple[Object[SidecarSpec], ...] = ()
    peer_authentications: tuple[Object[PeerAuthenticationSpec], ...] = ()  # oldest first
    authorization_policies: tuple[Object[AuthorizationPolicySpec], ...] = ()  # oldest first
    request_authentications: tuple[Object[RequestAuthenticationSpec], ...] = ()  # oldest first
    mesh_config: MeshConfig = field(default_factory=MeshConfig)
    # Warnings about accepted config (conflicts, dangling references).
    warnings: tuple[ValidationError, ...] = ()
    # Anything a later issue adds (policies) without changing this contract.
    extra: Mapping[str, Any] = field(default_factory=dict)
    # (namespace, name) -> the Secret as a TLS credential. Read by the TLS xDS port only
    # (SDS `kubernetes://NAME`); views and translators never carry it.
    credentials: Mapping[tuple[str, str], TlsCredential] = field(default_factory=dict)
