"""Rule 35 with real Envoy: moving a route to a new cluster while the old one is removed.

One snapshot switches route-1 from cluster svc-a to a new cluster svc-b and drops svc-a
(a renamed DestinationRule subset, a replaced service). svc-b has an active health check
whose first probe the upstream answers slowly, so svc-b warms for a while, as real
clusters do. A bounded loop of HTTP requests runs through Envoy during the switch and
must see no failure: a server that drops svc-a at once, or routes to svc-b before it is
warm, makes Envoy answer 503 (no cluster) in that window (istio#23956).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3.health_check_pb2 import HealthCheck
from test_envoy_ads import DEADLINE, Envoy, free_port, run_envoy, wait_for_body
from xds_testkit import cla, cluster, listener, route, running_server, snap

from meshplane.xds.snapshot import Snapshot

pytestmark = pytest.mark.envoy

HEALTH_DELAY = 1.5
"""Seconds the first health probe of svc-b takes: how long svc-b warms."""
MAX_REQUESTS = 5000
MAX_SECONDS = 30.0


@contextlib.asynccontextmanager
async def upstream(body: str) -> AsyncIterator[int]:
    """An HTTP server answering `body` on / and, after HEALTH_DELAY, 200 on /health."""

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text=body)

    async def health(_: web.Request) -> web.Response:
        await asyncio.sleep(HEALTH_DELAY)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


def health_checked(name: str) -> Cluster:
    c = cluster(name)
    check = HealthCheck(http_health_check=HealthCheck.HttpHealthCheck(path="/health"))
    check.timeout.seconds = 5
    check.interval.seconds = 30
    check.unhealthy_threshold.value = 1
    check.healthy_threshold.value = 1
    c.health_checks.append(check)
    return c


def config(target: Cluster, upstream_port: int, listen_port: int) -> Snapshot:
    """listener-http -> route-1 -> `target`, the only cluster."""
    return snap(
        clusters=[target],
        endpoints=[cla(target.name, upstream_port)],
        routes=[route("route-1", target.name)],
        listeners=[listener("listener-http", listen_port, "route-1")],
    )


@dataclass
class Load:
    """Outcomes of the request loop: bodies of good answers, descriptions of failures."""

    bodies: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)


async def load_loop(port: int, load: Load, workers: int = 2) -> None:
    """GET / through Envoy until `load.stop`, at most MAX_REQUESTS or MAX_SECONDS."""
    url = f"http://127.0.0.1:{port}/"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MAX_SECONDS
    timeout = aiohttp.ClientTimeout(total=5)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not load.stop.is_set() and loop.time() < deadline:
            if len(load.bodies) + len(load.failures) >= MAX_REQUESTS:
                return
            try:
                async with session.get(url) as resp:
                    text = await resp.text()
                    if resp.status == 200:
                        load.bodies.append(text)
                    else:
                        load.failures.append(f"{resp.status} {text.strip()}".strip())
            except (aiohttp.ClientError, TimeoutError) as err:
                load.failures.append(repr(err))
            await asyncio.sleep(0.002)

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(workers)))


async def wait_cds_version(envoy: Envoy, version: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while loop.time() < deadline:
        stats = await asyncio.to_thread(envoy.stats)
        if stats.get("cluster_manager.cds.version_text", "").strip('"') == version:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"Envoy never ACKed CDS {version}")


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_rule_35_route_moves_to_new_cluster_without_failures(
    tmp_path: Path, api_type: str
) -> None:
    """Rule 35: zero failed requests while route-1 moves from svc-a to a warming svc-b."""
    listen_port = free_port()
    async with (
        running_server() as srv,
        upstream("one") as port_one,
        upstream("two") as port_two,
    ):
        before = config(cluster("svc-a"), port_one, listen_port)
        after = config(health_checked("svc-b"), port_two, listen_port)
        srv.cache.set("default", before)
        with run_envoy(tmp_path, srv.port, api_type) as envoy:
            await wait_for_body(listen_port, "one", envoy)
            assert await srv.sync.wait_converged(timeout=DEADLINE)
            load = Load()
            loop_task = asyncio.create_task(load_loop(listen_port, load))
            try:
                while len(load.bodies) + len(load.failures) < 20:
                    await asyncio.sleep(0.01)
                srv.cache.set("default", after)
                await wait_cds_version(envoy, after.type_versions()["cds"])
                assert await srv.sync.wait_converged(timeout=DEADLINE)
                await asyncio.sleep(0.5)  # keep loading after svc-a is gone
            finally:
                load.stop.set()
                await loop_task
            stats = envoy.stats()
    assert load.failures == [], f"{len(load.failures)} failed, e.g. {load.failures[:5]}"
    assert load.bodies[0] == "one" and load.bodies[-1] == "two"
    assert "cluster.svc-a.upstream_rq_total" not in stats  # svc-a was removed
    assert stats["cluster_manager.cds.update_rejected"] == "0"
