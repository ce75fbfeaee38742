"""Gateway: servers (port, hosts, TLS) of the router proxies its selector picks."""

from __future__ import annotations

from meshplane.api import formats
from meshplane.api.fields import Fields
from meshplane.api.networking.gateway import GatewayPort, GatewaySpec, Server, ServerTLS

PROTOCOLS = ("HTTP", "HTTPS", "HTTP2", "GRPC", "GRPC-WEB", "TCP", "TLS", "MONGO", "REDIS",
             "MYSQL")  # fmt: skip
SERVER_TLS_MODES = (
    "PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL",
)  # fmt: skip


def gateway(f: Fields) -> GatewaySpec:
    f.keys(("servers", "selector"))
    return GatewaySpec(
        servers=f.each("servers", _server, required=True),
        selector=f.str_map("selector", labels=True) or {},
    )


def port(f: Fields, *, name_required: bool = True) -> GatewayPort | None:
    """Istio's Port message (Gateway, Sidecar and ServiceEntry share it)."""
    f.keys(("number", "protocol", "name", "targetPort"))
    number = f.port("number", required=True)
    protocol = f.text("protocol", required=True)
    if protocol is not None and protocol.upper() not in PROTOCOLS:
        f.error("protocol", f"{protocol!r} is not one of {', '.join(PROTOCOLS)}")
        protocol = None
    name = f.text("name", required=name_required)
    target = f.port("targetPort")
    if number is None or protocol is None:
        return None
    return GatewayPort(number, protocol.upper(), name or "", target)


def _server(f: Fields) -> Server | None:
    f.keys(("port", "hosts", "tls", "bind", "name"), ignored=("defaultEndpoint",))
    p = f.read("port", port)
    if not f.has("port"):
        f.error("port", "required field is missing")
    hosts = f.str_list("hosts", required=True, check=formats.namespaced_host_problem)
    tls = f.read("tls", _server_tls)
    if p is not None and tls is not None:
        _check_tls_for_protocol(f, p.protocol, tls)
    bind = f.text("bind")
    if bind is not None and not bind.startswith("unix://") and (reason := formats.ip_problem(bind)):
        f.error("bind", reason)
    if p is not None and p.protocol in ("HTTPS", "TLS") and tls is None:
        f.error("tls", f"required for protocol {p.protocol}")
    if p is None:
        return None
    return Server(port=p, hosts=hosts, tls=tls, bind=bind, name=f.text("name") or "")


_HTTP_PROTOCOLS = ("HTTP", "HTTP2", "GRPC", "GRPC-WEB")
_PASSTHROUGH_MODES = ("PASSTHROUGH", "AUTO_PASSTHROUGH")
_TERMINATING_MODES = ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL")
_ISTIO_MUTUAL_EXCLUDES = (
    ("serverCertificate", "server certificate"),
    ("privateKey", "private key"),
    ("caCertificates", "CA bundle"),
    ("credentialName", "credentialName"),
)


def _has_certificates(tls: ServerTLS) -> bool:
    return bool(tls.server_certificate or tls.private_key or tls.ca_certificates)


def _check_tls_for_protocol(f: Fields, protocol: str, tls: ServerTLS) -> None:
    """Istio's validateServer: a plain-HTTP port may only carry httpsRedirect (a
    passthrough-mode block without certificates); other non-TLS ports no TLS at all."""
    if protocol in ("HTTPS", "TLS"):
        return
    if protocol not in _HTTP_PROTOCOLS:
        f.error("tls", "server cannot have TLS settings for non HTTPS/TLS ports")
    elif tls.mode not in _PASSTHROUGH_MODES or _has_certificates(tls):
        f.error("tls", "server cannot have TLS settings for plain text HTTP ports")
    elif not tls.https_redirect:
        hint = "; SNI routing needs protocol TLS" if tls.mode == "AUTO_PASSTHROUGH" else ""
        f.warn(
            "tls.mode",
            f"{tls.mode} has no effect on a plain-HTTP ({protocol}) port: "
            f"served as plain HTTP{hint}",
        )


def _check_server_tls(f: Fields, tls: ServerTLS) -> None:
    """Istio's validateTLSOptions: file certificates for the terminating modes, none at all
    for ISTIO_MUTUAL (it uses the gateway's mesh certificate)."""
    if tls.mode == "ISTIO_MUTUAL":
        for key, what in _ISTIO_MUTUAL_EXCLUDES:
            if f.has(key):
                f.error(key, f"ISTIO_MUTUAL TLS cannot have associated {what}")
        return
    if tls.mode not in _TERMINATING_MODES:
        return
    if tls.credential_name:
        # Served over SDS from the Secret in the gateway proxy's own namespace; another
        # namespace's would need a ReferenceGrant, which meshplane does not read.
        if "/" in tls.credential_name.removeprefix("kubernetes://"):
            f.error("credentialName", "must name a Secret in the gateway's own namespace")
        return
    if not tls.server_certificate:
        f.error("serverCertificate", f"{tls.mode} TLS requires a server certificate")
    if not tls.private_key:
        f.error("privateKey", f"{tls.mode} TLS requires a private key")
    if tls.mode == "MUTUAL" and not tls.ca_certificates:
        f.error("caCertificates", "MUTUAL TLS requires a client CA bundle")


def _server_tls(f: Fields) -> ServerTLS:
    f.keys(
        (
            "httpsRedirect",
            "mode",
            "serverCertificate",
            "privateKey",
            "caCertificates",
            "credentialName",
            "subjectAltNames",
            "minProtocolVersion",
            "maxProtocolVersion",
        ),
        ignored=(
            "verifyCertificateSpki",
            "verifyCertificateHash",
            "cipherSuites",
            "caCrl",
            "credentialNames",
            "tlsCertificates",
        ),
    )
    versions = ("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3")
    # Istio's enum default (0) is PASSTHROUGH: a `tls` block without `mode` terminates nothing.
    mode = f.enum("mode", SERVER_TLS_MODES) or "PASSTHROUGH"
    tls = ServerTLS(
        mode=mode,
        https_redirect=bool(f.flag("httpsRedirect")),
        server_certificate=f.text("serverCertificate"),
        private_key=f.text("privateKey"),
        ca_certificates=f.text("caCertificates"),
        credential_name=f.text("credentialName"),
        subject_alt_names=f.str_list("subjectAltNames"),
        min_protocol_version=f.enum("minProtocolVersion", versions),
        max_protocol_version=f.enum("maxProtocolVersion", versions),
    )
    _check_server_tls(f, tls)
    return tls
