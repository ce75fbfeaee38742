"""Istio mutual TLS between sidecars: the server side's inbound filter chains per
PeerAuthentication mode, and the client side's transport sockets (auto mTLS and
DestinationRule ISTIO_MUTUAL).

Certificates are never inlined: both sides reference the SDS secrets `default` (workload
certificate and key) and `ROOTCA` (trust bundle) over the proxy's ADS stream, which meshplane
serves only to a proxy authenticated on the TLS port, for its own identity. A proxy without
them (`view.workload_certs` false) gets no SDS reference unless a policy demands mTLS
(STRICT, ISTIO_MUTUAL): then the listener or cluster waits for secrets that never come,
which refuses traffic rather than sending it in plaintext.

Server side (Istio's filterchain_options.go), per workload port:
- STRICT: chains matching ``transport_protocol: tls`` with an Istio ALPN only;
- PERMISSIVE: those plus a ``raw_buffer`` chain (and, on TCP ports, a chain for TLS that is
  not Istio's, passed through as the application's own);
- DISABLE: the plaintext chain only.
Istio's ``istio.alpn`` HTTP filter is not in upstream Envoy, so clients put the
``istio-http/1.1`` / ``istio-h2`` ALPNs in the cluster's TLS context directly.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3.base_pb2 import TransportSocket
from envoy.config.core.v3.config_source_pb2 import V3, AggregatedConfigSource, ConfigSource
from envoy.config.listener.v3.listener_components_pb2 import FilterChain, ListenerFilter
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.extensions.filters.listener.tls_inspector.v3.tls_inspector_pb2 import TlsInspector
from envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2 import (  # noqa: E501
    HttpConnectionManager,
)
from envoy.extensions.transport_sockets.raw_buffer.v3.raw_buffer_pb2 import RawBuffer
from envoy.extensions.transport_sockets.tls.v3.common_pb2 import (
    CertificateValidationContext,
    SubjectAltNameMatcher,
)
from envoy.extensions.transport_sockets.tls.v3.secret_pb2 import SdsSecretConfig
from envoy.extensions.transport_sockets.tls.v3.tls_pb2 import (
    CommonTlsContext,
    DownstreamTlsContext,
    UpstreamTlsContext,
)
from envoy.type.matcher.v3.string_pb2 import StringMatcher
from google.protobuf.wrappers_pb2 import BoolValue

from meshplane.api.networking.destination_rule import ClientTLS
from meshplane.model.scope import ProxyView
from meshplane.model.services import Service
from meshplane.translators.names import is_http, is_http2
from meshplane.translators.protos import any_of

WORKLOAD_CERT_SECRET = "default"
ROOT_CA_SECRET = "ROOTCA"
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
RAW_BUFFER_TRANSPORT_SOCKET = "envoy.transport_sockets.raw_buffer"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
# (listeners.py has these too, but it imports clusters.py, which imports this module.)
HCM_FILTER = "envoy.filters.network.http_connection_manager"
# Endpoint metadata namespace Envoy matches `transport_socket_matches` against.
TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match"
TLS_MODE_LABEL = "security.istio.io/tlsMode"

# Istio's ALPN values (pilot/pkg/networking/util and listener.go allIstioMtlsALPNs).
ALPN_HTTP = ("istio-http/1.0", "istio-http/1.1", "istio-h2")
ALPN_TCP = ("istio-peer-exchange", "istio")
ALL_ISTIO_ALPNS = ("istio", "istio-peer-exchange", *ALPN_HTTP)
# What the server side negotiates (Istio's ALPNHttp / ALPNDownstreamWithMxc).
_DOWNSTREAM_ALPN_HTTP = ("h2", "http/1.1")
_DOWNSTREAM_ALPN_TCP = ("istio-peer-exchange", "h2", "http/1.1")

# Client-side mTLS decisions carried by a ClusterPlan.
MTLS_NONE = ""
MTLS_AUTO = "auto"  # transport_socket_matches on the endpoint's tlsMode
MTLS_ISTIO = "istio"  # ISTIO_MUTUAL: always mTLS


def sds_secret(name: str) -> SdsSecretConfig:
    """A reference to secret `name` over ADS. No initial-fetch timeout: a proxy that never
    gets its certificate keeps refusing rather than starting without it."""
    source = ConfigSource(ads=AggregatedConfigSource(), resource_api_version=V3)
    source.initial_fetch_timeout.SetInParent()
    return SdsSecretConfig(name=name, sds_config=source)


def mesh_common_tls_context(alpn: Sequence[str], sans: Sequence[str] = ()) -> CommonTlsContext:
    """Workload certificate from `default`, peers verified against `ROOTCA` (and, when
    given, their SPIFFE URI SANs)."""
    common = CommonTlsContext(
        tls_certificate_sds_secret_configs=[sds_secret(WORKLOAD_CERT_SECRET)],
        alpn_protocols=list(alpn),
    )
    combined = common.combined_validation_context
    combined.default_validation_context.CopyFrom(
        CertificateValidationContext(match_typed_subject_alt_names=[san_matcher(s) for s in sans])
    )
    combined.validation_context_sds_secret_config.CopyFrom(sds_secret(ROOT_CA_SECRET))
    return common


def san_matcher(san: str) -> SubjectAltNameMatcher:
    """An exact SAN matcher of the type `san` looks like: a SPIFFE ID (or any URI), an IP
    address, else a DNS name (a ServiceEntry's subjectAltNames may be any of them)."""
    if "://" in san:
        kind = SubjectAltNameMatcher.URI
    else:
        try:
            ipaddress.ip_address(san)
            kind = SubjectAltNameMatcher.IP_ADDRESS
        except ValueError:
            kind = SubjectAltNameMatcher.DNS
    return SubjectAltNameMatcher(san_type=kind, matcher=StringMatcher(exact=san))


# -- server side -------------------------------------------------------------------------


def effective_mode(view: ProxyView, port: int | None) -> str:
    """The mode a port is served in (`None`: a port no portLevelMtls names, as undeclared
    ports are). Without certificates PERMISSIVE can only be plaintext; STRICT stays STRICT
    (and refuses until certificates arrive)."""
    mode = view.inbound_mtls.mode if port is None else view.inbound_mtls.mode_for(port)
    if not view.workload_certs and mode == "PERMISSIVE":
        return "DISABLE"
    return mode


def downstream_tls_socket(protocol: str) -> TransportSocket:
    alpn = _DOWNSTREAM_ALPN_HTTP if is_http(protocol) else _DOWNSTREAM_ALPN_TCP
    context = DownstreamTlsContext(
        common_tls_context=mesh_common_tls_context(alpn),
        require_client_certificate=BoolValue(value=True),
    )
    return TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=any_of(context))


