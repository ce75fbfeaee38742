"""Per proxy, per type: what was sent, acknowledged or rejected (feeds /debug/syncz).

Status follows Istio's statusgen: a NACK -> ERROR; nothing sent -> NOT_SENT; the ACKed
version equals the sent one -> SYNCED; otherwise STALE. `wait_converged` lets `meshplane
up` and the benches wait until every connected proxy has acknowledged its current snapshot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from meshplane.xds import type_urls
from meshplane.xds.cache import Connection, SnapshotCache
from meshplane.xds.progress import TypeProgress

SYNCED = "SYNCED"
STALE = "STALE"
NOT_SENT = "NOT_SENT"
ERROR = "ERROR"


def type_status(progress: TypeProgress | None) -> dict[str, Any]:
    """The /debug/syncz entry for one type of one stream."""
    if progress is None:
        return {"sent": "", "acked": "", "nonce": "", "status": NOT_SENT, "error": None}
    if progress.error is not None:
        status = ERROR
    elif not progress.sent_version:
        status = NOT_SENT
    elif progress.acked_version == progress.sent_version:
        status = SYNCED
    else:
        status = STALE
    return {
        "sent": progress.sent_version,
        "acked": progress.acked_version,
        "nonce": progress.nonce,
        "status": status,
        "error": progress.error,
    }


class SyncStatus:
    """The streams being served and their per-type progress."""

    def __init__(self, cache: SnapshotCache) -> None:
        self._cache = cache
        self._streams: dict[str, tuple[Connection, Mapping[str, TypeProgress]]] = {}
        self._changed = asyncio.Event()

    def track(self, conn: Connection, states: Mapping[str, TypeProgress]) -> None:
        """Start reporting a stream; `states` is its live type_url -> progress mapping."""
        self._streams[conn.id] = (conn, states)
        self.notify()

    def untrack(self, conn_id: str) -> None:
        """Stop reporting a closed stream."""
        self._streams.pop(conn_id, None)
        self.notify()

    def progress(self, conn_id: str, type_url: str) -> TypeProgress | None:
        """One stream's progress for one type."""
        found = self._streams.get(conn_id)
        return None if found is None else found[1].get(type_url)

    def rows(self) -> list[dict[str, Any]]:
        """The /debug/syncz JSON: one object per connected proxy."""
        out = []
        for conn, states in sorted(self._streams.values(), key=lambda s: s[0].connected_at):
            name = conn.proxy.short_name if conn.proxy is not None else conn.node.id
            types = {
                short: type_status(states.get(url)) for url, short in type_urls.SHORT_NAMES.items()
            }
            out.append({"proxy": conn.node.id, "name": name, "types": types})
        return out

    def notify(self) -> None:
        """Wake `wait_converged` callers to re-check (called after each stream cycle)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def converged(self, min_connections: int = 1) -> bool:
        """Every stream acknowledged its key's current snapshot (and there are enough)."""
        if len(self._streams) < min_connections:
            return False
        for conn, _ in self._streams.values():
            current = self._cache.get(conn.key)
            if current is None or conn.converged_on is not current:
                return False
        return True

    async def wait_converged(self, *, min_connections: int = 1, timeout: float = 30.0) -> bool:
        """Wait until `converged(min_connections)`; False if `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while not self.converged(min_connections):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return self.converged(min_connections)
        return True
