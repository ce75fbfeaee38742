"""DestinationRule `tls` -> the upstream transport socket of a cluster (TLS origination).

DISABLE, SIMPLE and MUTUAL are built here, with certificate file paths (without a CA: the
system trust bundle the MeshConfig names, as Istio verifies by default) or with
`credentialName` (Istio's SDS names: the client certificate from ``kubernetes://NAME``, the
trust anchors from ``kubernetes://NAME-cacert``, both served by meshplane's TLS port only to
proxies of the Secret's namespace). ISTIO_MUTUAL is mtls.py's.
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.core.v3.base_pb2 import DataSource, TransportSocket
from envoy.config.core.v3.config_source_pb2 import V3, AggregatedConfigSource, ConfigSource
from envoy.extensions.transport_sockets.tls.v3.common_pb2 import (
    CertificateValidationContext,
    SubjectAltNameMatcher,
    TlsCertificate,
)
from envoy.extensions.transport_sockets.tls.v3.secret_pb2 import SdsSecretConfig
from envoy.extensions.transport_sockets.tls.v3.tls_pb2 import CommonTlsContext, UpstreamTlsContext
from envoy.type.matcher.v3.string_pb2 import StringMatcher

from meshplane.api.networking.destination_rule import ClientTLS
from meshplane.translators.protos import any_of

TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
# Istio's SDS resource names for Kubernetes Secrets (credentials.KubernetesSecretTypeURI and
# SdsCaSuffix): the Secret's certificate and key, and its CA bundle.
CREDENTIAL_PREFIX = "kubernetes://"
CA_SUFFIX = "-cacert"


def credential_sds_secret(resource: str) -> SdsSecretConfig:
    """A reference to credential `resource` (``kubernetes://...``) over ADS with Envoy's
    default initial-fetch timeout (Istio's SDSAdsConfig): a Secret that does not exist
    holds its listener or cluster warming for that long (15 s), then the rest goes on
    without it (its TLS handshakes fail) instead of waiting forever; the Secret, once
    created, arrives over SDS. Every credential reference uses this one config source, so
    Envoy keeps one subscription per name."""
    return SdsSecretConfig(
        name=resource,
        sds_config=ConfigSource(ads=AggregatedConfigSource(), resource_api_version=V3),
    )


def credential_resource(credential_name: str) -> str:
    """``kubernetes://NAME`` (a name already in that form is kept, as Istio does)."""
    if credential_name.startswith(CREDENTIAL_PREFIX):
        return credential_name
    return CREDENTIAL_PREFIX + credential_name


def credential_ca_resource(credential_name: str) -> str:
    """``kubernetes://NAME-cacert``: the CA bundle of credential `credential_name`."""
    return credential_resource(credential_name) + CA_SUFFIX


def dns_san_matchers(sans: Sequence[str]) -> list[SubjectAltNameMatcher]:
    return [
        SubjectAltNameMatcher(san_type=SubjectAltNameMatcher.DNS, matcher=StringMatcher(exact=san))
        for san in sans
    ]


def credential_validation(
    common: CommonTlsContext, credential_name: str, sans: Sequence[str]
) -> None:
    """Peers verified against the credential's CA over SDS (and its SANs, when given)."""
    combined = common.combined_validation_context
    combined.default_validation_context.CopyFrom(
        CertificateValidationContext(match_typed_subject_alt_names=dns_san_matchers(sans))
    )
    combined.validation_context_sds_secret_config.CopyFrom(
        credential_sds_secret(credential_ca_resource(credential_name))
    )


def validation_context(
    tls: ClientTLS, sni: str = "", system_ca: str = ""
) -> CertificateValidationContext | None:
    """Trust anchors and SAN checks; None when verification is off or has no CA to use.

    Without `caCertificates` the server is verified against the system trust bundle
    (`system_ca`), as Istio does with VERIFY_CERTIFICATE_AT_CLIENT, and then, lacking
    `subjectAltNames`, its certificate must name the SNI host: any publicly trusted
    certificate would pass otherwise."""
    if tls.insecure_skip_verify:
        return None
    if tls.ca_certificates:
        return CertificateValidationContext(
            trusted_ca=DataSource(filename=tls.ca_certificates),
            match_typed_subject_alt_names=dns_san_matchers(tls.subject_alt_names),
        )
    if not system_ca:
        return None
    sans = tls.subject_alt_names or ((sni,) if sni else ())
    return CertificateValidationContext(
        trusted_ca=DataSource(filename=system_ca),
        match_typed_subject_alt_names=dns_san_matchers(sans),
    )


def _credential_context(tls: ClientTLS) -> CommonTlsContext:
    """Istio's ApplyCustomSDSToClientCommonTLSContext: MUTUAL's client certificate from
    ``kubernetes://NAME``, the server checked against ``kubernetes://NAME-cacert``."""
    name = tls.credential_name or ""
    common = CommonTlsContext()
    if tls.mode.upper() == "MUTUAL":
        common.tls_certificate_sds_secret_configs.append(
            credential_sds_secret(credential_resource(name))
        )
    if not tls.insecure_skip_verify:
        credential_validation(common, name, tls.subject_alt_names)
    return common


def _file_context(tls: ClientTLS, sni: str, system_ca: str) -> CommonTlsContext:
    common = CommonTlsContext()
    context = validation_context(tls, sni, system_ca)
    if context is not None:
        common.validation_context.CopyFrom(context)
    if tls.mode.upper() == "MUTUAL" and tls.client_certificate and tls.private_key:
        common.tls_certificates.append(
            TlsCertificate(
                certificate_chain=DataSource(filename=tls.client_certificate),
                private_key=DataSource(filename=tls.private_key),
            )
        )
    return common


def upstream_tls_context(tls: ClientTLS, hostname: str, system_ca: str = "") -> UpstreamTlsContext:
    """SIMPLE (server verified) or MUTUAL (plus a client certificate), from files (or the
    system trust bundle `system_ca`) or from `credentialName` over SDS."""
    # SNI defaults to the destination host: TLS servers outside the mesh (the usual reason
    # to originate TLS) pick their certificate by it. Wildcard hosts have no single name.
    sni = tls.sni or ("" if hostname.startswith("*") else hostname)
    credential = tls.credential_name
    common = _credential_context(tls) if credential else _file_context(tls, sni, system_ca)
    return UpstreamTlsContext(sni=sni, common_tls_context=common)


def upstream_transport_socket(
    tls: ClientTLS | None, hostname: str, system_ca: str = ""
) -> TransportSocket | None:
    """The cluster's transport socket, or None for plaintext (and ISTIO_MUTUAL, which
    mtls.py builds)."""
    if tls is None:
        return None
    if tls.mode.upper() not in ("SIMPLE", "MUTUAL"):
        return None
    context = upstream_tls_context(tls, hostname, system_ca)
    return TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=any_of(context))
