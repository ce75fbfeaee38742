"""Which Gateway `credentialName`s a router can actually be served, by name only.

Envoy waits for an SDS secret before a listener referencing it becomes active, and a
listener is warmed as a whole: one server naming a Secret that does not exist would keep
every server on its port down. Istio leaves such a server out (and warns); for that the
view of a router carries the names of the credentials its Gateways reference that its
namespace's Secrets provide - names, never the PEM, which only the TLS xDS port reads.

A name here is the SDS resource name without ``kubernetes://``: ``NAME`` when the Secret
NAME holds a certificate and key, ``NAME-cacert`` when a CA bundle for NAME exists (in the
Secret NAME, or in a Secret called NAME-cacert), mirroring what xds/credentials.py serves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from meshplane.api.core.credential import TlsCredential
from meshplane.api.errors import ValidationError
from meshplane.api.meta import Object
from meshplane.api.networking.gateway import GatewaySpec, Server, ServerTLS
from meshplane.model.mesh import MeshModel
from meshplane.model.workloads import selects

__all__ = [
    "credential_names",
    "credential_warnings",
    "missing_credential",
    "provided_credentials",
    "referenced_credentials",
]

CREDENTIAL_PREFIX = "kubernetes://"
CA_SUFFIX = "-cacert"
_TERMINATING = frozenset({"SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"})
_MUTUAL = frozenset({"MUTUAL", "OPTIONAL_MUTUAL"})

Credentials = Mapping[tuple[str, str], TlsCredential]


def required_names(tls: ServerTLS | None) -> tuple[str, ...]:
    """The credential names a terminating server with `credentialName` needs: its
    certificate, plus its client CA bundle for MUTUAL and OPTIONAL_MUTUAL."""
    if tls is None or not tls.credential_name or tls.mode not in _TERMINATING:
        return ()
    name = tls.credential_name.removeprefix(CREDENTIAL_PREFIX)
    return (name, name + CA_SUFFIX) if tls.mode in _MUTUAL else (name,)


def missing_credential(tls: ServerTLS | None, available: frozenset[str] | None) -> str:
    """The first credential `tls` needs that is not in `available` ("" when none is
    missing, or when `available` is None: not known, so assumed present)."""
    if available is None:
        return ""
    return next((n for n in required_names(tls) if n not in available), "")


def referenced_credentials(gateways: tuple[Object[GatewaySpec], ...]) -> frozenset[str]:
    """Every credential name the servers of `gateways` need."""
    return frozenset(
        name for gw in gateways for server in gw.spec.servers for name in required_names(server.tls)
    )


def _provided(credentials: Credentials, namespace: str) -> Iterator[str]:
    for (ns, name), cred in credentials.items():
        if ns != namespace:
            continue
        if cred.has_certificate:
            yield name
        if cred.has_ca:
            # NAME's own CA makes NAME-cacert; a CA-only Secret NAME-cacert is that too.
            yield name + CA_SUFFIX
            if name.endswith(CA_SUFFIX):
                yield name


def provided_credentials(credentials: Credentials, namespace: str) -> frozenset[str]:
    """Every credential name `namespace`'s Secrets provide."""
    return frozenset(_provided(credentials, namespace))


def credential_names(
    credentials: Credentials, namespace: str, gateways: tuple[Object[GatewaySpec], ...]
) -> frozenset[str]:
    """The credentials `gateways` reference that `namespace`'s Secrets provide."""
    wanted = referenced_credentials(gateways)
    if not wanted:
        return frozenset()
    return wanted.intersection(_provided(credentials, namespace))


def _gateway_namespaces(model: MeshModel, gw: Object[GatewaySpec]) -> list[str]:
    """Where the Gateway's proxies run (their Secrets are read there): the namespaces of
    workloads its selector matches, else the Gateway's own."""
    if not gw.spec.selector:
        return [gw.namespace]
    found = {
        ep.namespace
        for eps in model.endpoints.values()
        for ep in eps
        if ep.namespace and selects(gw.spec.selector, ep.labels)
    }
    return sorted(found) or [gw.namespace]


def credential_warnings(model: MeshModel) -> Iterator[ValidationError]:
    """A warning per Gateway server whose `credentialName` Secret is missing where its
    proxies run: that server is left out of their listeners."""
    for gw in model.gateways:
        needs = [(i, s) for i, s in enumerate(gw.spec.servers) if required_names(s.tls)]
        if not needs:
            continue
        namespaces = _gateway_namespaces(model, gw)
        provided = {ns: frozenset(_provided(model.credentials, ns)) for ns in namespaces}
        for index, server in needs:
            for ns in namespaces:
                missing = missing_credential(server.tls, provided[ns])
                if not missing:
                    continue
                reason = f"{_absent(missing, ns)}: server {_label(server)} is left out"
                yield ValidationError(
                    gw.origin,
                    gw.kind,
                    gw.namespace,
                    gw.name,
                    f"spec.servers[{index}].tls.credentialName",
                    reason,
                    "warning",
                )


def _absent(missing: str, namespace: str) -> str:
    if missing.endswith(CA_SUFFIX):
        name = missing.removesuffix(CA_SUFFIX)
        return f"no CA bundle for {name} (Secret {name} or {missing}) in namespace {namespace}"
    return f"no Secret {missing} with a certificate and key in namespace {namespace}"


def _label(server: Server) -> str:
    return server.name or server.port.name or str(server.port.number)
