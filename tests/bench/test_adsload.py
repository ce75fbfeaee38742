"""The load client against a real gRPC ADS server (an in-test one, not meshplane).

Checks that a simulated proxy subscribes like Envoy (EDS per EDS cluster, RDS per HCM route
name), counts as configured only once it holds all of that, and that probes see a pushed
endpoint move and a weight shift arrive, in SotW and Delta.
"""

from __future__ import annotations

import pytest
from static_ads import mesh_resources, start_static_ads

from bench.adsload import LoadClient
from bench.meshgen import MeshSpec, edit_address, host, subset_cluster
from bench.xdsinfo import CDS, EDS, LDS, RDS, endpoint_probe, weights_probe

SPEC = MeshSpec(services=4, versions=2, endpoints=2, namespaces=2)


@pytest.mark.parametrize("protocol", ["sotw", "delta"])
async def test_client_converges_and_sees_changes(protocol: str) -> None:
    server, ads, port = await start_static_ads(mesh_resources(SPEC))
    client = LoadClient(f"127.0.0.1:{port}", 3, protocol, streams_per_channel=2)
    try:
        await client.start()
        assert await client.wait_configured(20), client.errors()
        proxy = client.proxies[0]
        assert len(proxy.types[CDS].held) == 8
        assert proxy.types[EDS].subscribed == frozenset(
            subset_cluster(SPEC, i, v) for i in range(4) for v in range(2)
        )
        assert set(proxy.types[EDS].held) == set(proxy.types[EDS].subscribed)
        assert set(proxy.types[LDS].held) == {"0.0.0.0_8080"}
        assert proxy.types[RDS].subscribed == frozenset({"8080"})
        assert all(p.configured_at is not None for p in client.proxies)
        assert client.bytes_by_type[CDS] > 0

        address = edit_address(1)
        affected = client.arm(endpoint_probe(subset_cluster(SPEC, 1, 0), address))
        assert len(affected) == 3
        assert not await client.wait_probe(affected, 0.3)  # nothing changed yet
        ads.update(mesh_resources(SPEC, moved={(1, 0, 0): address}))
        assert await client.wait_probe(affected, 20), client.errors()

        new = {subset_cluster(SPEC, 2, 0): 10, subset_cluster(SPEC, 2, 1): 90}
        affected = client.arm(weights_probe(host(SPEC, 2), new))
        assert len(affected) == 3
        ads.update(mesh_resources(SPEC, moved={(1, 0, 0): address}, weights={2: [10, 90]}))
        assert await client.wait_probe(affected, 20), client.errors()
        assert all(len(p.types[RDS].arrivals) == 2 for p in client.proxies)
        assert client.errors() == []
    finally:
        await client.stop()
        await server.stop(None)


async def test_unanswered_subscription_is_not_configured() -> None:
    resources = mesh_resources(SPEC)
    del resources[EDS][subset_cluster(SPEC, 0, 1)]  # a cluster whose endpoints never come
    server, _, port = await start_static_ads(resources)
    client = LoadClient(f"127.0.0.1:{port}", 1, "sotw")
    try:
        await client.start()
        assert not await client.wait_configured(1.0)
        assert client.proxies[0].types[CDS].acks == 1
    finally:
        await client.stop()
        await server.stop(None)
