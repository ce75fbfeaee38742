"""DestinationRule `tls` -> the upstream transport socket of a cluster (TLS origination).

DISABLE, SIMPLE and MUTUAL with certificate file paths are built here. ISTIO_MUTUAL and
`credentialName` need SDS (the workload certificate `default`, the trust bundle `ROOTCA`,
secrets served by meshplane) and belong to the security issue: until then such clusters get
no transport socket rather than a half-built TLS context Envoy would reject or, worse, a
context that skips verification silently.
"""

from __future__ import annotations

from envoy.config.core.v3.base_pb2 import DataSource, TransportSocket
from envoy.extensions.transport_sockets.tls.v3.common_pb2 import (
    CertificateValidationContext,
    SubjectAltNameMatcher,
    TlsCertificate,
)
from envoy.extensions.transport_sockets.tls.v3.tls_pb2 import CommonTlsContext, UpstreamTlsContext
from envoy.type.matcher.v3.string_pb2 import StringMatcher

from meshplane.api.networking.destination_rule import ClientTLS
from meshplane.translators.protos import any_of

TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"


def validation_context(tls: ClientTLS) -> CertificateValidationContext | None:
    """Trust anchors and SAN checks; None when verification is off or has no CA to use."""
    if tls.insecure_skip_verify or not tls.ca_certificates:
        return None
    return CertificateValidationContext(
        trusted_ca=DataSource(filename=tls.ca_certificates),
        match_typed_subject_alt_names=[
            SubjectAltNameMatcher(
                san_type=SubjectAltNameMatcher.DNS, matcher=StringMatcher(exact=san)
            )
            for san in tls.subject_alt_names
        ],
    )


def upstream_tls_context(tls: ClientTLS, hostname: str) -> UpstreamTlsContext:
    """SIMPLE (server verified) or MUTUAL (plus a client certificate from files)."""
    common = CommonTlsContext()
    context = validation_context(tls)
    if context is not None:
        common.validation_context.CopyFrom(context)
    if tls.mode.upper() == "MUTUAL" and tls.client_certificate and tls.private_key:
        common.tls_certificates.append(
            TlsCertificate(
                certificate_chain=DataSource(filename=tls.client_certificate),
                private_key=DataSource(filename=tls.private_key),
            )
        )
    # SNI defaults to the destination host: TLS servers outside the mesh (the usual reason
    # to originate TLS) pick their certificate by it. Wildcard hosts have no single name.
    sni = tls.sni or ("" if hostname.startswith("*") else hostname)
    return UpstreamTlsContext(sni=sni, common_tls_context=common)


def upstream_transport_socket(tls: ClientTLS | None, hostname: str) -> TransportSocket | None:
    """The cluster's transport socket, or None for plaintext (and for SDS-backed modes,
    which the security issue adds)."""
    if tls is None:
        return None
    mode = tls.mode.upper()
    if mode not in ("SIMPLE", "MUTUAL") or tls.credential_name:
        return None
    return TransportSocket(
        name=TLS_TRANSPORT_SOCKET, typed_config=any_of(upstream_tls_context(tls, hostname))
    )