def _forward_client_identity(chain: FilterChain) -> None:
    """Inbound HTTP over mTLS: the app sees the caller's SPIFFE ID in XFCC."""
    for network_filter in chain.filters:
        if network_filter.name != HCM_FILTER:
            continue
        hcm = HttpConnectionManager()
        network_filter.typed_config.Unpack(hcm)
        hcm.forward_client_cert_details = HttpConnectionManager.APPEND_FORWARD
        hcm.set_current_client_cert_details.uri = True
        network_filter.typed_config.CopyFrom(any_of(hcm))


def mtls_chain(base: FilterChain, protocol: str, suffix: str) -> FilterChain:
    """`base` for Istio mTLS clients only: TLS with an Istio ALPN, terminated with the
    workload certificate, the client's certificate required."""
    chain = FilterChain()
    chain.CopyFrom(base)
    chain.name = f"{base.name}{suffix}"
    chain.filter_chain_match.transport_protocol = "tls"
    chain.filter_chain_match.application_protocols.extend(ALL_ISTIO_ALPNS)
    chain.transport_socket.CopyFrom(downstream_tls_socket(protocol))
    _forward_client_identity(chain)
    return chain


def _plain_chain(base: FilterChain, transport: str, suffix: str) -> FilterChain:
    chain = FilterChain()
    chain.CopyFrom(base)
    chain.name = f"{base.name}{suffix}"
    chain.filter_chain_match.transport_protocol = transport
    return chain


