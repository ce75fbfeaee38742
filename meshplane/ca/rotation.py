"""Keeps one current certificate per workload identity, re-issued before it expires.

Istio's agents renew at half of a certificate's life; with no agent here the CA does it:
`Rotator` holds each identity's certificate, sleeps until the earliest half life, issues
again and calls `on_change(identity)` so the SDS layer pushes the new `default` secret. Envoy
swaps certificates on an SDS update without closing connections that already exist.

Root rotation (`rotate_root`) follows the order that never breaks a handshake: first every
proxy trusts both roots (ROOTCA carries both), then certificates are re-issued by the new
root, and only then does the old root leave the bundle.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Awaitable, Callable

from meshplane.ca.issuer import DEFAULT_TTL, WorkloadCert, issue
from meshplane.ca.root import CertificateAuthority
from meshplane.ca.spiffe import SpiffeId

__all__ = ["RENEW_FRACTION", "Rotator", "renew_at"]

log = logging.getLogger("meshplane.ca")

RENEW_FRACTION = 0.5
"""Istio's SECRET_GRACE_PERIOD_RATIO: renew once this fraction of the life has passed."""
_MIN_SLEEP_S = 0.05


def renew_at(cert: WorkloadCert, fraction: float = RENEW_FRACTION) -> datetime.datetime:
    """When `cert` should be replaced."""
    return cert.not_before + (cert.not_after - cert.not_before) * fraction


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Rotator:
    """Current certificates by identity, and the loop that renews them."""

    def __init__(
        self,
        ca: CertificateAuthority,
        *,
        ttl: datetime.timedelta = DEFAULT_TTL,
        key_type: str = "ecdsa",
        on_change: Callable[[SpiffeId], None] | None = None,
        on_issue: Callable[[SpiffeId, WorkloadCert], None] | None = None,
    ) -> None:
        self.ca = ca
        self.ttl = ttl
        self.key_type = key_type
        self.on_change = on_change
        self.on_issue = on_issue
        self._certs: dict[SpiffeId, WorkloadCert] = {}
        self._issuing: dict[SpiffeId, asyncio.Future[WorkloadCert]] = {}
        self._rescheduled = asyncio.Event()

    def current(self, identity: SpiffeId) -> WorkloadCert | None:
        """The certificate `identity` should hold now, if one was issued."""
        return self._certs.get(identity)

    def identities(self) -> list[SpiffeId]:
        return sorted(self._certs)

    async def ensure(self, identity: SpiffeId) -> WorkloadCert:
        """The current certificate for `identity`, issued now if it has none (once, however
        many streams of that identity ask at the same time)."""
        found = self._certs.get(identity)
        if found is not None:
            return found
        pending = self._issuing.get(identity)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[WorkloadCert] = asyncio.get_running_loop().create_future()
        self._issuing[identity] = future
        try:
            cert = await self._issue(identity)
            self._certs[identity] = cert
            future.set_result(cert)
            self._rescheduled.set()
            return cert
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning if nobody waits
            raise
        finally:
            del self._issuing[identity]

    def forget(self, identity: SpiffeId) -> None:
        """Stop renewing `identity` (no proxy of it is connected any more)."""
        self._certs.pop(identity, None)

    async def _issue(self, identity: SpiffeId) -> WorkloadCert:
        while True:
            ca = self.ca
            if self.key_type == "ecdsa":
                cert = issue(ca, identity, self.ttl, self.key_type)  # ~0.2 ms: no thread
            else:
                # RSA key generation takes tens of milliseconds: keep the event loop serving.
                cert = await asyncio.to_thread(issue, ca, identity, self.ttl, self.key_type)
            if self.on_issue is not None:
                self.on_issue(identity, cert)
            # A root rotation switched signers while this one was made: a certificate from
            # the old signer could outlive the old root's place in the trust bundle.
            if self.ca.cert == ca.cert:
                return cert

    def next_renewal(self) -> datetime.datetime | None:
        """When the earliest certificate is due."""
        return min((renew_at(c) for c in self._certs.values()), default=None)

    async def renew_due(self, now: datetime.datetime | None = None) -> list[SpiffeId]:
        """Re-issue every certificate past its renewal time; returns who got a new one."""
        moment = now or _now()
        due = [i for i, c in self._certs.items() if renew_at(c) <= moment]
        for identity in due:
            await self.reissue(identity)
        return due

    async def reissue(self, identity: SpiffeId) -> WorkloadCert:
        """A new certificate for `identity` now, pushed through `on_change`."""
        cert = await self._issue(identity)
        if identity in self._certs:
            self._certs[identity] = cert
            log.info("renewed %s: serial %x until %s", identity, cert.serial, cert.not_after)
            self._notify(identity)
        return cert

    async def run(self) -> None:
        """Renew certificates at half life, forever (cancel to stop)."""
        while True:
            await self.renew_due()
            due = self.next_renewal()
            self._rescheduled.clear()
            delay = None if due is None else max(_MIN_SLEEP_S, (due - _now()).total_seconds())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rescheduled.wait(), delay)

    async def rotate_root(
        self, new: CertificateAuthority, settle: Callable[[], Awaitable[None]]
    ) -> None:
        """Move signing to `new` without a moment where a peer distrusts a certificate.

        `settle` returns once the proxies have had time to take the last push (the caller
        knows how: a delay, or waiting for every SDS ACK); it is called with `self.ca`
        trusting both roots, first still signing with the old one, then with the new one.
        """
        old_roots = self.ca.roots
        self.ca = self.ca.trusting(new.roots)
        log.info("root rotation: trusting the new root next to the old one")
        self._notify_all()
        await settle()
        self.ca = new.trusting(old_roots)
        log.info("root rotation: re-issuing every certificate from the new root")
        for identity in list(self._certs):
            await self.reissue(identity)
        await settle()
        self.ca = new
        log.info("root rotation: the old root left the trust bundle")
        self._notify_all()
        self._rescheduled.set()

    def _notify(self, identity: SpiffeId) -> None:
        if self.on_change is not None:
            self.on_change(identity)

    def _notify_all(self) -> None:
        for identity in list(self._certs):
            self._notify(identity)
