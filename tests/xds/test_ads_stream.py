"""Rules that hold for SotW and Delta alike, each test run over both protocols."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.service.cluster.v3 import cds_pb2_grpc
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest
from envoy.service.endpoint.v3 import eds_pb2_grpc
from xds_testkit import (
    CDS,
    EDS,
    LDS,
    RDS,
    SDS,
    Server,
    SotwClient,
    base_snapshot,
    cla,
    cluster,
    eventually,
    listener,
    names,
    node,
    open_client,
    resources,
    route,
    running_server,
    secret,
    snap,
)

from meshplane.xds.server import SERVER_OPTIONS
from meshplane.xds.snapshot import Interner, Snapshot

BOTH = pytest.mark.parametrize("protocol", ["sotw", "delta"])


@BOTH
async def test_rule_1_ads_serves_both_variants(xds: Server, protocol: str) -> None:
    """Rule 1: StreamAggregatedResources and DeltaAggregatedResources are served."""
    xds.cache.set("default", base_snapshot())
    c = await open_client(xds, protocol)
    c.request(CDS)
    assert sorted(names(await c.recv_type(CDS))) == ["a", "b"]


async def test_rule_1_per_type_services(xds: Server) -> None:
    """Rule 1: the per-type services (CDS/EDS shown) imply their type URL."""
    xds.cache.set("default", base_snapshot())
    ch = xds.channel()

    async def one(req: DiscoveryRequest) -> object:
        async def gen() -> AsyncIterator[DiscoveryRequest]:
            yield req
            await asyncio.sleep(5)

        call = cds_pb2_grpc.ClusterDiscoveryServiceStub(ch).StreamClusters(gen())
        resp = await call.read()
        call.cancel()
        return resp

    resp = await one(DiscoveryRequest(node=node()))
    assert resp.type_url == CDS and sorted(names(resp)) == ["a", "b"]  # type: ignore[attr-defined]

    async def eds_gen() -> AsyncIterator[DiscoveryRequest]:
        yield DiscoveryRequest(node=node(), resource_names=["b"])
        await asyncio.sleep(5)

    call = eds_pb2_grpc.EndpointDiscoveryServiceStub(ch).StreamEndpoints(eds_gen())
    eds = await call.read()
    call.cancel()
    assert eds.type_url == EDS and names(eds) == ["b"]
    wrong = cds_pb2_grpc.ClusterDiscoveryServiceStub(ch).StreamClusters(
        iter([DiscoveryRequest(node=node(), type_url=EDS)])
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await wrong.read()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@BOTH
async def test_rule_2_empty_type_url_is_invalid_on_ads(xds: Server, protocol: str) -> None:
    """Rule 2: ADS requests without type_url end the stream with INVALID_ARGUMENT."""
    c = await open_client(xds, protocol)
    c.request("")
    await asyncio.wait_for(c.ended.wait(), 10)
    assert c.error is not None and c.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "type URL is required" in c.error.details()


@BOTH
async def test_resolver_refusal_is_invalid_argument(xds: Server, protocol: str) -> None:
    """A resolver ValueError aborts the stream with INVALID_ARGUMENT and its message."""
    c = await open_client(xds, protocol, node("refuse-me"))
    c.request(CDS)
    await asyncio.wait_for(c.ended.wait(), 10)
    assert c.error is not None and c.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not welcome" in c.error.details()


@BOTH
async def test_rule_5_types_independent(xds: Server, protocol: str) -> None:
    """Rule 5: a NACK on one type leaves another type's ACK intact."""
    xds.cache.set("default", base_snapshot())
    c = await open_client(xds, protocol)
    c.request(LDS)
    c.request(RDS, ["r1"])
    lds = await c.recv_type(LDS)
    rds = await c.recv_type(RDS)
    c.nack(lds, "listener broken")
    c.ack(rds, ["r1"])
    await eventually(lambda: xds.sync.rows()[0]["types"]["rds"]["status"] == "SYNCED")
    assert xds.sync.rows()[0]["types"]["lds"]["status"] == "ERROR"


@BOTH
async def test_rule_33_versions_stable_across_restarts(protocol: str) -> None:
    """Rule 33: a fresh server with the same content does not resend what Envoy holds."""
    async with running_server() as first:
        first.cache.set("default", base_snapshot())
        c = await open_client(first, protocol)
        c.request(CDS)
        held = await c.recv_type(CDS)
    async with running_server() as second:
        rebuilt = base_snapshot()
        second.cache.set("default", rebuilt)
        again = await open_client(second, protocol)
        if protocol == "sotw":
            again.request(CDS, version=held.version_info)
        else:
            again.request(CDS, initial={r.name: r.version for r in held.resources})
        if protocol == "sotw":
            assert await again.silent()
        else:
            resp = await again.recv_type(CDS)  # rule 31's empty wildcard answer
            assert not resp.resources and not resp.removed_resources


