"""Which `kubernetes://` SDS secrets (Istio's `credentialName`) a proxy may hold, built.

Istio's rule, with a verified identity standing in for Kubernetes RBAC: a Secret is
served only to a proxy authenticated on the TLS port whose identity's namespace is the
Secret's (another namespace's would need a ReferenceGrant, which meshplane does not read).
Within that namespace a router (gateway) may hold every credential; a sidecar only those a
DestinationRule names as its client `credentialName`. The names are the ones translators
reference: ``kubernetes://NAME`` (certificate and key) and ``kubernetes://NAME-cacert``
(the CA bundle, from the Secret NAME, else from a Secret called NAME-cacert).

The stream's identity is the SPIFFE ID the token proved plus whether the token is a
router's (auth.py checks the node's claimed type against the token's, so a sidecar's token
cannot pose as a gateway).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from envoy.config.core.v3.base_pb2 import DataSource
from envoy.extensions.transport_sockets.tls.v3.common_pb2 import (
    CertificateValidationContext,
    TlsCertificate,
)
from envoy.extensions.transport_sockets.tls.v3.secret_pb2 import Secret

from meshplane.api.core.credential import TlsCredential
from meshplane.api.networking.destination_rule import ClientTLS, TrafficPolicy
from meshplane.ca.spiffe import SpiffeId
from meshplane.model.mesh import MeshModel
from meshplane.translators.upstream_tls import (
    CA_SUFFIX,
    credential_ca_resource,
    credential_resource,
)

__all__ = ["ProxyIdentity", "credential_secrets", "sidecar_credential_names"]

Credentials = Mapping[tuple[str, str], TlsCredential]


@dataclass(frozen=True, order=True)
class ProxyIdentity:
    """What a TLS stream's token proved: its SPIFFE ID and whether it is a router's."""

    spiffe: SpiffeId
    router: bool


def sidecar_credential_names(mesh: MeshModel) -> frozenset[str]:
    """SDS names DestinationRules reference as client credentials (what sidecars may hold)."""
    names: set[str] = set()
    for dr in mesh.destination_rules:
        policies = [dr.spec.traffic_policy, *(s.traffic_policy for s in dr.spec.subsets)]
        for policy in policies:
            for tls in _client_tls(policy):
                if tls.credential_name:
                    names.add(credential_resource(tls.credential_name))
                    names.add(credential_ca_resource(tls.credential_name))
    return frozenset(names)


def _client_tls(policy: TrafficPolicy | None) -> Iterable[ClientTLS]:
    if policy is None:
        return
    if policy.tls is not None:
        yield policy.tls
    for port_policy in policy.port_level_settings:
        if port_policy.tls is not None:
            yield port_policy.tls


def namespace_credentials(credentials: Credentials, namespace: str) -> dict[str, Secret]:
    """Every SDS secret the credentials of `namespace` make, by SDS name."""
    own = sorted((name, c) for (ns, name), c in credentials.items() if ns == namespace)
    made: dict[str, Secret] = {}
    for name, cred in own:
        material = cred.material
        if cred.has_certificate:
            resource = credential_resource(name)
            made[resource] = Secret(
                name=resource,
                tls_certificate=TlsCertificate(
                    certificate_chain=DataSource(inline_bytes=material.cert_pem),
                    private_key=DataSource(inline_bytes=material.key_pem),
                ),
            )
        if cred.has_ca:
            made[credential_ca_resource(name)] = _ca_secret(
                credential_ca_resource(name), material.ca_pem
            )
    # A Secret named NAME-cacert is NAME's CA bundle when NAME carries none itself.
    for name, cred in own:
        resource = credential_resource(name)
        if name.endswith(CA_SUFFIX) and cred.has_ca and resource not in made:
            made[resource] = _ca_secret(resource, cred.material.ca_pem)
    return made


def _ca_secret(resource: str, ca_pem: bytes) -> Secret:
    return Secret(
        name=resource,
        validation_context=CertificateValidationContext(trusted_ca=DataSource(inline_bytes=ca_pem)),
    )


def credential_secrets(
    identity: ProxyIdentity, credentials: Credentials, sidecar_names: frozenset[str]
) -> dict[str, Secret]:
    """The `kubernetes://` secrets `identity` may hold: its own namespace's, all of them
    for a router, the DestinationRule-referenced ones for a sidecar."""
    made = namespace_credentials(credentials, identity.spiffe.namespace)
    if identity.router:
        return made
    return {name: secret for name, secret in made.items() if name in sidecar_names}
