"""Bookkeeping behind /debug/config_status: the model version each object last changed at,
which objects each proxy's view was built from, the model version each live snapshot is
right for, and ACKED/PENDING/NACKED from what a stream acknowledged or rejected."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3.base_pb2 import Node
from google.protobuf import json_format

from meshplane.api.meta import ConfigKey
from meshplane.model.proxy import Proxy
from meshplane.model.store import ConfigStore
from meshplane.sources.events import Event, Op, Origin
from meshplane.xds import type_urls
from meshplane.xds.cache import Connection, SnapshotCache
from meshplane.xds.distribution import (
    ACKED,
    NACKED,
    PENDING,
    ConfigStatus,
    SnapshotVersions,
    configs_in_scope,
    proxy_state,
)
from meshplane.xds.progress import TypeProgress
from meshplane.xds.pusher import Pusher
from meshplane.xds.snapshot import Snapshot
from meshplane.xds.sync_status import SyncStatus

NET = "networking.istio.io/v1"
HOST = "reviews.default.svc.cluster.local"


def manifest(kind: str, name: str, spec: dict[str, Any], ns: str = "default") -> dict[str, Any]:
    api = "v1" if kind == "Service" else NET
    if kind == "AuthorizationPolicy":
        api = "security.istio.io/v1"
    meta = {"name": name, "namespace": ns}
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


def up(m: dict[str, Any], doc: int = 0) -> Event:
    return Event(Op.UPSERT, m, Origin(f"{m['metadata']['name']}.yaml", doc, 1))


SERVICE = manifest("Service", "reviews", {"clusterIP": "10.0.0.1", "ports": [{"port": 9080}]})


def vs(name: str, timeout: str = "1s", export_to: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"hosts": [HOST], "http": [{"timeout": timeout, "route": []}]}
    spec["http"][0]["route"] = [{"destination": {"host": HOST}}]
    if export_to:
        spec["exportTo"] = export_to
    return manifest("VirtualService", name, spec)


def dr(name: str, subset: str) -> dict[str, Any]:
    spec = {"host": HOST, "subsets": [{"name": subset, "labels": {"version": subset}}]}
    return manifest("DestinationRule", name, spec)


def proxy(ns: str, app: str = "x") -> Proxy:
    node = f"sidecar~10.0.0.9~{app}.{ns}~{ns}.svc.cluster.local"
    return Proxy.from_node(node, {"LABELS": {"app": app}})


def test_the_store_records_the_version_an_object_last_changed_meaning_at() -> None:
    store = ConfigStore()
    store.apply(up(SERVICE))
    store.apply(up(vs("r")))
    key = ConfigKey("VirtualService", "default", "r")
    first = store.changed_at(key)
    assert first == store.version
    store.apply(up(vs("r")))  # rewritten, same meaning
    assert store.changed_at(key) == first
    store.apply(up(vs("r", timeout="2s")))
    assert store.changed_at(key) == store.version > first
    store.apply(Event(Op.DELETE, vs("r"), Origin("r.yaml")))
    assert store.changed_at(key) == 0


def test_a_view_lists_the_objects_it_was_built_from() -> None:
    store = ConfigStore()
    for i, m in enumerate([SERVICE, vs("local", export_to=["."]), dr("a", "v1"), dr("b", "v2")]):
        store.apply(up(m, doc=i))
    policy = manifest("AuthorizationPolicy", "only-y", {"selector": {"matchLabels": {"app": "y"}}})
    store.apply(up(policy, doc=9))
    mesh = store.mesh()
    in_default = configs_in_scope(mesh, proxy("default"))
    # Both DestinationRules: the younger one is merged into the older (keeping its name).
    assert {str(k) for k in in_default} == {
        "VirtualService/default/local",
        "DestinationRule/default/a",
        "DestinationRule/default/b",
    }
    elsewhere = configs_in_scope(mesh, proxy("apps"))
    assert ConfigKey("VirtualService", "default", "local") not in elsewhere
    selected = configs_in_scope(mesh, proxy("default", app="y"))
    assert ConfigKey("AuthorizationPolicy", "default", "only-y") in selected


def test_a_snapshot_keeps_the_newest_model_version_it_was_right_for() -> None:
    versions = SnapshotVersions()
    snap = Snapshot({})
    assert versions.valid_at(snap) == versions.valid_at(None) == -1
    versions.note(snap, 5)
    versions.note(snap, 3)
    assert versions.valid_at(snap) == 5


def stream(progress: dict[str, TypeProgress] | None = None) -> tuple[Connection, SyncStatus]:
    cache = SnapshotCache()
    conn = Connection(id="c-1", node=Node(id="n"), proxy=None, key="k", protocol="sotw")
    sync = SyncStatus(cache)
    sync.track(conn, progress or {})
    return conn, sync


def test_acked_pending_nacked_follow_what_the_stream_acknowledged_or_rejected() -> None:
    versions = SnapshotVersions()
    old, new = Snapshot({}), Snapshot({})
    versions.note(old, 3)
    versions.note(new, 5)
    cds = TypeProgress(type_urls.CLUSTER)
    conn, sync = stream({type_urls.CLUSTER: cds})
    conn.acked = old
    assert proxy_state(conn, sync, versions, changed_at=4) == (PENDING, None)
    assert proxy_state(conn, sync, versions, changed_at=3) == (ACKED, None)
    conn.sent = new
    cds.error = "bad cluster"
    assert proxy_state(conn, sync, versions, changed_at=4) == (NACKED, "CDS: bad cluster")
    # A rejection of something older than the change says nothing about it.
    assert proxy_state(conn, sync, versions, changed_at=6) == (PENDING, None)
    cds.error = None
    conn.acked = new
    assert proxy_state(conn, sync, versions, changed_at=4) == (ACKED, None)


async def test_the_pusher_marks_snapshots_and_the_report_counts_proxies_in_scope() -> None:
    store = ConfigStore()
    for i, m in enumerate([SERVICE, vs("local", export_to=["."])]):
        store.apply(up(m, doc=i))
    cache = SnapshotCache()
    pusher = Pusher(store, cache)
    sync = SyncStatus(cache)
    conns = []
    for ns in ("default", "apps"):
        p = proxy(ns)
        node = Node(id=f"sidecar~10.0.0.9~x.{ns}~{ns}.svc.cluster.local")
        json_format.ParseDict({"LABELS": {"app": "x"}}, node.metadata)
        conn = Connection(id=ns, node=node, proxy=p, key="", protocol="sotw")
        cache.register(conn)
        sync.track(conn, {})
        conns.append(conn)
    status = ConfigStatus(store, cache, sync, pusher.versions)
    await pusher.push(store.apply(up(vs("local", "3s", ["."]), doc=1)))
    for conn in conns:
        conn.acked = cache.get(conn.key)
    [entry] = status.report(kind="VirtualService")
    assert (entry["in_scope"], entry["acked"], entry["pending"]) == (1, 1, 0)
    assert [p["name"] for p in entry["proxies"]] == ["x.default"]
    await pusher.push(store.apply(up(vs("local", "4s", ["."]), doc=1)))
    [entry] = status.report(kind="VirtualService", name="local")
    assert (entry["version"], entry["acked"], entry["pending"]) == (store.version, 0, 1)
    assert status.report(kind="VirtualService", name="missing") == []
