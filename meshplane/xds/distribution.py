"""Config distribution status: for each config object, which proxies run its current version
(Istio's distribution tracking, `PILOT_ENABLE_STATUS`: users ask "applied by N of M?").

The bookkeeping stays off the push hot path. The config store records the model version at
which each object last changed (O(objects changed) per event). The pusher notes, per live
snapshot, the newest model version it is known to be right for (`SnapshotVersions`: one
entry per scope it already walks). Each stream keeps the snapshot its proxy last fully
ACKed and the one it was last sent (two references per stream, `Connection`). Which
proxies an object reaches, and how far each got, is only worked out when someone asks.

Memory: one weak-dict entry per live snapshot, one int per accepted config object, two
references per stream, and per view a frozenset of the config keys it was built from
(shared by every proxy of a scope).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

from meshplane.api.meta import ConfigKey, Object
from meshplane.model.mesh import MeshModel
from meshplane.model.proxy import Proxy
from meshplane.model.security_policies import applying
from meshplane.model.store import ConfigStore
from meshplane.model.views import view_for
from meshplane.xds import type_urls
from meshplane.xds.cache import Connection, SnapshotCache
from meshplane.xds.snapshot import Snapshot
from meshplane.xds.sync_status import SyncStatus

__all__ = ["ACKED", "NACKED", "PENDING", "TRACKED_KINDS", "ConfigStatus", "SnapshotVersions"]

ACKED = "ACKED"
PENDING = "PENDING"
NACKED = "NACKED"

# The config kinds a proxy's scope is known for (model/views.py, model/security_policies.py).
TRACKED_KINDS = (
    "VirtualService",
    "DestinationRule",
    "Gateway",
    "Sidecar",
    "PeerAuthentication",
    "AuthorizationPolicy",
    "RequestAuthentication",
)


class SnapshotVersions:
    """Snapshot -> the newest model version it is known to be correct for.

    A snapshot stays right for later models as long as its scope key does not change (the
    key folds in every object the scope uses), so each push raises the mark of every
    snapshot still in use. Entries go with their snapshots (weak keys)."""

    def __init__(self) -> None:
        self._valid: weakref.WeakKeyDictionary[Snapshot, int] = weakref.WeakKeyDictionary()

    def note(self, snapshot: Snapshot | None, model_version: int) -> None:
        """`snapshot` is what its scope should hold at `model_version`."""
        if snapshot is not None and model_version > self._valid.get(snapshot, -1):
            self._valid[snapshot] = model_version

    def valid_at(self, snapshot: Snapshot | None) -> int:
        """The newest model version `snapshot` is right for (-1: unknown or None)."""
        return -1 if snapshot is None else self._valid.get(snapshot, -1)


def configs_in_scope(mesh: MeshModel, proxy: Proxy) -> frozenset[ConfigKey]:
    """Keys of the tracked config objects `proxy`'s config is built from in `mesh`."""
    view = view_for(mesh, proxy)
    keys = set(view.configs)
    keys.update(p.key for p in view.authorization_policies)
    keys.update(p.key for p in view.request_authentications)
    if proxy.type != "router":  # gateways do not terminate mesh mTLS
        root = mesh.mesh_config.root_namespace
        pas = applying(mesh.peer_authentications, root, proxy.namespace, proxy.labels)
        keys.update(p.key for p in pas)
    return frozenset(keys)


def proxy_state(
    conn: Connection, sync: SyncStatus, versions: SnapshotVersions, changed_at: int
) -> tuple[str, str | None]:
    """(ACKED|PENDING|NACKED, the NACK message) for an object changed at `changed_at`.

    ACKED: the proxy acknowledged, on every type, a snapshot right for a model at or after
    the change. NACKED: it rejected a response from such a snapshot (it keeps its last
    accepted config). PENDING: neither yet."""
    errors = []
    for url, short in type_urls.SHORT_NAMES.items():
        progress = sync.progress(conn.id, url)
        if progress is not None and progress.error is not None:
            errors.append(f"{short.upper()}: {progress.error}")
    if errors and versions.valid_at(conn.sent) >= changed_at:
        return NACKED, "; ".join(errors)
    if versions.valid_at(conn.acked) >= changed_at:
        return ACKED, None
    return PENDING, None


class ConfigStatus:
    """Answers /debug/config_status from the store, the cache and the sync status."""

    def __init__(
        self,
        store: ConfigStore,
        cache: SnapshotCache,
        sync: SyncStatus,
        versions: SnapshotVersions,
    ) -> None:
        self._store = store
        self._cache = cache
        self._sync = sync
        self._versions = versions

    def report(
        self, kind: str | None = None, namespace: str | None = None, name: str | None = None
    ) -> list[dict[str, Any]]:
        """One entry per accepted tracked object (optionally only those matching): counts
        first, then each in-scope proxy's state."""
        mesh = self._store.mesh()
        objects = [
            o
            for o in self._store.objects()
            if o.kind in TRACKED_KINDS
            and kind in (None, o.kind)
            and namespace in (None, o.namespace)
            and name in (None, o.name)
        ]
        if not objects:
            return []
        scopes = [
            (conn, configs_in_scope(mesh, conn.proxy))
            for conn in self._cache.connections()
            if conn.proxy is not None
        ]
        return [self._entry(obj, scopes) for obj in objects]

    def _entry(
        self, obj: Object[Any], scopes: Iterable[tuple[Connection, frozenset[ConfigKey]]]
    ) -> dict[str, Any]:
        changed_at = self._store.changed_at(obj.key)
        proxies = []
        for conn, keys in scopes:
            if obj.key not in keys:
                continue
            state, error = proxy_state(conn, self._sync, self._versions, changed_at)
            assert conn.proxy is not None
            proxies.append(
                {"proxy": conn.node.id, "name": conn.proxy.short_name, "status": state}
                | ({"error": error} if error else {})
            )
        proxies.sort(key=lambda p: (p["name"], p["proxy"]))
        counts = {s: sum(1 for p in proxies if p["status"] == s) for s in (ACKED, PENDING, NACKED)}
        return {
            "kind": obj.kind,
            "namespace": obj.namespace,
            "name": obj.name,
            "origin": str(obj.origin),
            "version": changed_at,
            "in_scope": len(proxies),
            "acked": counts[ACKED],
            "pending": counts[PENDING],
            "nacked": counts[NACKED],
            "proxies": proxies,
        }
