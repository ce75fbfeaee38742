"""SnapshotCache: scope key -> Snapshot, and the registry of connected xDS streams.

Publishing a snapshot never waits on a stream (xDS rule 45; go-control-plane#503 deadlocked
doing so): `set` stores the snapshot and sets each affected stream's wake event. Each
stream task then computes its own responses from the newest snapshot when it gets to run,
so several snapshots published while a proxy is slow collapse into one push (rule 17).
This module does not import grpc (go-control-plane: the cache never imports the server).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from envoy.config.core.v3.base_pb2 import Node

from meshplane.model.proxy import Proxy
from meshplane.xds.snapshot import CachedResource, Snapshot

_conn_ids = itertools.count(1)


def next_connection_id(node_id: str) -> str:
    """A process-unique connection id, readable in logs (Istio: `NODE-N`)."""
    return f"{node_id}-{next(_conn_ids)}"


@dataclass(eq=False)
class Connection:
    """One open ADS stream and what its client holds."""

    id: str
    node: Node
    proxy: Proxy | None
    key: str
    protocol: str
    connected_at: float = field(default_factory=time.time)
    held: dict[str, Mapping[str, CachedResource]] = field(default_factory=dict)
    """Type URL -> name -> the resource this client was last sent (for config dumps)."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    converged_on: Snapshot | None = None
    """The snapshot this client last fully acknowledged, None while anything is in flight."""
    acked: Snapshot | None = None
    """The snapshot this client last fully acknowledged, kept while a newer one is in flight
    (config status: what the proxy runs)."""
    sent: Snapshot | None = None
    """The snapshot the last response with new content came from (what a NACK rejected)."""


class SnapshotCache:
    """Snapshots by scope key, and the streams that watch each key."""

    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        self._set_at: dict[str, float] = {}
        self._connections: dict[str, Connection] = {}
        self._by_key: dict[str, set[str]] = {}

    def set(self, key: str, snapshot: Snapshot) -> None:
        """Publish `snapshot` for `key` and wake its streams; never blocks."""
        previous = self._snapshots.get(key)
        self._snapshots[key] = snapshot
        if previous is None or previous.version != snapshot.version:
            self._set_at[key] = time.monotonic()
        self._wake_key(key)

    def get(self, key: str) -> Snapshot | None:
        """The current snapshot for `key`, if any."""
        return self._snapshots.get(key)

    def set_at(self, key: str) -> float | None:
        """`time.monotonic()` when the content for `key` last changed."""
        return self._set_at.get(key)

    def drop(self, key: str) -> None:
        """Forget the snapshot for `key`; its streams keep what they have and wait."""
        self._snapshots.pop(key, None)
        self._set_at.pop(key, None)

    def keys(self) -> list[str]:
        """Scope keys that have a snapshot."""
        return sorted(self._snapshots)

    def register(self, conn: Connection) -> None:
        """Track a new stream and wake it so it answers from the current snapshot."""
        self._connections[conn.id] = conn
        self._by_key.setdefault(conn.key, set()).add(conn.id)
        conn.wake.set()

    def unregister(self, conn_id: str) -> None:
        """Forget a closed stream (rule 44)."""
        conn = self._connections.pop(conn_id, None)
        if conn is None:
            return
        ids = self._by_key.get(conn.key)
        if ids is not None:
            ids.discard(conn_id)
            if not ids:
                del self._by_key[conn.key]

    def assign(self, conn_id: str, key: str) -> None:
        """Move a stream to another scope key (its proxy's view changed) and wake it."""
        conn = self._connections.get(conn_id)
        if conn is None:
            return
        if conn.key != key:
            self.unregister(conn_id)
            conn.key = key
            conn.converged_on = None
            self.register(conn)
        conn.wake.set()

    def connection(self, conn_id: str) -> Connection | None:
        """The open stream with this id."""
        return self._connections.get(conn_id)

    def connections(self, key: str | None = None) -> list[Connection]:
        """Open streams (all, or those on one key), oldest first."""
        if key is None:
            conns = list(self._connections.values())
        else:
            conns = [self._connections[c] for c in self._by_key.get(key, ())]
        return sorted(conns, key=lambda c: c.connected_at)

    def _wake_key(self, key: str) -> None:
        for conn_id in self._by_key.get(key, ()):
            self._connections[conn_id].wake.set()
