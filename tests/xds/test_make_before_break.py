"""Rule 35, make-before-break: stale clusters are removed last, after the new routes.

A snapshot that moves route r1 from cluster a to a new cluster b and drops a must not cut
a before the client runs the new route (istio#23956): CDS first carries a and b, routes
follow once the client answered that CDS (Envoy holds the ACK until b is warm), and a
goes only after LDS and RDS were ACKed. Real gRPC streams, SotW and Delta.
"""

from __future__ import annotations

from typing import Any

from envoy.config.route.v3.route_pb2 import RouteConfiguration
from xds_testkit import (
    CDS,
    EDS,
    LDS,
    RDS,
    DeltaClient,
    Server,
    SotwClient,
    cla,
    cluster,
    eventually,
    listener,
    names,
    route,
    snap,
)

from meshplane.xds.snapshot import Snapshot


def config(target: str, *, others: tuple[str, ...] = (), route_name: str = "r1") -> Snapshot:
    """Cluster `target` (plus `others`) with endpoints; l1 -> `route_name` -> `target`."""
    clusters = [target, *others]
    return snap(
        clusters=[cluster(n) for n in clusters],
        endpoints=[cla(n) for n in clusters],
        listeners=[listener("l1", 15001, route_name)],
        routes=[route(route_name, target)],
    )


def route_target(resp: Any) -> str:
    """The cluster of the first route of the first RouteConfiguration in a response."""
    first = resp.resources[0]
    msg = RouteConfiguration()
    (first.resource if hasattr(resp, "system_version_info") else first).Unpack(msg)
    return str(msg.virtual_hosts[0].routes[0].route.cluster)


def status(srv: Server, short: str) -> str:
    return str(srv.sync.rows()[0]["types"][short]["status"])


async def sotw_synced_on(srv: Server, s: Snapshot) -> tuple[SotwClient, dict[str, Any]]:
    """A SotW client like Envoy: CDS, EDS, LDS, RDS all ACKed at `s`."""
    srv.cache.set("default", s)
    c = await srv.sotw()
    held = {}
    for type_url, subscribe in ((CDS, []), (EDS, ["a"]), (LDS, []), (RDS, ["r1"])):
        c.request(type_url, subscribe)
        held[type_url] = await c.recv_type(type_url)
        c.ack(held[type_url], subscribe)
    assert await srv.sync.wait_converged(timeout=10)
    return c, held


async def delta_synced_on(srv: Server, s: Snapshot) -> DeltaClient:
    """A Delta client like Envoy: CDS, EDS, LDS, RDS all ACKed at `s`."""
    srv.cache.set("default", s)
    d = await srv.delta()
    for type_url, subscribe in ((CDS, []), (EDS, ["a"]), (LDS, []), (RDS, ["r1"])):
        d.request(type_url, subscribe)
        d.ack(await d.recv_type(type_url))
    assert await srv.sync.wait_converged(timeout=10)
    return d


async def test_rule_35_sotw_stale_cluster_removed_after_routes(xds: Server) -> None:
    """Rule 35 (SotW): CDS a+b, then EDS b, RDS r1->b after the CDS ACK, CDS b last."""
    c, held = await sotw_synced_on(xds, config("a"))
    new = config("b")
    xds.cache.set("default", new)
    interim = await c.recv_type(CDS)
    assert sorted(names(interim)) == ["a", "b"]  # full state = new + still-held stale
    assert interim.version_info not in (
        new.type_versions()["cds"],
        held[CDS].version_info,
    )
    # Envoy subscribes b's endpoints while b warms; EDS never waits on the CDS ACK.
    c.request(EDS, ["a", "b"], version=held[EDS].version_info, nonce=held[EDS].nonce)
    eds = await c.recv_type(EDS)
    assert names(eds) == ["b"]
    c.ack(eds, ["a", "b"])
    assert await c.silent()  # routes wait until the client answers the CDS (b warm)
    c.ack(interim)
    routes = await c.recv_type(RDS)
    assert route_target(routes) == "b"
    assert await c.silent()  # a stays until the new route is ACKed
    assert not xds.sync.converged()
    assert xds.sync.rows()[0]["types"]["cds"]["acked"] == interim.version_info
    c.ack(routes, ["r1"])
    final = await c.recv_type(CDS)
    assert names(final) == ["b"] and final.version_info == new.type_versions()["cds"]
    c.ack(final)
    assert await xds.sync.wait_converged(timeout=10)
    assert status(xds, "cds") == "SYNCED"
    assert await c.silent()  # dropping a warms nothing: no EDS resend (rule 36)


