"""Rules 42 and 43: resource TTLs and heartbeats, over real gRPC streams (SotW and Delta).

SotW TTLs are off by default (Envoy 1.40 crashes on a SotW TTL expiry, see ttl.py), so the
SotW cases run a server with `sotw_ttl=True`, as a non-Envoy SotW client would need.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from envoy.config.core.v3.base_pb2 import Node
from envoy.service.discovery.v3.discovery_pb2 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    Resource,
)
from google.rpc.status_pb2 import Status
from xds_testkit import (
    CDS,
    EDS,
    Server,
    base_snapshot,
    cla,
    cluster,
    open_client,
    running_server,
    snap,
)

from meshplane.xds import type_urls
from meshplane.xds.delta import DeltaSession
from meshplane.xds.snapshot import Snapshot

TTL = 1.6
"""Heartbeats come at half of it; the other half is the slack a loaded machine gets."""
FEATURES = ["xds.config.supports-resource-ttl", "xds.config.resource-in-sotw"]
PROTOCOLS = ["sotw", "delta"]


@pytest.fixture
async def xds_ttl() -> AsyncIterator[Server]:
    async with running_server(sotw_ttl=True) as srv:
        yield srv


def ttl_node(features: list[str] = FEATURES) -> Node:
    return Node(id="ttl-client", cluster="default", client_features=features)


def with_ttl(snapshot: Snapshot, seconds: float = TTL) -> Snapshot:
    return snapshot.with_ttls({EDS: seconds})


def entries(resp: Any) -> list[Resource]:
    """Each resource of a response as a Resource: Delta's own, SotW's unwrapped or bare."""
    if isinstance(resp, DeltaDiscoveryResponse):
        return list(resp.resources)
    out = []
    for item in resp.resources:
        if item.type_url == type_urls.RESOURCE:
            wrapped = Resource()
            item.Unpack(wrapped)
            out.append(wrapped)
        else:
            out.append(Resource(resource=item))
    return out


async def subscribe_eds(srv: Server, protocol: str, n: Node) -> tuple[Any, Any]:
    """A client on CDS + EDS "a"; returns it and its first (ACKed) EDS response."""
    c = await open_client(srv, protocol, n)
    c.request(CDS)
    c.ack(await c.recv_type(CDS))
    c.request(EDS, ["a"])
    eds = await c.recv_type(EDS)
    c.ack(eds, ["a"])
    return c, eds


@pytest.mark.parametrize(
    ("protocol", "features"),
    [("sotw", []), ("sotw", ["xds.config.supports-resource-ttl"]), ("delta", [])],
)
async def test_rule_42_no_ttl_without_the_feature(
    xds_ttl: Server, protocol: str, features: list[str]
) -> None:
    """No TTL and no heartbeat for a client without the feature(s) (SotW needs both)."""
    xds_ttl.cache.set("default", with_ttl(base_snapshot(), 0.4))
    c, eds = await subscribe_eds(xds_ttl, protocol, ttl_node(features))
    if protocol == "sotw":
        assert [r.type_url for r in eds.resources] == [EDS]
    [entry] = entries(eds)
    assert not entry.HasField("ttl") and entry.resource.type_url == EDS
    assert await c.silent(within=1.0)  # 2.5 TTLs: no heartbeat


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_rule_42_ttl_for_a_client_with_the_feature(xds_ttl: Server, protocol: str) -> None:
    """EDS resources carry the TTL (SotW: wrapped in Resource); CDS never does."""
    xds_ttl.cache.set("default", with_ttl(base_snapshot()))
    c = await open_client(xds_ttl, protocol, ttl_node())
    c.request(CDS)
    cds = await c.recv_type(CDS)
    assert all(not e.HasField("ttl") for e in entries(cds))
    if protocol == "sotw":
        assert {r.type_url for r in cds.resources} == {CDS}
    c.ack(cds)
    c.request(EDS, ["a"])
    eds = await c.recv_type(EDS)
    [entry] = entries(eds)
    if protocol == "sotw":
        assert [r.type_url for r in eds.resources] == [type_urls.RESOURCE]
    assert entry.name == "a"
    assert entry.ttl.ToMilliseconds() == int(TTL * 1000)
    assert entry.resource.type_url == EDS and entry.resource.value


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_rule_43_heartbeats_before_the_ttl_each_after_an_ack(
    xds_ttl: Server, protocol: str
) -> None:
    xds_ttl.cache.set("default", with_ttl(base_snapshot()))
    c, eds = await subscribe_eds(xds_ttl, protocol, ttl_node())
    [sent] = entries(eds)
    for _ in range(2):
        beat = await c.recv_type(EDS, timeout=TTL)  # before the TTL runs out
        [entry] = entries(beat)
        assert entry.name == "a" and not entry.HasField("resource")
        assert entry.ttl.ToMilliseconds() == int(TTL * 1000)
        assert beat.nonce and beat.nonce != eds.nonce
        if protocol == "sotw":
            assert beat.version_info == eds.version_info
        else:
            assert entry.version == sent.version
        # Rule 17: the heartbeat is a response like any other; none follows before its ACK.
        assert await c.silent(within=TTL)
        c.ack(beat, ["a"])
        eds = beat
    assert xds_ttl.sync.rows()[0]["types"]["eds"]["status"] == "SYNCED"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_rule_42_removing_the_ttl_resends_without_it(xds_ttl: Server, protocol: str) -> None:
    base = base_snapshot()
    xds_ttl.cache.set("default", with_ttl(base))
    c, _ = await subscribe_eds(xds_ttl, protocol, ttl_node())
    xds_ttl.cache.set("default", base)  # the same resources, no TTL
    resent = await c.recv_type(EDS)
    [entry] = entries(resent)
    assert entry.resource.type_url == EDS and not entry.HasField("ttl")
    if protocol == "sotw":
        assert [r.type_url for r in resent.resources] == [EDS]
    c.ack(resent, ["a"])
    assert await c.silent(within=TTL)  # no heartbeats without a TTL


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_rule_42_changed_endpoints_keep_their_ttl(xds_ttl: Server, protocol: str) -> None:
    snapshot = with_ttl(base_snapshot())
    xds_ttl.cache.set("default", snapshot)
    c, _ = await subscribe_eds(xds_ttl, protocol, ttl_node())
    xds_ttl.cache.set("default", snapshot.with_changed_endpoints({"a": cla("a", 19999)}))
    changed = await c.recv_type(EDS)
    [entry] = entries(changed)
    assert entry.HasField("resource") and entry.ttl.ToMilliseconds() == int(TTL * 1000)


async def test_rule_42_sotw_envoy_gets_no_ttl_by_default(xds: Server) -> None:
    """The default server serves SotW clients no TTL even when they advertise it."""
    xds.cache.set("default", with_ttl(snap(clusters=[cluster("a")], endpoints=[cla("a")])))
    c, eds = await subscribe_eds(xds, "sotw", ttl_node())
    assert [r.type_url for r in eds.resources] == [EDS]
    assert await c.silent(within=TTL)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rule_42_43_delta_state_reconnect_and_nack() -> None:
    """A reconnecting client gets what it holds again with the TTL; a NACK stops heartbeats."""
    clock = FakeClock()
    eds = with_ttl(base_snapshot()).get(EDS)
    s = DeltaSession(clock=clock)
    s.enable_ttl()
    held = {"a": eds.resources["a"].version}
    s.handle(
        DeltaDiscoveryRequest(
            type_url=EDS, resource_names_subscribe=["a"], initial_resource_versions=held
        )
    )
    first = s.next_response(eds)
    assert first is not None and [r.name for r in first.resources] == ["a"]
    assert s.next_heartbeat_at() is None  # in flight
    s.handle(DeltaDiscoveryRequest(type_url=EDS, response_nonce=first.nonce))
    assert s.next_heartbeat_at() == 100.0 + TTL / 2
    assert s.next_response(eds) is None
    clock.now += TTL / 2
    beat = s.next_response(eds)
    assert beat is not None and beat.heartbeat
    nack = DeltaDiscoveryRequest(type_url=EDS, response_nonce=beat.nonce)
    nack.error_detail.CopyFrom(Status(message="no"))
    s.handle(nack)
    clock.now += TTL
    assert s.next_heartbeat_at() is None and s.next_response(eds) is None
