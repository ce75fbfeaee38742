"""The TLS xDS port: the CA, its serving certificate, token checks and per-identity SDS.

Everything the authenticated port needs is made here from the state dir: the CA (loaded
or created), the token signer, the certificate rotator and the secret store, and a
grpc.aio server whose certificate the CA issued for `localhost`, `127.0.0.1`,
`meshplane.istio-system.svc` and every `--tls-san`. It serves the same snapshots as the
plaintext port, plus secrets, to streams that pass `TokenAuthorizer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from meshplane.ca.issuer import WorkloadCert, issue_server
from meshplane.ca.root import CertificateAuthority, load_or_create
from meshplane.ca.rotation import Rotator
from meshplane.ca.tokens import TokenSigner
from meshplane.model.mesh import MeshModel
from meshplane.xds.ads import AdsServicer, Resolver
from meshplane.xds.auth import TokenAuthorizer
from meshplane.xds.ca_metrics import CaMetrics
from meshplane.xds.cache import SnapshotCache
from meshplane.xds.credentials import typed_identity
from meshplane.xds.metrics import XdsMetrics
from meshplane.xds.secret_store import SecretStore
from meshplane.xds.server import start_xds_server
from meshplane.xds.sync_status import SyncStatus

__all__ = ["DEFAULT_SANS", "TlsPort", "start_tls_port"]

log = logging.getLogger("meshplane.xds.tls")

DEFAULT_SANS = ("localhost", "127.0.0.1", "meshplane.istio-system.svc")
SERVER_CERT_TTL = datetime.timedelta(days=365)
"""The serving certificate is made at each start; a year outlives any sane uptime."""


@dataclass
class TlsPort:
    """The running TLS port and the CA parts behind it."""

    server: grpc.aio.Server
    port: int
    ca: CertificateAuthority
    signer: TokenSigner
    rotator: Rotator
    secrets: SecretStore
    server_cert: WorkloadCert
    rotation_task: asyncio.Task[Any]

    async def stop(self) -> None:
        self.rotation_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.rotation_task
        await self.server.stop(grace=1.0)


async def start_tls_port(
    address: str,
    *,
    state_dir: str,
    trust_domain: str,
    tls_sans: Sequence[str],
    cert_ttl: datetime.timedelta,
    key_type: str,
    cache: SnapshotCache,
    resolver: Resolver,
    sync_status: SyncStatus,
    metrics: XdsMetrics,
    registry: CollectorRegistry,
    mesh: Callable[[], MeshModel] | None = None,
) -> TlsPort:
    """Load or create the CA in `state_dir` and serve authenticated xDS on `address`."""
    ca = load_or_create(state_dir, trust_domain, key_type)
    signer = TokenSigner.load_or_create(state_dir)
    ca_metrics = CaMetrics(registry)
    ca_metrics.watch_ca(ca)
    rotator = Rotator(ca, ttl=cert_ttl, key_type=key_type, on_issue=ca_metrics.cert_issued)
    secrets = SecretStore(rotator, mesh=mesh)  # mesh: credentialName Secrets
    servicer = AdsServicer(
        cache,
        resolver,
        sync_status,
        metrics,
        serve_secrets=True,
        authorize=typed_identity(
            TokenAuthorizer(signer, trust_domain, on_refused=ca_metrics.refused)
        ),
        secrets=secrets,
    )
    server_cert = issue_server(ca, [*DEFAULT_SANS, *tls_sans], SERVER_CERT_TTL, key_type)
    credentials = grpc.ssl_server_credentials([(server_cert.key_pem, server_cert.chain_pem)])
    server, port = await start_xds_server(address, servicer, tls=credentials)
    task = asyncio.create_task(rotator.run(), name="cert-rotation")
    return TlsPort(server, port, ca, signer, rotator, secrets, server_cert, task)