async def test_rule_35_delta_stale_cluster_removed_after_routes(xds: Server) -> None:
    """Rule 35 (Delta): CDS adds b without removals, a's endpoints stay, removal last."""
    d = await delta_synced_on(xds, config("a"))
    new = config("b")
    xds.cache.set("default", new)
    interim = await d.recv_type(CDS)
    assert [r.name for r in interim.resources] == ["b"] and not interim.removed_resources
    assert interim.system_version_info != new.type_versions()["cds"]
    d.request(EDS, ["b"])  # Envoy subscribes the new cluster's endpoints
    eds = await d.recv_type(EDS)
    assert [r.name for r in eds.resources] == ["b"]
    assert not eds.removed_resources  # a's endpoints are not cut while a may serve
    d.ack(eds)
    assert await d.silent()
    d.ack(interim)
    routes = await d.recv_type(RDS)
    assert route_target(routes) == "b"
    assert await d.silent()
    d.ack(routes)
    final = await d.recv_type(CDS)
    assert not final.resources and list(final.removed_resources) == ["a"]
    assert final.system_version_info == new.type_versions()["cds"]
    d.ack(final)
    gone = await d.recv_type(EDS)  # a's endpoints go with it (Envoy unsubscribes anyway)
    assert list(gone.removed_resources) == ["a"]
    d.ack(gone)
    assert await xds.sync.wait_converged(timeout=10)


async def test_rule_35_route_rename_waits_for_new_rds_subscription(xds: Server) -> None:
    """Rule 35: the listener now uses r2; a goes only once r2 is subscribed and ACKed."""
    c, held = await sotw_synced_on(xds, config("a"))
    xds.cache.set("default", config("b", route_name="r2"))
    interim = await c.recv_type(CDS)
    assert sorted(names(interim)) == ["a", "b"]
    c.ack(interim)
    lds = await c.recv_type(LDS)
    c.ack(lds)
    # LDS is ACKed but the client still runs r1 (it has not asked for r2 yet): a stays.
    assert await c.silent()
    c.request(RDS, ["r1", "r2"], version=held[RDS].version_info, nonce=held[RDS].nonce)
    routes = await c.recv_type(RDS)
    assert names(routes) == ["r2"] and route_target(routes) == "b"
    c.ack(routes, ["r1", "r2"])
    final = await c.recv_type(CDS)
    assert names(final) == ["b"]


async def test_rule_35_later_snapshot_folds_into_the_handover(xds: Server) -> None:
    """Rules 35 and 17: a third snapshot mid-handover joins the union; one CDS in flight."""
    c, _ = await sotw_synced_on(xds, config("a"))
    xds.cache.set("default", config("b"))
    interim = await c.recv_type(CDS)
    assert sorted(names(interim)) == ["a", "b"]
    third = config("c")
    xds.cache.set("default", third)
    assert await c.silent()  # the union is still un-ACKed
    c.ack(interim)
    union = await c.recv_type(CDS)
    assert sorted(names(union)) == ["a", "b", "c"]
    c.ack(union)
    routes = await c.recv_type(RDS)
    assert route_target(routes) == "c"
    c.ack(routes, ["r1"])
    final = await c.recv_type(CDS)
    assert names(final) == ["c"] and final.version_info == third.type_versions()["cds"]


async def test_rule_35_removal_is_immediate_when_routes_do_not_change(xds: Server) -> None:
    """Rule 35: dropping a cluster no route uses needs no intermediate step."""
    c, _ = await sotw_synced_on(xds, config("a", others=("spare",)))
    smaller = config("a")
    xds.cache.set("default", smaller)
    cds = await c.recv_type(CDS)
    assert names(cds) == ["a"] and cds.version_info == smaller.type_versions()["cds"]


async def test_rule_35_rejected_routes_keep_the_stale_cluster(xds: Server) -> None:
    """Rule 35: while the new route is NACKed the client still uses a, so a stays."""
    c, _ = await sotw_synced_on(xds, config("a"))
    xds.cache.set("default", config("b"))
    c.ack(await c.recv_type(CDS))
    routes = await c.recv_type(RDS)
    c.nack(routes, "route r1 rejected", resource_names=["r1"])
    await eventually(lambda: status(xds, "rds") == "ERROR")
    assert await c.silent()
    assert not xds.sync.converged()
    fixed = config("a")
    xds.cache.set("default", fixed)  # back to a: b goes once r1 -> a is ACKed again
    resp = await c.recv()
    while resp.type_url != RDS:
        assert resp.type_url != CDS, "b removed before the routes were accepted"
        c.ack(resp, names(resp))
        resp = await c.recv()
    assert route_target(resp) == "a"
    c.ack(resp, ["r1"])
    cds = await c.recv_type(CDS)
    assert names(cds) == ["a"] and cds.version_info == fixed.type_versions()["cds"]