def inbound_mtls_chains(
    view: ProxyView, port: int, protocol: str, build: Callable[[], FilterChain]
) -> list[FilterChain]:
    """The filter chains of one inbound port in its mTLS mode; `build` makes the plaintext
    chain (matching the port or not) that the mTLS variants are derived from."""
    base = build()
    mode = effective_mode(view, port)
    if mode == "DISABLE":
        return [base]
    chains = [mtls_chain(base, protocol, "-mtls" if mode == "PERMISSIVE" else "")]
    if mode == "PERMISSIVE":
        chains.append(_plain_chain(base, "raw_buffer", ""))
        if not is_http(protocol):
            # TLS that is not Istio's: the application's own, passed through untouched.
            chains.append(_plain_chain(base, "tls", "-tls-passthrough"))
    return chains


def add_tls_inspector(result: Listener) -> None:
    """Chains matching on transport protocol or ALPN need the tls_inspector."""
    chains = [*result.filter_chains, result.default_filter_chain]
    if not any(c.filter_chain_match.transport_protocol for c in chains):
        return
    if not any(f.name == TLS_INSPECTOR for f in result.listener_filters):
        result.listener_filters.append(
            ListenerFilter(name=TLS_INSPECTOR, typed_config=any_of(TlsInspector()))
        )


# -- client side -------------------------------------------------------------------------


def client_mtls(
    view: ProxyView, service: Service, tls: ClientTLS | None, original_dst: bool
) -> str:
    """How an outbound cluster speaks to its endpoints: MTLS_ISTIO for ISTIO_MUTUAL,
    MTLS_AUTO (Istio's auto mTLS) when the DestinationRule sets no TLS, the service is in
    the mesh and this proxy has a certificate; else MTLS_NONE (DISABLE, SIMPLE, MUTUAL are
    the DestinationRule's own)."""
    if tls is not None:
        return MTLS_ISTIO if tls.mode.upper() == "ISTIO_MUTUAL" else MTLS_NONE
    auto = view.mesh.enable_auto_mtls and view.workload_certs and not original_dst
    return MTLS_AUTO if auto and service.location != "MESH_EXTERNAL" else MTLS_NONE


def istio_sni(port: int, subset: str, hostname: str) -> str:
    """Istio's SNI for mesh mTLS: ``outbound_.PORT_.SUBSET_.HOST``."""
    return f"outbound_.{port}_.{subset}_.{hostname}"


def client_alpn(protocol: str) -> tuple[str, ...]:
    """ALPNs a client offers: the Istio HTTP marker (what the istio.alpn filter would set),
    "istio", and the plain protocol; for TCP, Istio's peer-exchange pair."""
    if is_http2(protocol):
        return ("istio-h2", "istio", "h2")
    if is_http(protocol):
        return ("istio-http/1.1", "istio", "http/1.1")
    return ALPN_TCP


def istio_upstream_socket(sni: str, protocol: str, sans: Sequence[str]) -> TransportSocket:
    context = UpstreamTlsContext(
        sni=sni, common_tls_context=mesh_common_tls_context(client_alpn(protocol), sans)
    )
    return TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=any_of(context))


def apply_client_mtls(
    cluster: Cluster,
    mode: str,
    *,
    sni: str,
    protocol: str,
    sans: Sequence[str],
) -> None:
    """Set the cluster's transport socket (ISTIO_MUTUAL) or socket matches (auto mTLS)."""
    if mode == MTLS_NONE:
        return
    socket = istio_upstream_socket(sni, protocol, sans)
    if mode == MTLS_ISTIO:
        cluster.transport_socket.CopyFrom(socket)
        return
    istio = cluster.transport_socket_matches.add(name="tlsMode-istio", transport_socket=socket)
    istio.match.update({"tlsMode": "istio"})
    cluster.transport_socket_matches.add(
        name="tlsMode-disabled",
        transport_socket=TransportSocket(
            name=RAW_BUFFER_TRANSPORT_SOCKET, typed_config=any_of(RawBuffer())
        ),
    ).match.SetInParent()
