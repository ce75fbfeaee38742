"""`meshplane proxy-status` / `proxy-config` against a real debug API over the sample mesh."""

from __future__ import annotations

import json

import pytest
from cli_run import run_cli

PROXY = "productpage-v1.default"


def table(text: str) -> list[list[str]]:
    """Rows of a printed table, cells split on runs of 3+ spaces (cells may hold spaces)."""
    import re

    return [re.split(r" {3,}", line.strip()) for line in text.splitlines() if line.strip()]


async def test_proxy_status_table_and_nack_reason(debug_address: str) -> None:
    done = await run_cli("proxy-status", "--meshplane-address", debug_address)
    assert done.code == 0, done.err
    rows = table(done.out)
    assert rows[0] == ["NAME", "TYPE", "CDS", "LDS", "EDS", "RDS", "SDS"]
    assert rows[1] == [
        "ingressgateway.istio-system", "router", "ERROR", "SYNCED", "SYNCED", "SYNCED", "SYNCED",
    ]  # fmt: skip
    assert rows[2] == [PROXY, "sidecar", "SYNCED", "SYNCED", "SYNCED", "STALE", "NOT SENT"]
    assert rows[3] == ["ingressgateway.istio-system CDS rejected: unknown lb policy"]


async def test_proxy_status_one_proxy_as_json(debug_address: str) -> None:
    done = await run_cli("proxy-status", PROXY, "-o", "json", "--meshplane-address", debug_address)
    assert done.code == 0, done.err
    rows = json.loads(done.out)
    assert [r["name"] for r in rows] == [PROXY]
    assert rows[0]["types"]["rds"]["status"] == "STALE"


async def test_proxy_config_cluster(debug_address: str) -> None:
    done = await run_cli("proxy-config", "cluster", PROXY, "--meshplane-address", debug_address)
    assert done.code == 0, done.err
    rows = table(done.out)
    assert rows[0] == ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"]
    fqdn = "reviews.default.svc.cluster.local"
    assert [fqdn, "9080", "v1", "outbound", "EDS", "reviews.default"] in rows
    assert [fqdn, "9080", "-", "outbound", "EDS", "reviews.default"] in rows
    assert ["BlackHoleCluster", "-", "-", "-", "STATIC", "-"] in rows
    assert ["9080", "-", "inbound", "ORIGINAL_DST", "-"] in rows  # inbound: no FQDN, as istioctl


async def test_proxy_config_listener(debug_address: str) -> None:
    done = await run_cli("proxy-config", "listener", PROXY, "--meshplane-address", debug_address)
    assert done.code == 0, done.err
    assert table(done.out) == [
        ["NAME", "ADDRESSES", "PORT", "MATCH", "DESTINATION"],
        ["0.0.0.0_9080", "0.0.0.0", "9080", "ALL", "Route: 9080"],
        ["virtualOutbound", "0.0.0.0", "15001", "ALL", "-"],
    ]


async def test_proxy_config_route(debug_address: str) -> None:
    done = await run_cli("proxy-config", "route", PROXY, "--meshplane-address", debug_address)
    assert done.code == 0, done.err
    assert table(done.out) == [
        ["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"],
        [
            "9080",
            "reviews.default.svc.cluster.local:9080",
            "reviews.default.svc.cluster.local +2 more",
            "/*",
            "reviews.default",
        ],
    ]


async def test_proxy_config_endpoint(debug_address: str) -> None:
    done = await run_cli("proxy-config", "endpoint", PROXY, "--meshplane-address", debug_address)
    assert done.code == 0, done.err
    cluster = "outbound|9080||reviews.default.svc.cluster.local"
    assert table(done.out) == [
        ["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"],
        ["10.0.1.1:9080", "HEALTHY", "-", cluster],
        ["10.0.1.2:9080", "UNHEALTHY", "-", cluster],
    ]


@pytest.mark.parametrize(
    ("kind", "key"), [("cluster", "name"), ("listener", "name"), ("route", "name")]
)
async def test_proxy_config_json_lists_the_resources(
    debug_address: str, kind: str, key: str
) -> None:
    done = await run_cli(
        "proxy-config", kind, PROXY, "-o", "json", "--meshplane-address", debug_address
    )
    assert done.code == 0, done.err
    items = json.loads(done.out)
    assert items and all(key in item for item in items)


async def test_proxy_config_unknown_proxy_fails_with_the_servers_reason(
    debug_address: str,
) -> None:
    done = await run_cli("proxy-config", "cluster", "nope.x", "--meshplane-address", debug_address)
    assert done.code == 1
    assert "proxy 'nope.x' is not connected" in done.err
    assert done.out == ""


async def test_unreachable_debug_api_is_a_clear_error() -> None:
    import socket

    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    done = await run_cli("proxy-status", "--meshplane-address", address)
    assert done.code == 2
    assert "cannot reach the meshplane debug API" in done.err
