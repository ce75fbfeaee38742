"""Per-identity SDS: `default` and `ROOTCA` for the identity a stream proved, and no other.

Scope snapshots are shared by every proxy that sees the same config, whatever its service
account, so secrets cannot live in them. The store keeps, per SPIFFE identity, the SDS
resources built from that identity's current certificate (issued on the first stream of
the identity, renewed by `ca.rotation.Rotator`) and the CA's trust bundle, plus the wake
events of that identity's open streams: a renewal wakes exactly those streams, which then
send the new `default` like any other changed resource.

Gateway and DestinationRule credentials (`kubernetes://NAME`, xds/credentials.py) are
added to an identity's secrets from the current model; `refresh_credentials` (after each
push) wakes the streams of the namespaces whose credentials changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from envoy.config.core.v3.base_pb2 import DataSource
from envoy.extensions.transport_sockets.tls.v3.common_pb2 import (
    CertificateValidationContext,
    TlsCertificate,
)
from envoy.extensions.transport_sockets.tls.v3.secret_pb2 import Secret

from meshplane.ca.issuer import WorkloadCert
from meshplane.ca.rotation import Rotator
from meshplane.ca.spiffe import SpiffeId
from meshplane.model.mesh import MeshModel
from meshplane.xds import type_urls
from meshplane.xds.credentials import ProxyIdentity, credential_secrets, sidecar_credential_names
from meshplane.xds.snapshot import CachedResource, Interner, TypeResources

__all__ = ["ROOT_CA_SECRET", "WORKLOAD_SECRET", "SecretStore", "workload_secrets"]

log = logging.getLogger("meshplane.xds.secrets")

WORKLOAD_SECRET = "default"
ROOT_CA_SECRET = "ROOTCA"


def workload_secrets(cert: WorkloadCert, root_pem: bytes) -> dict[str, Secret]:
    """Istio's two SDS secrets for one workload, with inline PEM (as istio-agent sends)."""
    return {
        WORKLOAD_SECRET: Secret(
            name=WORKLOAD_SECRET,
            tls_certificate=TlsCertificate(
                certificate_chain=DataSource(inline_bytes=cert.chain_pem),
                private_key=DataSource(inline_bytes=cert.key_pem),
            ),
        ),
        ROOT_CA_SECRET: Secret(
            name=ROOT_CA_SECRET,
            validation_context=CertificateValidationContext(
                trusted_ca=DataSource(inline_bytes=root_pem)
            ),
        ),
    }


class SecretStore:
    """Identity -> its SDS resources and its streams' wake events."""

    def __init__(
        self,
        rotator: Rotator,
        *,
        on_push: Callable[[SpiffeId, WorkloadCert], None] | None = None,
        mesh: Callable[[], MeshModel] | None = None,
    ) -> None:
        self.rotator = rotator
        rotator.on_change = self.changed
        self._on_push = on_push
        self._interner = Interner()  # not the shared one: keys stay out of shared caches
        self._built: dict[SpiffeId, tuple[WorkloadCert, bytes, TypeResources]] = {}
        self._streams: dict[SpiffeId, set[asyncio.Event]] = {}
        self._mesh = mesh
        # (namespace, router) -> (credentials fingerprint, interned kubernetes:// secrets)
        self._credentials: dict[tuple[str, bool], tuple[object, dict[str, CachedResource]]] = {}

    async def attach(self, identity: SpiffeId | ProxyIdentity, wake: asyncio.Event) -> None:
        """Issue `identity`'s certificate if it has none; its changes will set `wake`."""
        identity = _spiffe(identity)
        await self.rotator.ensure(identity)
        self._streams.setdefault(identity, set()).add(wake)

    def detach(self, identity: SpiffeId | ProxyIdentity, wake: asyncio.Event) -> None:
        """Forget a closed stream; the last one of an identity ends its renewals."""
        identity = _spiffe(identity)
        streams = self._streams.get(identity)
        if streams is None:
            return
        streams.discard(wake)
        if not streams:
            del self._streams[identity]
            self._built.pop(identity, None)
            self.rotator.forget(identity)

    def resources(self, identity: SpiffeId | ProxyIdentity) -> TypeResources:
        """`default` and `ROOTCA` for `identity` (empty if it has no certificate), plus the
        `kubernetes://` credentials it may hold."""
        own = self._workload_resources(_spiffe(identity))
        typed = identity if isinstance(identity, ProxyIdentity) else ProxyIdentity(identity, False)
        extra = self._credential_resources(typed)
        if not extra or not own.resources:
            return own
        return TypeResources(type_urls.SECRET, {**extra, **own.resources})

    def _workload_resources(self, identity: SpiffeId) -> TypeResources:
        cert = self.rotator.current(identity)
        if cert is None:
            return TypeResources(type_urls.SECRET, {})
        root_pem = self.rotator.ca.root_pem
        built = self._built.get(identity)
        if built is not None and built[0] is cert and built[1] == root_pem:
            return built[2]
        secrets = workload_secrets(cert, root_pem)
        made = TypeResources(
            type_urls.SECRET,
            {n: self._interner.intern(type_urls.SECRET, m) for n, m in secrets.items()},
        )
        self._built[identity] = (cert, root_pem, made)
        if self._on_push is not None:
            self._on_push(identity, cert)
        return made

    def changed(self, identity: SpiffeId) -> None:
        """`identity`'s certificate or the trust bundle changed: wake its streams."""
        for wake in self._streams.get(identity, ()):
            wake.set()

    def _credential_resources(self, identity: ProxyIdentity) -> Mapping[str, CachedResource]:
        if self._mesh is None:
            return {}
        mesh = self._mesh()
        namespace = identity.spiffe.namespace
        fingerprint = _fingerprint(mesh, namespace, identity.router)
        key = (namespace, identity.router)
        cached = self._credentials.get(key)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        sidecar_names = frozenset() if identity.router else sidecar_credential_names(mesh)
        made = {
            name: self._interner.intern(type_urls.SECRET, secret)
            for name, secret in credential_secrets(
                identity, mesh.credentials, sidecar_names
            ).items()
        }
        self._credentials[key] = (fingerprint, made)
        return made

    def refresh_credentials(self) -> None:
        """The model changed: wake the streams of namespaces whose credentials (or the
        DestinationRules naming them) differ from what they were last served."""
        if self._mesh is None:
            return
        mesh = self._mesh()
        stale = {
            namespace
            for (namespace, router), (served, _) in self._credentials.items()
            if _fingerprint(mesh, namespace, router) != served
        }
        for identity, wakes in self._streams.items():
            if identity.namespace in stale:
                for wake in wakes:
                    wake.set()

    def identities(self) -> list[SpiffeId]:
        """Identities with a connected stream."""
        return sorted(self._streams)


def _spiffe(identity: SpiffeId | ProxyIdentity) -> SpiffeId:
    return identity.spiffe if isinstance(identity, ProxyIdentity) else identity


def _fingerprint(mesh: MeshModel, namespace: str, router: bool) -> object:
    """What a namespace's served credentials depend on (compared, never shown)."""
    own = tuple(
        sorted((name, cred) for (ns, name), cred in mesh.credentials.items() if ns == namespace)
    )
    return own if router else (own, sidecar_credential_names(mesh))