def test_rule_33_versions_are_content_hashes() -> None:
    """Rule 33: separate interners (processes) compute identical versions."""
    a = Snapshot.from_resources(resources(clusters=[cluster("a")]), interner=Interner())
    b = Snapshot.from_resources(resources(clusters=[cluster("a")]), interner=Interner())
    assert a.version == b.version and a.type_versions() == b.type_versions()


@BOTH
async def test_rule_34_no_snapshot_holds_stream_open(xds: Server, protocol: str) -> None:
    """Rule 34: an unknown scope gets no answer and no error until config exists."""
    c = await open_client(xds, protocol, node("early", scope="not-yet"))
    c.request(CDS)
    assert await c.silent()
    assert not c.ended.is_set()
    xds.cache.set("not-yet", base_snapshot())
    assert sorted(names(await c.recv_type(CDS))) == ["a", "b"]


@BOTH
async def test_rule_35_ads_order_cds_eds_lds_rds(xds: Server, protocol: str) -> None:
    """Rules 35 and 39: one push goes CDS, EDS, LDS, RDS, SDS: clusters before routes."""
    c = await open_client(xds, protocol)
    c.request(SDS, ["default"])
    c.request(RDS, ["r1"])
    c.request(LDS)
    c.request(EDS, ["a"])
    c.request(CDS)
    assert await c.silent()
    s = snap(
        clusters=[cluster("a")],
        endpoints=[cla("a")],
        listeners=[listener("l1", 1, "r1")],
        routes=[route("r1", "a")],
        secrets=[secret("default")],
    )
    xds.cache.set("default", s)
    order = [(await c.recv()).type_url for _ in range(5)]
    assert order == [CDS, EDS, LDS, RDS, SDS]


@BOTH
async def test_rule_36_eds_resent_after_cds_change(xds: Server, protocol: str) -> None:
    """Rule 36: a changed EDS cluster gets its (unchanged) endpoints again after CDS."""
    xds.cache.set("default", base_snapshot())
    c = await open_client(xds, protocol)
    c.request(CDS)
    c.request(EDS, ["a", "b"])
    c.ack(await c.recv_type(CDS))
    c.ack(await c.recv_type(EDS), ["a", "b"])
    xds.cache.set(
        "default",
        snap(
            clusters=[cluster("a", timeout_s=5), cluster("b")],
            endpoints=[cla("a"), cla("b", 18081)],
            listeners=[listener("l1", 15001, "r1")],
            routes=[route("r1", "a")],
        ),
    )
    assert (await c.recv()).type_url == CDS
    eds = await c.recv_type(EDS)
    assert "a" in names(eds)


@BOTH
async def test_rule_37_eds_not_gated_on_cds_ack(xds: Server, protocol: str) -> None:
    """Rule 37: EDS is answered while the CDS response is still un-ACKed."""
    xds.cache.set("default", base_snapshot())
    c = await open_client(xds, protocol)
    c.request(CDS)
    await c.recv_type(CDS)  # never ACKed
    c.request(EDS, ["a"])
    assert names(await c.recv_type(EDS)) == ["a"]


@BOTH
async def test_rule_38_new_rds_names_answered_promptly(xds: Server, protocol: str) -> None:
    """Rule 38: RDS for a warming listener's route is answered before the LDS ACK."""
    xds.cache.set("default", base_snapshot())
    c = await open_client(xds, protocol)
    c.request(LDS)
    await c.recv_type(LDS)
    c.request(RDS, ["r1"])
    assert names(await c.recv_type(RDS)) == ["r1"]


@BOTH
async def test_rule_44_stream_end_releases_state(xds: Server, protocol: str) -> None:
    """Rule 44: a closed stream leaves no connection, sync row or gauge behind."""
    xds.cache.set("default", base_snapshot())
    c = await open_client(xds, protocol)
    c.request(CDS)
    await c.recv_type(CDS)
    assert len(xds.cache.connections()) == 1
    await c.close()
    await eventually(lambda: not xds.cache.connections())
    assert xds.sync.rows() == []
    assert xds.registry.get_sample_value("pilot_xds") == 0


@BOTH
async def test_rule_45_stuck_stream_does_not_block_others(xds: Server, protocol: str) -> None:
    """Rule 45: a client that stops reading never delays publication to others."""
    big = snap(clusters=[cluster(f"cluster-{i:04d}-{'x' * 200}") for i in range(3000)])
    xds.cache.set("default", big)
    stuck = await open_client(xds, protocol, node("stuck"))
    stuck.request(CDS)
    stuck._task.cancel()  # stop reading: its responses pile up in flow control
    healthy = await open_client(xds, protocol, node("healthy"))
    healthy.request(CDS)
    first = await healthy.recv_type(CDS)
    healthy.ack(first)
    for i in range(5):
        xds.cache.set("default", snap(clusters=[cluster(f"round-{i}-{j}") for j in range(2000)]))
    latest = await healthy.recv_type(CDS)
    while "round-4-0" not in names(latest):
        healthy.ack(latest)
        latest = await healthy.recv_type(CDS)
    assert "round-4-0" in names(latest)


