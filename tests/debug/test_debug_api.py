"""The debug HTTP API served by a real aiohttp server on a loopback port."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from debug_samples import GATEWAY, PRIVATE_KEY, PRODUCTPAGE, REVIEWS, sample_sources

from meshplane.debug import build_app, start_debug_server


@pytest.fixture
def ready_flag() -> list[bool]:
    return [True]


@pytest.fixture
async def base_url(ready_flag: list[bool]) -> AsyncIterator[str]:
    runner, port = await start_debug_server(build_app(sample_sources(ready_flag)), "127.0.0.1:0")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def get_json(url: str) -> Any:
    status, ctype, body = await get(url)
    assert status == 200, body
    assert ctype.startswith("application/json")
    return json.loads(body)


async def test_ready_follows_the_flag(base_url: str, ready_flag: list[bool]) -> None:
    ready_flag[0] = False
    assert (await get(base_url + "/ready"))[0] == 503
    ready_flag[0] = True
    assert (await get(base_url + "/ready"))[0] == 200


async def test_healthz(base_url: str) -> None:
    assert (await get(base_url + "/healthz"))[0] == 200


async def test_metrics_is_prometheus_text_of_the_given_registry(base_url: str) -> None:
    status, ctype, body = await get(base_url + "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain")
    assert 'pilot_xds_pushes_total{type="cds"} 3.0' in body


async def test_syncz_rows(base_url: str) -> None:
    rows = await get_json(base_url + "/debug/syncz")
    assert [r["proxy"] for r in rows] == [GATEWAY, PRODUCTPAGE]  # sorted by name
    assert rows[0]["types"]["cds"] == {
        "sent": "v1",
        "acked": "v0",
        "nonce": "7",
        "status": "ERROR",
        "error": "unknown lb policy",
    }


def _section(dump: dict[str, Any], name: str) -> dict[str, Any]:
    matches: list[dict[str, Any]] = [c for c in dump["configs"] if c["@type"].endswith("." + name)]
    assert len(matches) == 1, [c["@type"] for c in dump["configs"]]
    return matches[0]


@pytest.mark.parametrize("proxy_id", [PRODUCTPAGE, "productpage-v1.default"])
async def test_config_dump_is_envoys_format(base_url: str, proxy_id: str) -> None:
    dump = await get_json(f"{base_url}/debug/config_dump?proxyID={proxy_id}")
    assert [c["@type"].rsplit(".", 1)[1] for c in dump["configs"]] == [
        "ClustersConfigDump",
        "EndpointsConfigDump",
        "ListenersConfigDump",
        "RoutesConfigDump",
        "SecretsConfigDump",
    ]
    clusters = _section(dump, "ClustersConfigDump")
    assert clusters["version_info"] == "v-cds"
    names = [c["cluster"]["name"] for c in clusters["dynamic_active_clusters"]]
    assert f"outbound|9080||{REVIEWS}" in names
    assert all(c["version_info"].startswith("r-") for c in clusters["dynamic_active_clusters"])

    listeners = _section(dump, "ListenersConfigDump")
    by_name = {item["name"]: item for item in listeners["dynamic_listeners"]}
    hcm = by_name["0.0.0.0_9080"]["active_state"]["listener"]["filter_chains"][0]["filters"][0]
    assert hcm["typed_config"]["rds"]["route_config_name"] == "9080"

    routes = _section(dump, "RoutesConfigDump")
    assert routes["dynamic_route_configs"][0]["route_config"]["name"] == "9080"
    endpoints = _section(dump, "EndpointsConfigDump")
    cla = endpoints["dynamic_endpoint_configs"][0]["endpoint_config"]
    assert len(cla["endpoints"][0]["lb_endpoints"]) == 2


async def test_config_dump_redacts_private_keys_as_envoy_does(base_url: str) -> None:
    status, _, body = await get(f"{base_url}/debug/config_dump?proxyID={PRODUCTPAGE}")
    assert status == 200
    assert base64.b64encode(PRIVATE_KEY).decode() not in body
    assert "TOPSECRET" not in body
    secrets = _section(json.loads(body), "SecretsConfigDump")["dynamic_active_secrets"]
    default = next(s for s in secrets if s["name"] == "default")["secret"]["tls_certificate"]
    assert base64.b64decode(default["private_key"]["inline_bytes"]) == b"[redacted]"
    # The certificate chain is not sensitive and stays readable.
    assert b"CHAIN" in base64.b64decode(default["certificate_chain"]["inline_bytes"])


async def test_config_dump_unknown_proxy_is_404_json(base_url: str) -> None:
    status, ctype, body = await get(f"{base_url}/debug/config_dump?proxyID=nope.default")
    assert status == 404
    assert ctype.startswith("application/json")
    assert "nope.default" in json.loads(body)["error"]


async def test_config_dump_without_proxy_id_is_400(base_url: str) -> None:
    status, _, body = await get(f"{base_url}/debug/config_dump")
    assert status == 400
    assert "proxyID" in json.loads(body)["error"]


async def test_registryz_lists_services_with_endpoints(base_url: str) -> None:
    services = await get_json(base_url + "/debug/registryz")
    assert [s["hostname"] for s in services] == [REVIEWS]
    svc = services[0]
    assert svc["ports"] == [
        {"name": "http", "number": 9080, "protocol": "HTTP", "target_port": None}
    ]
    assert [(e["address"], e["labels"]) for e in svc["endpoints"]] == [
        ("10.0.1.1", {"version": "v1"}),
        ("10.0.1.2", {"version": "v2"}),
    ]


async def test_configz_shows_accepted_objects_in_istio_field_names(base_url: str) -> None:
    objects = await get_json(base_url + "/debug/configz")
    assert objects == [
        {
            "kind": "DestinationRule",
            "apiVersion": "networking.istio.io/v1",
            "namespace": "default",
            "name": "reviews",
            "file": "config/reviews.yaml",
            "line": 1,
            "revision": "abc",
            "spec": {
                "host": "reviews",
                "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
                "exportTo": [],
            },
        }
    ]


async def test_config_errors_lists_errors_and_warnings_apart(base_url: str) -> None:
    body = await get_json(base_url + "/debug/config_errors")
    assert [e["field"] for e in body["errors"]] == ["spec.http[0].route[0].weight"]
    assert body["errors"][0]["reason"] == "weight must be between 0 and 100"
    assert body["errors"][0]["file"] == "config/reviews.yaml"
    assert [w["severity"] for w in body["warnings"]] == ["warning"]
