"""ProxyView: exactly what one proxy can see. Its `key` is the snapshot cache key, so
proxies with the same view share one translated snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from meshplane.api.meta import ConfigKey, Object
from meshplane.api.networking.destination_rule import DestinationRuleSpec
from meshplane.api.networking.gateway import GatewaySpec
from meshplane.api.networking.sidecar import SidecarSpec
from meshplane.api.networking.virtual_service import VirtualServiceSpec
from meshplane.api.security.authorization_policy import AuthorizationPolicySpec
from meshplane.api.security.peer_authentication import PeerAuthenticationSpec
from meshplane.api.security.request_authentication import RequestAuthenticationSpec
from meshplane.model.mesh import MeshConfig
from meshplane.model.services import Endpoint, Service


@dataclass(frozen=True)
class InboundPort:
    """A port this workload serves: `port` is the workload's (target) port; Istio names the
    inbound cluster after it (``inbound|PORT||``)."""

    port: int
    protocol: str
    service_port: int
    hostnames: tuple[str, ...] = ()


@dataclass(frozen=True)
class InboundMtls:
    """The PeerAuthentication outcome for one workload: `mode` (DISABLE, PERMISSIVE or
    STRICT, never UNSET) for its ports, with `ports` overriding it per workload port."""

    mode: str = "PERMISSIVE"
    ports: tuple[tuple[int, str], ...] = ()  # (workload port, mode), sorted

    def mode_for(self, port: int) -> str:
        return dict(self.ports).get(port, self.mode)


@dataclass(frozen=True, eq=False)
class ProxyView:
    """The translator's whole input for one proxy.

    Everything that changes translated output, except endpoints, is folded into
    `key`; endpoints are carried for EDS but kept out of the key so an
    endpoint-only change keeps proxies on the same snapshot and pushes EDS only.
    """

    key: str
    proxy_type: str  # sidecar | router
    namespace: str
    interception_mode: str  # REDIRECT | NONE
    services: tuple[Service, ...]  # visible, sorted by hostname
    # hostname -> the DestinationRule that applies to it for this proxy (Istio's lookup order)
    destination_rules: Mapping[str, Object[DestinationRuleSpec]]
    # visible VirtualServices bound to this proxy ("mesh" for sidecars, its Gateways for routers)
    virtual_services: tuple[Object[VirtualServiceSpec], ...]
    gateways: tuple[Object[GatewaySpec], ...] = ()  # routers: Gateways whose selector matches
    sidecar: Object[SidecarSpec] | None = None  # the Sidecar resource that applies, if any
    inbound: tuple[InboundPort, ...] = ()
    mesh: MeshConfig = field(default_factory=MeshConfig)
    endpoints: Mapping[str, tuple[Endpoint, ...]] = field(default_factory=dict)
    # The VirtualService `sourceLabels` selectors (as `label_key`s) that this proxy's labels
    # match: Istio applies such matches in the control plane. Part of `key`.
    source_labels: frozenset[tuple[tuple[str, str], ...]] = frozenset()
    # Security (issue 4). `workload_certs`: the proxy is served its workload certificate and
    # trust bundle (SDS `default`/`ROOTCA`), so mTLS can be configured; without them any
    # SDS reference would keep its listeners and clusters warming forever. All in `key`.
    workload_certs: bool = False
    inbound_mtls: InboundMtls = field(default_factory=InboundMtls)
    # hostname -> SPIFFE IDs of the service accounts behind it (SAN checks for mTLS).
    service_identities: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # AuthorizationPolicies and RequestAuthentications that apply to this proxy, oldest
    # first (model/security_policies.py). In `key`.
    authorization_policies: tuple[Object[AuthorizationPolicySpec], ...] = ()
    request_authentications: tuple[Object[RequestAuthenticationSpec], ...] = ()
    # Routers: the `credentialName`s of its Gateways that its namespace's Secrets provide
    # (names only, model/gateway_credentials.py); a server needing another is left out.
    # None: not known (views built by hand), every credential assumed present. In `key`.
    credential_names: frozenset[str] | None = None
    # The mesh's PeerAuthentications, oldest first, when any of them can DISABLE mTLS (else
    # empty): auto mTLS sends plaintext to an endpoint whose own policy is DISABLE, so EDS
    # depends on them (translators/endpoint_mtls.py). In `key`.
    peer_authentications: tuple[Object[PeerAuthenticationSpec], ...] = ()
    # Routers: (Gateway server port, port the listener binds) where they differ, because a
    # Service in front of the gateway maps that port to another targetPort (Istio's
    # resolvePorts; model/gateway_ports.py). Per proxy, like `inbound`. In `key`.
    gateway_ports: tuple[tuple[int, int], ...] = ()
    # The networking config this view was built from (VirtualServices and their delegates,
    # DestinationRules including those merged into another, Gateways, the Sidecar): what
    # /debug/config_status counts as in this proxy's scope. Not in `key` (what it lists
    # already is).
    configs: frozenset[ConfigKey] = frozenset()


LabelKey = tuple[tuple[str, str], ...]


def label_key(labels: Mapping[str, str]) -> LabelKey:
    """A label map as a sorted, hashable tuple: how `ProxyView.source_labels` names a
    VirtualService `sourceLabels` selector."""
    return tuple(sorted(labels.items()))
