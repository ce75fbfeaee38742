"""Root rotation in `serve`: a root staged under the state dir is rolled out to every proxy.

`meshplane ca rotate-root` stages the next CA in `STATE_DIR/next-ca/` (ca/next_root.py);
`RootRollout` polls for it and runs `Rotator.rotate_root` with a settle step that waits for
the proxies, not for a clock: every stream served secrets on the TLS port must ACK the SDS
secrets of the phase (the ROOTCA with both roots, then its certificate from the new root)
before the next phase starts. A proxy that never answers (it NACKs or hangs) holds a phase
for at most `ack_timeout_s`, then is named in a warning and left behind. The state dir is
rewritten at each phase (keys 0600), so a restart in the middle still trusts both roots and
finishes the rotation (the staged directory is still there); the TLS port's own certificate
is re-issued from the new root at the end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from meshplane.ca.next_root import bridged, clear_staged, staged_root
from meshplane.ca.root import BadCaFiles, CertificateAuthority
from meshplane.ca.rotation import Rotator
from meshplane.ca.spiffe import SpiffeId
from meshplane.xds import type_urls
from meshplane.xds.cache import Connection, SnapshotCache
from meshplane.xds.credentials import ProxyIdentity
from meshplane.xds.secret_store import SecretStore
from meshplane.xds.serving_cert import ServingCert
from meshplane.xds.sync_status import SyncStatus

__all__ = ["RootRollout"]

log = logging.getLogger("meshplane.ca")

_ACK_POLL_S = 0.05


class RootRollout:
    """Watches for a staged root and rotates the running CA to it."""

    def __init__(
        self,
        state_dir: str | Path,
        *,
        rotator: Rotator,
        secrets: SecretStore,
        cache: SnapshotCache,
        sync_status: SyncStatus,
        trust_domain: str,
        serving: ServingCert | None = None,
        on_ca: Callable[[CertificateAuthority], None] | None = None,
        poll_s: float = 1.0,
        ack_timeout_s: float = 60.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.rotator = rotator
        self.secrets = secrets
        self.cache = cache
        self.sync_status = sync_status
        self.trust_domain = trust_domain
        self.serving = serving
        self.on_ca = on_ca
        self.poll_s = poll_s
        self.ack_timeout_s = ack_timeout_s
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        """Poll for a staged root, forever (cancel to stop)."""
        while True:
            try:
                await self.check()
            except Exception:  # a failed write: keep serving, try again at the next poll
                log.exception("root rotation failed; retrying while next-ca/ is staged")
            await asyncio.sleep(self.poll_s)

    async def check(self) -> bool:
        """Rotate to the staged root if there is one; whether a rotation ran."""
        async with self._lock:  # the poll and a direct call never rotate at once
            return await self._check()

    async def _check(self) -> bool:
        try:
            staged = staged_root(self.state_dir)
        except (BadCaFiles, OSError, ValueError) as err:
            log.error("staged root in %s refused, moved aside: %s", self.state_dir, err)
            clear_staged(self.state_dir, rejected=True)
            return False
        if staged is None:
            return False
        await self.rotate(staged)
        return True

    async def rotate(self, staged: CertificateAuthority) -> None:
        """Roll `staged` out (see the module docstring) and make it the state dir's CA."""
        log.info("root rotation to %r started", staged.cert.subject.rfc4514_string())
        new = bridged(staged, self.rotator.ca)
        await self.rotator.rotate_root(new, self._settle)
        self.rotator.ca.save(self.state_dir)
        clear_staged(self.state_dir)
        if self.serving is not None:
            self.serving.renew()
        if self.on_ca is not None:
            self.on_ca(self.rotator.ca)
        log.info("root rotation done: the old root is no longer trusted")

    async def _settle(self) -> None:
        self.rotator.ca.save(self.state_dir)  # a restart from here on trusts both roots
        behind = await self.wait_for_secret_acks()
        if behind:
            log.warning(
                "root rotation: going on without an SDS ACK from %s after %.0fs",
                ", ".join(behind),
                self.ack_timeout_s,
            )

    async def wait_for_secret_acks(self) -> list[str]:
        """Until every stream served secrets ACKed its current ones; the ids still behind
        when `ack_timeout_s` ran out (empty: all caught up)."""
        deadline = time.monotonic() + self.ack_timeout_s
        while True:
            behind = [c.id for c in self.cache.connections() if not self._secrets_acked(c)]
            if not behind or time.monotonic() >= deadline:
                return behind
            await asyncio.sleep(_ACK_POLL_S)

    def _secrets_acked(self, conn: Connection) -> bool:
        proxy = conn.proxy
        if proxy is None or not proxy.workload_certs:
            return True  # the plaintext port: no secrets to wait for
        progress = self.sync_status.progress(conn.id, type_urls.SECRET)
        if progress is None:
            return True  # SDS not asked for yet: its first answer will be current
        spiffe = SpiffeId(self.trust_domain, proxy.namespace, proxy.service_account)
        # The TLS port admits a node only with a token of its own type: its id says it.
        identity = ProxyIdentity(spiffe, conn.node.id.startswith("router~"))
        return progress.settled(self.secrets.resources(identity))
