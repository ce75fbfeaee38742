"""Real Envoy and resource TTLs (rules 42 and 43): heartbeats keep endpoints; silence drops them.

Delta: Envoy advertises the TTL client features in its bootstrap node. Its EDS resource carries a
2 s TTL: while the control plane runs, heartbeats keep the endpoint (and traffic) alive for
several TTLs and the resource never expires; once the control plane is gone, the resource
expires after the TTL. Envoy's EDS cluster takes that expiry as an update without a
ClusterLoadAssignment: it counts `update_empty` and keeps its hosts (EdsClusterImpl ignores
removed resources), so the expiry is observed through that counter, not through traffic.

SotW: Envoy 1.40 ignores SotW heartbeats and crashes when a SotW TTL expires, so the server
serves SotW clients no TTL even when they advertise the features; the SotW test checks that
such an Envoy keeps running and serving well past the TTL.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from test_envoy_ads import (
    ENVOY,
    Envoy,
    _get,
    bootstrap,
    config,
    free_port,
    upstream,
    wait_for_body,
    wait_until,
)
from xds_testkit import EDS, running_server

from meshplane.xds.snapshot import Snapshot

pytestmark = pytest.mark.envoy

TTL = 2.0
QUIET = ["--drain-time-s", "1", "-l", "warning"]
FEATURES = ["xds.config.supports-resource-ttl", "xds.config.resource-in-sotw"]


def _start_envoy(tmp_path: Path, xds_port: int, api_type: str) -> Envoy:
    admin_port = free_port()
    boot = bootstrap(xds_port, admin_port, api_type)
    boot["node"] = {**boot["node"], "client_features": FEATURES}  # type: ignore[dict-item]
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(boot))
    log = tmp_path / "envoy.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(ENVOY), "-c", str(path), "--base-id", str(admin_port), *QUIET],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return Envoy(proc, admin_port, log)


def _stop(envoy: Envoy) -> None:
    envoy.proc.terminate()
    try:
        envoy.proc.wait(10)
    except subprocess.TimeoutExpired:
        envoy.proc.kill()
        envoy.proc.wait()


def _members(envoy: Envoy) -> int:
    return int(envoy.stats().get("cluster.svc-v1.membership_total", "-1"))


def _expiries(envoy: Envoy) -> int:
    """EDS updates without an assignment: in this test only a TTL expiry makes one."""
    return envoy.counter("cluster.svc-v1.update_empty")


def _with_ttl(snapshot: Snapshot) -> Snapshot:
    return snapshot.with_ttls({EDS: TTL})


async def _traffic_for(envoy: Envoy, url: str, seconds: float) -> None:
    """Requests for `seconds`: every one must reach the endpoint, which never expires."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    requests = 0
    while loop.time() < until:
        assert envoy.proc.poll() is None, envoy.log.read_text()
        assert await asyncio.to_thread(_get, url) == "one", envoy.log.read_text()
        assert await asyncio.to_thread(_members, envoy) == 1
        assert await asyncio.to_thread(_expiries, envoy) == 0
        requests += 1
        await asyncio.sleep(0.2)
    assert requests >= 5


async def test_rule_42_43_delta_heartbeats_keep_endpoints_past_the_ttl(tmp_path: Path) -> None:
    listen_port = free_port()
    async with upstream("one") as port_one, running_server() as srv:
        srv.cache.set("default", _with_ttl(config("v1", port_one, listen_port)))
        envoy = _start_envoy(tmp_path, srv.port, "DELTA_GRPC")
        try:
            await wait_for_body(listen_port, "one", envoy)
            await _traffic_for(envoy, f"http://127.0.0.1:{listen_port}/", 4 * TTL)
            assert envoy.counter("cluster_manager.cds.update_rejected") == 0
            assert envoy.counter("cluster.svc-v1.update_rejected") == 0
            await srv.server.stop(None)
            # No control plane, no heartbeats: the resource expires after the TTL.
            await wait_until(lambda: _expiries(envoy) >= 1, "EDS resource expiry")
            assert envoy.proc.poll() is None, envoy.log.read_text()
        finally:
            _stop(envoy)


async def test_rule_42_sotw_envoy_gets_no_ttl_and_survives(tmp_path: Path) -> None:
    """A SotW Envoy that advertises TTL support is served none (it would crash at expiry)."""
    listen_port = free_port()
    async with upstream("one") as port_one, running_server() as srv:
        srv.cache.set("default", _with_ttl(config("v1", port_one, listen_port)))
        envoy = _start_envoy(tmp_path, srv.port, "GRPC")
        try:
            await wait_for_body(listen_port, "one", envoy)
            await _traffic_for(envoy, f"http://127.0.0.1:{listen_port}/", 2 * TTL)
            await srv.server.stop(None)
            await asyncio.sleep(2 * TTL)
            assert envoy.proc.poll() is None, envoy.log.read_text()
            assert _expiries(envoy) == 0
        finally:
            _stop(envoy)
