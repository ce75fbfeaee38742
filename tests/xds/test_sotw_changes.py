"""SotW EDS/RDS responses carry only what the client lacks (rule 22); CDS/LDS stay full.

Also checks what makes that cheap: streams of one scope share the response body and, once
in sync, the mapping of what they hold and their subscribed name sets.
"""

from __future__ import annotations

from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest, DiscoveryResponse
from xds_testkit import (
    CDS,
    EDS,
    LDS,
    RDS,
    Server,
    cla,
    cluster,
    listener,
    names,
    route,
    snap,
)

from meshplane.xds.snapshot import Snapshot
from meshplane.xds.sotw import SotwSession, changes

SERVICES = ["a", "b", "c"]


def mesh(
    *, ports: dict[str, int] | None = None, timeouts: dict[str, int] | None = None
) -> Snapshot:
    """Clusters a, b, c with endpoints, one route each, one listener using r-a."""
    ports = ports or {}
    timeouts = timeouts or {}
    return snap(
        clusters=[cluster(n, timeout_s=timeouts.get(n, 1)) for n in SERVICES],
        endpoints=[cla(n, ports.get(n, 18080)) for n in SERVICES],
        routes=[route(f"r-{n}", n) for n in SERVICES],
        listeners=[listener("l", 15001, "r-a")],
    )


async def test_endpoint_change_sends_only_that_endpoint(xds: Server) -> None:
    """Rule 22: one changed ClusterLoadAssignment is sent alone, at the new EDS version."""
    xds.cache.set("default", mesh())
    c = await xds.sotw()
    c.request(EDS, SERVICES)
    first = await c.recv_type(EDS)
    assert names(first) == SERVICES
    c.ack(first, SERVICES)
    changed = mesh(ports={"b": 9999})
    xds.cache.set("default", changed)
    update = await c.recv_type(EDS)
    assert names(update) == ["b"]
    assert update.version_info == changed.type_versions()["eds"] != first.version_info
    c.ack(update, SERVICES)
    assert await c.silent()


async def test_route_change_sends_only_that_route(xds: Server) -> None:
    """Rule 22 for RDS: only the changed RouteConfiguration."""
    xds.cache.set("default", mesh())
    c = await xds.sotw()
    wanted = ["r-a", "r-b", "r-c"]
    c.request(RDS, wanted)
    c.ack(await c.recv_type(RDS), wanted)
    changed = snap(
        clusters=[cluster(n) for n in SERVICES],
        endpoints=[cla(n) for n in SERVICES],
        routes=[route("r-a", "a"), route("r-b", "b"), route("r-c", "a")],
        listeners=[listener("l", 15001, "r-a")],
    )
    xds.cache.set("default", changed)
    update = await c.recv_type(RDS)
    assert names(update) == ["r-c"]
    assert update.version_info == changed.type_versions()["rds"]


async def test_cluster_and_listener_changes_stay_full_state(xds: Server) -> None:
    """Rule 21: a change to one cluster resends every cluster (absence would delete)."""
    xds.cache.set("default", mesh())
    c = await xds.sotw()
    c.request(CDS)
    c.request(LDS)
    c.ack(await c.recv_type(CDS))
    c.ack(await c.recv_type(LDS))
    xds.cache.set("default", mesh(timeouts={"c": 5}))
    assert names(await c.recv_type(CDS)) == SERVICES


async def test_rule_36_changed_cluster_gets_its_unchanged_endpoints(xds: Server) -> None:
    """Rule 36: after CDS changes cluster c, EDS re-sends c (only c), endpoints unchanged."""
    xds.cache.set("default", mesh())
    c = await xds.sotw()
    c.request(CDS)
    cds = await c.recv_type(CDS)
    c.request(EDS, SERVICES)
    eds = await c.recv_type(EDS)
    c.ack(cds)
    c.ack(eds, SERVICES)
    assert await c.silent()
    changed = mesh(timeouts={"c": 5})
    xds.cache.set("default", changed)
    assert names(await c.recv_type(CDS)) == SERVICES
    forced = await c.recv_type(EDS)
    assert names(forced) == ["c"]
    assert forced.version_info == changed.type_versions()["eds"] == eds.version_info


async def test_unchanged_republish_sends_nothing(xds: Server) -> None:
    """Equal content in a new snapshot object is no change for a named type either."""
    xds.cache.set("default", mesh())
    c = await xds.sotw()
    c.request(EDS, SERVICES)
    c.ack(await c.recv_type(EDS), SERVICES)
    xds.cache.set("default", mesh())
    assert await c.silent()
    xds.cache.set("default", mesh(ports={"a": 1}))
    assert names(await c.recv_type(EDS)) == ["a"]


async def test_nack_of_a_partial_response_parks_until_change(xds: Server) -> None:
    """Rule 11 with partial responses: the rejected one is not resent; the next change is."""
    xds.cache.set("default", mesh())
    c = await xds.sotw()
    c.request(EDS, SERVICES)
    good = await c.recv_type(EDS)
    c.ack(good, SERVICES)
    xds.cache.set("default", mesh(ports={"b": 7}))
    bad = await c.recv_type(EDS)
    c.nack(bad, "b rejected", prev_version=good.version_info, resource_names=SERVICES)
    assert await c.silent()
    xds.cache.set("default", mesh(ports={"b": 8}))
    assert names(await c.recv_type(EDS)) == ["b"]


def _decode(data: bytes) -> DiscoveryResponse:
    return DiscoveryResponse.FromString(data)


def test_streams_of_one_scope_share_body_holdings_and_names() -> None:
    """Many proxies, one scope: one change body, one held mapping, one name set."""
    sessions = [SotwSession() for _ in range(3)]
    before, after = mesh(), mesh(ports={"c": 4242})
    outs = []
    for s in sessions:
        # separate request objects, as separate streams decode them
        s.handle(DiscoveryRequest(type_url=EDS, resource_names=list(SERVICES)))
        out = s.next_response(before.get(EDS))
        assert out is not None
        s.handle(
            DiscoveryRequest(
                type_url=EDS,
                resource_names=list(SERVICES),
                response_nonce=out.nonce,
                version_info=out.version,
            )
        )
        outs.append(s.next_response(after.get(EDS)))
    states = [s.states[EDS] for s in sessions]
    assert all(st.names is states[0].names for st in states)
    assert all(st.held is states[0].held for st in states)
    held_view = after.get(EDS).view(states[0].names).resources
    assert states[0].held is held_view
    bodies = {o.data[: -len(o.nonce) - 2] for o in outs if o is not None}
    assert len(bodies) == 1 and len(outs) == 3
    decoded = _decode(outs[0].data if outs[0] is not None else b"")
    assert [r.type_url for r in decoded.resources] == [EDS]
    view = after.get(EDS).view(states[0].names)
    old = before.get(EDS).view(states[0].names).resources
    assert changes(view, old) is changes(view, old)


def test_full_change_reuses_the_views_body() -> None:
    """A client lacking everything gets the view's own shared body, not a new copy."""
    s = SotwSession()
    s.handle(DiscoveryRequest(type_url=EDS, resource_names=["a", "b"]))
    resources = mesh().get(EDS)
    out = s.next_response(resources)
    assert out is not None
    view = resources.view(s.states[EDS].names)
    assert out.data.startswith(view.sotw_body())
    assert names(_decode(out.data)) == ["a", "b"]
