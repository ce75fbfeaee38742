"""End to end: a real Envoy, bootstrapped by `meshplane bootstrap`, on meshplane's real xDS
server; the debug API and the CLI report what it was sent and that it ACKed.

Checks the seams between the bootstrap (node identity), the xDS layer (cache, sync
status) and the debug API, in both SotW and Delta.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3 import config_source_pb2
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from prometheus_client import CollectorRegistry

from meshplane.bootstrap import BootstrapOptions, bootstrap, render_json
from meshplane.debug import DebugSources, build_app, start_debug_server
from meshplane.model.store import ConfigStore
from meshplane.translators.resources import Resources
from meshplane.xds.ads import AdsServicer
from meshplane.xds.cache import SnapshotCache
from meshplane.xds.metrics import XdsMetrics
from meshplane.xds.server import start_xds_server
from meshplane.xds.snapshot import Snapshot
from meshplane.xds.sync_status import SyncStatus

pytestmark = pytest.mark.envoy

BIN = Path(sys.executable).parent
DEADLINE_S = 60.0
CLUSTER = "outbound|8080||echo.default.svc.cluster.local"
RENAMED = "outbound|8080|v2|echo.default.svc.cluster.local"
PROXY = "productpage-v1.default"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def resources(listen_port: int, cluster_name: str = CLUSTER) -> Resources:
    ads = config_source_pb2.ConfigSource(resource_api_version=config_source_pb2.V3)
    ads.ads.SetInParent()
    cluster = Cluster(name=cluster_name, type=Cluster.EDS)
    cluster.connect_timeout.seconds = 1
    cluster.eds_cluster_config.eds_config.CopyFrom(ads)
    cla = ClusterLoadAssignment(cluster_name=cluster_name)
    lb = cla.endpoints.add().lb_endpoints.add()
    lb.endpoint.address.socket_address.address = "127.0.0.1"
    lb.endpoint.address.socket_address.port_value = free_port()
    route = RouteConfiguration(name="8080")
    vhost = route.virtual_hosts.add(name="echo:8080", domains=["*"])
    r = vhost.routes.add()
    r.match.prefix = "/"
    r.route.cluster = cluster_name
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix="outbound_8080")
    hcm.rds.route_config_name = "8080"
    hcm.rds.config_source.CopyFrom(ads)
    hcm.http_filters.add(name="envoy.filters.http.router").typed_config.Pack(router_pb2.Router())
    listener = Listener(name="0.0.0.0_8080")
    listener.address.socket_address.address = "127.0.0.1"
    listener.address.socket_address.port_value = listen_port
    chain = listener.filter_chains.add()
    chain.filters.add(name="envoy.filters.network.http_connection_manager").typed_config.Pack(hcm)
    return Resources(
        listeners={listener.name: listener},
        routes={route.name: route},
        clusters={cluster_name: cluster},
        endpoints={cluster_name: cla},
    )


@contextlib.asynccontextmanager
async def control_plane(listen_port: int) -> AsyncIterator[tuple[SnapshotCache, int, str]]:
    """meshplane's xDS server plus the debug API; yields (cache, xDS port, debug HOST:PORT)."""
    cache = SnapshotCache()
    cache.set("all", Snapshot.from_resources(resources(listen_port)))
    sync = SyncStatus(cache)
    registry = CollectorRegistry()

    async def resolve(node: Any) -> str:
        return "all"

    servicer = AdsServicer(cache, resolve, sync, XdsMetrics(registry), serve_secrets=False)
    server, xds_port = await start_xds_server("127.0.0.1:0", servicer)
    sources = DebugSources(
        ready=lambda: True,
        registry=registry,
        sync_status=sync,
        connections=cache.connections,
        store=ConfigStore(),
    )
    runner, http_port = await start_debug_server(build_app(sources), "127.0.0.1:0")
    try:
        yield cache, xds_port, f"127.0.0.1:{http_port}"
    finally:
        await runner.cleanup()
        await server.stop(None)


