"""Pusher: from a model change to the snapshots the affected proxies need.

The bridge between the config pipeline and the xDS cache (Contour's observer step).
Every connected proxy's view is recomputed against the new model; proxies whose view key
is unchanged keep their snapshot, and get a new EDS only if an endpoint they can see
changed (Istio's incremental EDS push), built for the changed hosts alone. A key nobody
has translated yet is translated once, however many proxies share it. Snapshots no proxy
uses any more are dropped.

The pusher owns a TranslationMemo shared by every scope: clusters, assignments and virtual
hosts whose inputs did not change are reused as built (and, being the same objects, are not
serialized again by the snapshot interner), so a config edit costs roughly what the
resources it changes cost. After each translating push the memo keeps only what that push
used (see `_sweep_memo`), which bounds it by the live scopes however much config churns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from envoy.config.core.v3.base_pb2 import Node
from google.protobuf import json_format

from meshplane.model.changes import Change
from meshplane.model.proxy import BadNode, Proxy
from meshplane.model.scope import ProxyView
from meshplane.model.store import ConfigStore
from meshplane.model.views import view_for
from meshplane.translators import TranslationMemo, translate
from meshplane.translators.endpoints import cluster_load_assignments
from meshplane.xds.cache import SnapshotCache
from meshplane.xds.distribution import SnapshotVersions
from meshplane.xds.snapshot import Snapshot

log = logging.getLogger("meshplane.xds.pusher")

_SWEEP_EVERY = 8


class Pusher:
    """Keeps one snapshot per scope key in use, current with the config store."""

    def __init__(
        self,
        store: ConfigStore,
        cache: SnapshotCache,
        *,
        on_push: Callable[[str, float], None] | None = None,
    ) -> None:
        self._store = store
        self._cache = cache
        self._views: dict[str, ProxyView] = {}
        self._memo = TranslationMemo()
        self._pushes_since_sweep = 0
        self._on_push = on_push  # (kind "full"|"eds", seconds) for metrics
        self.versions = SnapshotVersions()
        """Which model version each live snapshot is right for (config status)."""

    async def resolve(self, node: Node) -> str:
        """ADS resolver: the scope key for a newly connected node, its snapshot made ready."""
        try:
            proxy = Proxy.from_node(node.id, json_format.MessageToDict(node.metadata))
        except BadNode as exc:
            raise ValueError(str(exc)) from exc
        mesh = self._store.mesh()
        view = view_for(mesh, proxy)
        self._ensure(view)
        self.versions.note(self._cache.get(view.key), mesh.version)
        return view.key

    async def push(self, change: Change) -> None:
        """Bring every connected proxy's snapshot up to the store's current model."""
        started = time.perf_counter()
        mesh = self._store.mesh()
        assignments: list[tuple[str, str]] = []
        views: dict[str, ProxyView] = {}
        for conn in self._cache.connections():
            if conn.proxy is None:
                continue
            view = view_for(mesh, conn.proxy)
            views.setdefault(view.key, view)
            assignments.append((conn.id, view.key))
        translated = refreshed = 0
        for key, view in views.items():
            if self._cache.get(key) is None:
                self._ensure(view)
                translated += 1
            elif self._sees(view, change.endpoint_hosts):
                self._refresh_endpoints(view, change.endpoint_hosts)
                refreshed += 1
            # Translation is CPU-bound: let streams send between scopes.
            await asyncio.sleep(0)
        for key in views:
            # Unchanged keys too: their snapshot is still what this model asks for.
            self.versions.note(self._cache.get(key), mesh.version)
        for conn_id, key in assignments:
            self._cache.assign(conn_id, key)
        self._forget_unused(set(views))
        if translated:
            self._sweep_memo(every_scope=translated == len(views))
        elapsed = time.perf_counter() - started
        log.info(
            "push: model v%d, %d proxies, %d scopes (%d translated, %d EDS-only) in %.3fs",
            mesh.version,
            len(assignments),
            len(views),
            translated,
            refreshed,
            elapsed,
        )
        if self._on_push is not None:
            self._on_push("full" if translated else "eds", elapsed)

    def _ensure(self, view: ProxyView) -> None:
        if self._cache.get(view.key) is not None:
            return
        snapshot = Snapshot.from_resources(translate(view, self._memo))
        problems = snapshot.consistent()
        if problems:
            # A translator bug: report it loudly; Envoy warms what it can.
            log.error("inconsistent snapshot for scope %s: %s", view.key, "; ".join(problems))
        self._views[view.key] = view
        self._cache.set(view.key, snapshot)

    def _sweep_memo(self, every_scope: bool) -> None:
        # A push that re-translated every live scope has used all the memo still needs; after
        # a partial one, entries only the untouched scopes use would go and be rebuilt at the
        # next edit, so those sweeps wait (bounded: one in _SWEEP_EVERY translating pushes).
        self._pushes_since_sweep += 1
        if every_scope or self._pushes_since_sweep >= _SWEEP_EVERY:
            self._memo.sweep()
            self._pushes_since_sweep = 0

    def _refresh_endpoints(self, view: ProxyView, hosts: frozenset[str]) -> None:
        current = self._cache.get(view.key)
        if current is None:
            return
        self._views[view.key] = view
        # The view key is unchanged, so its EDS cluster names are too: only the assignments
        # of the changed hosts can differ from what the snapshot holds.
        changed = cluster_load_assignments(view, self._memo, hosts)
        self._cache.set(view.key, current.with_changed_endpoints(changed))

    @staticmethod
    def _sees(view: ProxyView, hosts: frozenset[str]) -> bool:
        if not hosts:
            return False
        return any(svc.hostname in hosts for svc in view.services)

    def _forget_unused(self, in_use: set[str]) -> None:
        # Keys assigned by resolve() after this push began are in use too.
        in_use |= {c.key for c in self._cache.connections()}
        for key in list(self._views):
            if key not in in_use:
                del self._views[key]
                self._cache.drop(key)
