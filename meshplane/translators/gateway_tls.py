"""Gateway server TLS: the DownstreamTlsContext of a terminating server (SIMPLE, MUTUAL,
OPTIONAL_MUTUAL), the SNI names its filter chain matches, and Istio's name for its route
configuration.

Certificates come from files or from `credentialName`: then, as Istio's gateways do, from
SDS ``kubernetes://NAME`` (and the client CA of MUTUAL from ``kubernetes://NAME-cacert``),
which meshplane's TLS port serves only to a router proxy of the Secret's namespace; a new
Secret is an SDS update, with no listener change.

ISTIO_MUTUAL terminates with the gateway's own workload certificate (SDS `default`) and
requires a client certificate issued by the mesh CA (SDS `ROOTCA`), as Istio's gateways do;
a gateway without workload certificates (connected to the plaintext xDS port) leaves such a
server out, since its listener would wait for secrets that never come.
"""

from __future__ import annotations

from envoy.config.core.v3.base_pb2 import DataSource, TransportSocket
from envoy.extensions.transport_sockets.tls.v3.common_pb2 import (
    CertificateValidationContext,
    SubjectAltNameMatcher,
    TlsCertificate,
    TlsParameters,
)
from envoy.extensions.transport_sockets.tls.v3.tls_pb2 import (
    CommonTlsContext,
    DownstreamTlsContext,
)
from envoy.type.matcher.v3.string_pb2 import StringMatcher
from google.protobuf.wrappers_pb2 import BoolValue

from meshplane.api.networking.gateway import Server, ServerTLS
from meshplane.translators.mtls import mesh_common_tls_context
from meshplane.translators.protos import any_of
from meshplane.translators.upstream_tls import (
    TLS_TRANSPORT_SOCKET,
    credential_resource,
    credential_sds_secret,
    credential_validation,
)

TERMINATING_MODES = frozenset({"SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"})
PASSTHROUGH = "PASSTHROUGH"
AUTO_PASSTHROUGH = "AUTO_PASSTHROUGH"
ISTIO_MUTUAL = "ISTIO_MUTUAL"
# What a terminating HTTPS server offers in ALPN (Istio's ALPNHttp).
HTTPS_ALPN = ("h2", "http/1.1")

_VERSIONS = {
    "TLS_AUTO": TlsParameters.TLS_AUTO,
    "TLSV1_0": TlsParameters.TLSv1_0,
    "TLSV1_1": TlsParameters.TLSv1_1,
    "TLSV1_2": TlsParameters.TLSv1_2,
    "TLSV1_3": TlsParameters.TLSv1_3,
}


def https_route_name(port: int, port_name: str, gateway: str) -> str:
    """``https.PORT.PORTNAME.GATEWAY.NAMESPACE`` (Istio's gatewayRDSRouteName); `gateway`
    is ``ns/name``."""
    namespace, _, name = gateway.partition("/")
    return f"https.{port}.{port_name}.{name}.{namespace}"


def terminates(tls: ServerTLS | None, workload_certs: bool = False) -> bool:
    """True when meshplane can terminate this server's TLS: a terminating mode with a
    `credentialName` or its certificate and key as files, or ISTIO_MUTUAL on a gateway
    that has its workload certificate (`workload_certs`)."""
    if tls is not None and tls.mode == ISTIO_MUTUAL:
        return workload_certs
    return (
        tls is not None
        and tls.mode in TERMINATING_MODES
        and bool(tls.credential_name or (tls.server_certificate and tls.private_key))
    )


def server_names(server: Server) -> tuple[str, ...]:
    """SNI names a server's chain matches: its hosts without the namespace part; none
    (match any) when a host is ``*``."""
    hosts = tuple(dict.fromkeys(h.rpartition("/")[2] for h in server.hosts))
    return () if "*" in hosts else hosts


def _client_validation(tls: ServerTLS) -> CertificateValidationContext:
    return CertificateValidationContext(
        trusted_ca=DataSource(filename=tls.ca_certificates or ""),
        match_typed_subject_alt_names=[
            SubjectAltNameMatcher(
                san_type=SubjectAltNameMatcher.DNS, matcher=StringMatcher(exact=san)
            )
            for san in tls.subject_alt_names
        ],
    )


def _certificate_context(tls: ServerTLS) -> CommonTlsContext:
    """The server's own certificate and, for MUTUAL and OPTIONAL_MUTUAL, its client CA."""
    if tls.mode == ISTIO_MUTUAL:
        # Istio: the gateway's own identity, peers checked against the mesh root (and
        # their SPIFFE IDs, when subjectAltNames lists them).
        return mesh_common_tls_context((), tls.subject_alt_names)
    mutual = tls.mode in ("MUTUAL", "OPTIONAL_MUTUAL")
    common = CommonTlsContext()
    if tls.credential_name:
        common.tls_certificate_sds_secret_configs.append(
            credential_sds_secret(credential_resource(tls.credential_name))
        )
        if mutual:
            credential_validation(common, tls.credential_name, tls.subject_alt_names)
    else:
        common.tls_certificates.append(
            TlsCertificate(
                certificate_chain=DataSource(filename=tls.server_certificate or ""),
                private_key=DataSource(filename=tls.private_key or ""),
            )
        )
        if mutual and tls.ca_certificates:
            common.validation_context.CopyFrom(_client_validation(tls))
    return common


def downstream_tls_context(tls: ServerTLS, *, http: bool) -> DownstreamTlsContext:
    """The server's certificate (files or SDS), client verification for MUTUAL (required)
    and OPTIONAL_MUTUAL (checked when presented), protocol versions, and HTTP's ALPN;
    ISTIO_MUTUAL: the mesh identity and root over SDS, client certificate required."""
    common = _certificate_context(tls)
    if http:
        common.alpn_protocols.extend(HTTPS_ALPN)
    if tls.min_protocol_version or tls.max_protocol_version:
        params = common.tls_params
        if tls.min_protocol_version:
            params.tls_minimum_protocol_version = _VERSIONS[tls.min_protocol_version]
        if tls.max_protocol_version:
            params.tls_maximum_protocol_version = _VERSIONS[tls.max_protocol_version]
    return DownstreamTlsContext(
        common_tls_context=common,
        require_client_certificate=BoolValue(value=tls.mode in ("MUTUAL", ISTIO_MUTUAL)),
    )


def downstream_transport_socket(tls: ServerTLS, *, http: bool) -> TransportSocket:
    return TransportSocket(
        name=TLS_TRANSPORT_SOCKET, typed_config=any_of(downstream_tls_context(tls, http=http))
    )
