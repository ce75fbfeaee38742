"""Real Envoy merges partial SotW EDS responses: a changed endpoint arrives alone (rule 22).

Envoy (SotW ADS) holds clusters svc-a and svc-b, both on upstream "one", and a route to
svc-b. Then only svc-b's endpoints move to upstream "two": the EDS response carries svc-b
alone, traffic follows it, and Envoy's /clusters still lists svc-a's endpoint.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from test_envoy_ads import (
    DEADLINE,
    Envoy,
    free_port,
    run_envoy,
    upstream,
    wait_for_body,
    wait_until,
)
from xds_testkit import cla, cluster, listener, route, running_server, snap

from meshplane.xds import type_urls
from meshplane.xds.snapshot import Snapshot

pytestmark = pytest.mark.envoy


def config(a_port: int, b_port: int, listen_port: int) -> Snapshot:
    return snap(
        clusters=[cluster("svc-a"), cluster("svc-b")],
        endpoints=[cla("svc-a", a_port), cla("svc-b", b_port)],
        routes=[route("route-1", "svc-b")],
        listeners=[listener("listener-http", listen_port, "route-1")],
    )


def hosts(envoy: Envoy) -> dict[str, set[str]]:
    """Cluster name -> host addresses, from Envoy's admin /clusters."""
    url = f"http://127.0.0.1:{envoy.admin_port}/clusters"
    with urllib.request.urlopen(url, timeout=2) as resp:
        lines = resp.read().decode().splitlines()
    out: dict[str, set[str]] = {}
    for line in lines:
        parts = line.split("::")
        if len(parts) >= 3 and parts[2] == "cx_active":
            out.setdefault(parts[0], set()).add(parts[1])
    return out


async def test_envoy_applies_a_partial_eds_response(tmp_path: Path) -> None:
    listen_port = free_port()
    async with (
        running_server() as srv,
        upstream("one") as port_one,
        upstream("two") as port_two,
    ):
        srv.cache.set("default", config(port_one, port_one, listen_port))
        with run_envoy(tmp_path, srv.port, "GRPC") as envoy:
            await wait_for_body(listen_port, "one", envoy)
            assert await srv.sync.wait_converged(timeout=DEADLINE)
            eds_pushes = srv.metrics.pushes.value("eds")
            a_updates = envoy.counter("cluster.svc-a.update_attempt")
            b_updates = envoy.counter("cluster.svc-b.update_attempt")
            conn = srv.cache.connections()[0]
            srv.cache.set("default", config(port_one, port_two, listen_port))
            await wait_for_body(listen_port, "two", envoy)
            assert await srv.sync.wait_converged(timeout=DEADLINE)
            assert srv.metrics.pushes.value("eds") == eds_pushes + 1
            sent = srv.sync.progress(conn.id, type_urls.ENDPOINT)
            assert sent is not None and sent.acked_version == sent.sent_version
            await wait_until(
                lambda: hosts(envoy).get("svc-b") == {f"127.0.0.1:{port_two}"}, "svc-b moved"
            )
            assert hosts(envoy)["svc-a"] == {f"127.0.0.1:{port_one}"}
            # The response named svc-b only: svc-a's EDS watch never saw an update.
            assert envoy.counter("cluster.svc-b.update_attempt") > b_updates
            assert envoy.counter("cluster.svc-a.update_attempt") == a_updates
            assert envoy.counter("cluster.svc-b.update_rejected") == 0