async def test_rule_46_many_streams_and_keepalive_options(xds: Server) -> None:
    """Rule 46: keepalive pings permitted, large stream limits; 150 streams at once."""
    options = dict(SERVER_OPTIONS)
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.max_concurrent_streams"] >= 10_000
    xds.cache.set("default", base_snapshot())
    clients = [await xds.sotw(node(f"n{i}")) for i in range(150)]
    for c in clients:
        c.request(CDS)
    got = await asyncio.gather(*(c.recv_type(CDS) for c in clients))
    assert all(sorted(names(r)) == ["a", "b"] for r in got)
    assert xds.registry.get_sample_value("pilot_xds") == 150


async def test_rule_46_client_keepalive_pings_tolerated(xds: Server) -> None:
    """Rule 46: a client pinging every 200 ms is not sent away (no too_many_pings)."""
    xds.cache.set("default", base_snapshot())
    ch = grpc.aio.insecure_channel(
        xds.address,
        options=[
            ("grpc.keepalive_time_ms", 200),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ],
    )
    xds.channels.append(ch)
    c = SotwClient(ch, node())
    c.request(CDS)
    first = await c.recv_type(CDS)
    c.ack(first)
    await asyncio.sleep(1.5)
    xds.cache.set("default", snap(clusters=[cluster("after-pings")]))
    assert names(await c.recv_type(CDS)) == ["after-pings"]
    assert not c.ended.is_set()


@BOTH
async def test_plaintext_port_tracks_but_never_sends_secrets(
    xds_plain: Server, protocol: str
) -> None:
    """serve_secrets=False: SDS subscriptions are kept, secrets never sent."""
    xds_plain.cache.set("default", snap(clusters=[cluster("a")], secrets=[secret("default")]))
    c = await open_client(xds_plain, protocol)
    c.request(SDS, ["default"])
    c.request(CDS)
    assert (await c.recv()).type_url == CDS
    assert await c.silent()
    sds = xds_plain.sync.rows()[0]["types"]["sds"]
    assert sds["status"] == "NOT_SENT"
    assert xds_plain.metrics.pushes.value("sds") == 0


@BOTH
async def test_assign_moves_stream_to_new_scope(xds: Server, protocol: str) -> None:
    """`assign` moves a connection to another key and pushes that key's config."""
    xds.cache.set("default", base_snapshot())
    xds.cache.set("other", snap(clusters=[cluster("other-only")]))
    c = await open_client(xds, protocol)
    c.request(CDS)
    c.ack(await c.recv_type(CDS))
    conn = xds.cache.connections()[0]
    xds.cache.assign(conn.id, "other")
    moved = await c.recv_type(CDS)
    assert "other-only" in names(moved)
    assert conn.key == "other" and xds.cache.connections("other") == [conn]


@BOTH
async def test_wait_converged_and_convergence_metric(xds: Server, protocol: str) -> None:
    """wait_converged is true once every stream ACKed its key's current snapshot."""
    assert not await xds.sync.wait_converged(timeout=0.05)
    xds.cache.set("default", base_snapshot())
    c = await open_client(xds, protocol)
    c.request(CDS)
    c.request(EDS, ["a"])
    cds = await c.recv_type(CDS)
    eds = await c.recv_type(EDS)
    assert not xds.sync.converged()
    c.ack(cds)
    c.ack(eds, ["a"])
    assert await xds.sync.wait_converged(timeout=10)
    count = xds.registry.get_sample_value("pilot_proxy_convergence_time_count")
    assert count is not None and count >= 1
    xds.cache.set("default", snap(clusters=[cluster("n")]))
    await eventually(lambda: not xds.sync.converged())
    c.ack(await c.recv_type(CDS))
    if protocol == "delta":
        gone = await c.recv_type(EDS)  # "a" no longer exists: rule 25's removal
        assert list(gone.removed_resources) == ["a"]
        c.ack(gone)
    assert await xds.sync.wait_converged(timeout=10)


async def test_held_resources_for_config_dump(xds: Server) -> None:
    """Each Connection records what its client holds per type (for config dumps)."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(CDS)
    c.request(EDS, ["b"])
    await c.recv_type(CDS)
    await c.recv_type(EDS)
    conn = xds.cache.connections()[0]
    assert sorted(conn.held[CDS]) == ["a", "b"] and list(conn.held[EDS]) == ["b"]