@contextlib.asynccontextmanager
async def envoy(config: Path, log: Path) -> AsyncIterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "envoy"), "-c", str(config), "--use-dynamic-base-id", "-l", "info"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def wait_synced(
    session: aiohttp.ClientSession,
    debug: str,
    proc: subprocess.Popen[bytes],
    log: Path,
    not_cds: str = "",
) -> dict[str, Any]:
    """The proxy's syncz row once CDS/EDS/LDS/RDS are SYNCED (at a CDS version != not_cds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while loop.time() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        rows = await get_json(session, f"http://{debug}/debug/syncz")
        for row in rows:
            types = row["types"]
            if (
                row["name"] == PROXY
                and types["cds"]["sent"] != not_cds
                and all(types[t]["status"] == "SYNCED" for t in ("cds", "eds", "lds", "rds"))
            ):
                return dict(row)
        await asyncio.sleep(0.2)
    raise AssertionError(f"never synced: {rows}\n{log.read_text()[-3000:]}")


async def cli(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "meshplane"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_envoy_on_meshplane_shows_up_synced_in_debug_api_and_cli(
    delta: bool, tmp_path: Path
) -> None:
    listen_port = free_port()
    async with (
        control_plane(listen_port) as (cache, xds_port, debug),
        aiohttp.ClientSession() as session,
    ):
        admin_port = free_port()
        opts = BootstrapOptions(
            workload="productpage-v1",
            admin_port=admin_port,
            stats_port=0,
            health_port=free_port(),
            xds_address=f"127.0.0.1:{xds_port}",
            delta=delta,
        )
        config = tmp_path / "bootstrap.json"
        config.write_text(render_json(bootstrap(opts)))
        log = tmp_path / "envoy.log"
        async with envoy(config, log) as proc:
            row = await wait_synced(session, debug, proc, log)
            dump = await get_json(session, f"http://{debug}/debug/config_dump?proxyID={PROXY}")
            envoy_dump = await get_json(
                session, f"http://127.0.0.1:{admin_port}/config_dump?include_eds"
            )
            status = await cli("proxy-status", "--meshplane-address", debug)
            clusters = await cli("proxy-config", "cluster", PROXY, "--meshplane-address", debug)
            ready_url = f"http://127.0.0.1:{opts.health_port}/healthz/ready"
            async with session.get(ready_url) as resp:
                assert resp.status == 200
            # A new snapshot (renamed cluster): the debug API follows what was sent.
            cache.set("all", Snapshot.from_resources(resources(listen_port, RENAMED)))
            row2 = await wait_synced(session, debug, proc, log, not_cds=row["types"]["cds"]["sent"])
            dump2 = await get_json(session, f"http://{debug}/debug/config_dump?proxyID={PROXY}")
            envoy_dump2 = await get_json(session, f"http://127.0.0.1:{admin_port}/config_dump")

    assert row["proxy"] == opts.node_id

    def active_clusters(d: dict[str, Any]) -> dict[str, str]:
        section = next(c for c in d["configs"] if c["@type"].endswith("ClustersConfigDump"))
        return {
            c["cluster"]["name"]: section.get("version_info", "")
            for c in section.get("dynamic_active_clusters", [])
        }

    ours = active_clusters(dump)
    assert list(ours) == [CLUSTER]
    assert ours[CLUSTER] == row["types"]["cds"]["sent"]
    # What meshplane says it sent is what Envoy holds, at the version Envoy reports.
    assert active_clusters(envoy_dump) == ours

    status_line = next(line for line in status.splitlines() if line.startswith(PROXY))
    assert status_line.split()[2:6] == ["SYNCED", "SYNCED", "SYNCED", "SYNCED"]
    assert any(
        line.split()[:4] == ["echo.default.svc.cluster.local", "8080", "-", "outbound"]
        for line in clusters.splitlines()
    ), clusters
    assert json.dumps(dump).count("[redacted]") == 0  # no secrets on this plaintext port

    assert active_clusters(dump2) == {RENAMED: row2["types"]["cds"]["sent"]}
    assert active_clusters(envoy_dump2) == active_clusters(dump2)
