"""Gateway server TLS: the DownstreamTlsContext of a terminating server (SIMPLE, MUTUAL,
OPTIONAL_MUTUAL), the SNI names its filter chain matches, and Istio's name for its route
configuration.

Certificates come from files or from `credentialName`: then, as Istio's gateways do, from
SDS ``kubernetes://NAME`` (and the client CA of MUTUAL from ``kubernetes://NAME-cacert``),
which meshplane's TLS port serves only to a router proxy of the Secret's namespace; a new
Secret is an SDS update, with no listener change. ISTIO_MUTUAL is left out (the parser
warns) rather than sent without its TLS.
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
from meshplane.translators.mtls import sds_secret
from meshplane.translators.protos import any_of
from meshplane.translators.upstream_tls import (
    TLS_TRANSPORT_SOCKET,
    credential_resource,
    credential_validation,
)

TERMINATING_MODES = frozenset({"SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"})
PASSTHROUGH = "PASSTHROUGH"
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


def terminates(tls: ServerTLS | None) -> bool:
    """True when meshplane can terminate this server's TLS: a terminating mode with a
    `credentialName` or its certificate and key as files."""
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


def downstream_tls_context(tls: ServerTLS, *, http: bool) -> DownstreamTlsContext:
    """The server's certificate (files or SDS), client verification for MUTUAL (required)
    and OPTIONAL_MUTUAL (checked when presented), protocol versions, and HTTP's ALPN."""
    mutual = tls.mode in ("MUTUAL", "OPTIONAL_MUTUAL")
    common = CommonTlsContext()
    if tls.credential_name:
        common.tls_certificate_sds_secret_configs.append(
            sds_secret(credential_resource(tls.credential_name))
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
        require_client_certificate=BoolValue(value=tls.mode == "MUTUAL"),
    )


def downstream_transport_socket(tls: ServerTLS, *, http: bool) -> TransportSocket:
    return TransportSocket(
        name=TLS_TRANSPORT_SOCKET, typed_config=any_of(downstream_tls_context(tls, http=http))
    )
