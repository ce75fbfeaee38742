"""The TLS xDS port: the CA, its serving certificate, token checks and per-identity SDS.

Everything the authenticated port needs is made here from the state dir: the CA (loaded
or created), the token signer, the certificate rotator and the secret store, and a
grpc.aio server whose certificate the CA issued for `localhost`, `127.0.0.1`,
`meshplane.istio-system.svc` and every `--tls-san` (renewed at half life, serving_cert.py).
It serves the same snapshots as the plaintext port, plus secrets, to streams that pass
`TokenAuthorizer`, and rolls out a root staged by `meshplane ca rotate-root`
(root_rollout.py).
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

from meshplane.ca.issuer import WorkloadCert
from meshplane.ca.root import CertificateAuthority, load_or_create
from meshplane.ca.rotation import Rotator
from meshplane.ca.tokens import TokenSigner
from meshplane.model.mesh import MeshModel
from meshplane.xds.ads import AdsServicer, Resolver
from meshplane.xds.auth import ServiceAccountAuthenticator, TokenAuthorizer
from meshplane.xds.ca_metrics import CaMetrics
from meshplane.xds.cache import SnapshotCache
from meshplane.xds.metrics import XdsMetrics
from meshplane.xds.root_rollout import RootRollout
from meshplane.xds.secret_store import SecretStore
from meshplane.xds.server import start_xds_server
from meshplane.xds.serving_cert import SERVER_CERT_TTL, ServingCert
from meshplane.xds.sync_status import SyncStatus

__all__ = ["DEFAULT_SANS", "TlsPort", "start_tls_port"]

log = logging.getLogger("meshplane.xds.tls")

DEFAULT_SANS = ("localhost", "127.0.0.1", "meshplane.istio-system.svc")


@dataclass
class TlsPort:
    """The running TLS port and the CA parts behind it."""

    server: grpc.aio.Server
    port: int
    signer: TokenSigner
    rotator: Rotator
    secrets: SecretStore
    serving: ServingCert
    rollout: RootRollout
    tasks: list[asyncio.Task[Any]]
    """Certificate renewals, the port certificate's renewals, the staged-root poll."""

    @property
    def ca(self) -> CertificateAuthority:
        """The CA as it is now (a root rotation replaces it)."""
        return self.rotator.ca

    @property
    def server_cert(self) -> WorkloadCert:
        """The port's current certificate."""
        return self.serving.current

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
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
    server_cert_ttl: datetime.timedelta = SERVER_CERT_TTL,
    root_poll_s: float = 1.0,
    service_accounts: ServiceAccountAuthenticator | None = None,
) -> TlsPort:
    """Load or create the CA in `state_dir` and serve authenticated xDS on `address`.

    `service_accounts`: also accept tokens meshplane did not issue (Kubernetes ones).
    """
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
        authorize=TokenAuthorizer(
            signer,
            trust_domain,
            on_refused=ca_metrics.refused,
            service_accounts=service_accounts,
        ),
        secrets=secrets,
    )
    serving = ServingCert(lambda: rotator.ca, [*DEFAULT_SANS, *tls_sans], server_cert_ttl, key_type)
    server, port = await start_xds_server(address, servicer, tls=serving.credentials())
    rollout = RootRollout(
        state_dir,
        rotator=rotator,
        secrets=secrets,
        cache=cache,
        sync_status=sync_status,
        trust_domain=trust_domain,
        serving=serving,
        on_ca=ca_metrics.watch_ca,
        poll_s=root_poll_s,
    )
    tasks = [
        asyncio.create_task(rotator.run(), name="cert-rotation"),
        asyncio.create_task(serving.run(), name="xds-tls-cert-rotation"),
        asyncio.create_task(rollout.run(), name="root-rotation"),
    ]
    return TlsPort(server, port, signer, rotator, secrets, serving, rollout, tasks)
