"""The TLS xDS port's own certificate, re-issued before it expires and after a root rotation.

The port's credentials are grpc's dynamic SSL credentials: gRPC asks `ServingCert` for a
replacement on each new handshake, so a renewed certificate serves every connection made
after it while streams already open keep theirs (a gRPC stream never handshakes again).
Renewal follows the workload rule, at half life (ca/rotation.py `renew_at`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import threading
from collections.abc import Callable, Sequence

import grpc

from meshplane.ca.issuer import WorkloadCert, issue_server
from meshplane.ca.root import CertificateAuthority
from meshplane.ca.rotation import renew_at

__all__ = ["SERVER_CERT_TTL", "ServingCert"]

log = logging.getLogger("meshplane.xds.tls")

SERVER_CERT_TTL = datetime.timedelta(days=365)
"""Life of the port's certificate; renewed at half of it."""
_MIN_SLEEP_S = 0.05


class ServingCert:
    """The port's current certificate and the loop that renews it."""

    def __init__(
        self,
        ca: Callable[[], CertificateAuthority],
        names: Sequence[str],
        ttl: datetime.timedelta = SERVER_CERT_TTL,
        key_type: str = "ecdsa",
    ) -> None:
        self._ca = ca
        self.names = tuple(names)
        self.ttl = ttl
        self.key_type = key_type
        self.current = issue_server(ca(), self.names, ttl, key_type)
        self._lock = threading.Lock()  # gRPC calls the fetcher from its own threads
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._renewed = asyncio.Event()

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that pick up every later renewal on the next handshake."""
        return grpc.dynamic_ssl_server_credentials(
            _configuration(self.current), self._fetch, require_client_authentication=False
        )

    def renew(self) -> WorkloadCert:
        """Issue a new certificate from the CA as it is now; new handshakes get it."""
        cert = issue_server(self._ca(), self.names, self.ttl, self.key_type)
        with self._lock:
            self.current = cert
            self._pending = _configuration(cert)
        self._renewed.set()
        log.info(
            "TLS xDS port certificate renewed: serial %x until %s", cert.serial, cert.not_after
        )
        return cert

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    async def run(self) -> None:
        """Renew at half life, forever (cancel to stop); an outside renewal reschedules."""
        while True:
            self._renewed.clear()
            now = datetime.datetime.now(datetime.UTC)
            delay = max(_MIN_SLEEP_S, (renew_at(self.current) - now).total_seconds())
            renewed = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._renewed.wait(), delay)
                renewed = True
            if not renewed:
                self.renew()


def _configuration(cert: WorkloadCert) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration([(cert.key_pem, cert.chain_pem)])
