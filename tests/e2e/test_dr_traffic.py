"""DestinationRule traffic policies proven with real requests through a real Envoy gateway.

One control plane and one gateway serve four hosts, each routed to a backend whose
DestinationRule exercises one policy: circuit breaking (503s and Envoy's
`upstream_rq_pending_overflow`), outlier detection (the failing endpoint is ejected and shows
`failed_outlier_check`), consistent hashing by header, and load-balancer / subset / port-level
settings as Envoy reports them in its own config dump.
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from mesh_harness import (
    ControlPlane,
    Envoy,
    behaving_upstream,
    free_port,
    http_get,
    wait_for,
)

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

NS = "demo"


def service(name: str, ports: dict[str, int]) -> str:
    port_list = ", ".join(f"{{name: {n}, port: {p}}}" for n, p in ports.items())
    return f"""\
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {NS}}}
spec:
  ports: [{port_list}]
  selector: {{app: {name}}}
"""


def workload(name: str, app: str, ports: dict[str, int], version: str = "v1") -> str:
    port_map = ", ".join(f"{n}: {p}" for n, p in ports.items())
    return f"""\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: {NS}}}
spec:
  address: 127.0.0.1
  ports: {{{port_map}}}
  labels: {{app: {app}, version: {version}}}
"""


def route(host: str, dest: str, extra: str = "", subset: str = "", port: int = 0) -> str:
    sub = f", subset: {subset}" if subset else ""
    sub += f", port: {{number: {port}}}" if port else ""
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {host.split(".")[0]}, namespace: {NS}}}
spec:
  hosts: ["{host}"]
  gateways: [gw]
  http:
  - route:
    - destination: {{host: {dest}{sub}}}
{extra}"""


GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: demo}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: http, protocol: HTTP}}
    hosts: ["*"]
"""

RULES = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: slow, namespace: demo}
spec:
  host: slow
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: od, namespace: demo}
spec:
  host: od
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 30s
      maxEjectionPercent: 100
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: hash, namespace: demo}
spec:
  host: hash
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: lb, namespace: demo}
spec:
  host: lb.demo.svc.cluster.local
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    portLevelSettings:
    - port: {number: 8001}
      loadBalancer: {simple: ROUND_ROBIN}
      connectionPool:
        tcp: {maxConnections: 7}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {simple: LEAST_REQUEST}
      connectionPool:
        http: {http1MaxPendingRequests: 3}
  - name: v2
    labels: {version: v2}
"""

NO_RETRIES = "    retries: {attempts: 0}\n"


def mesh_yaml(gw: int, ports: dict[str, int]) -> str:
    docs = [
        GATEWAY.format(port=gw),
        RULES,
        service("slow", {"http": 8000}),
        workload("slow-1", "slow", {"http": ports["slow"]}),
        route("cb.test", "slow"),
        service("od", {"http": 8000}),
        workload("od-good", "od", {"http": ports["good"]}),
        workload("od-bad", "od", {"http": ports["bad"]}),
        route("od.test", "od", NO_RETRIES),
        service("hash", {"http": 8000}),
        *(workload(f"hash-{i}", "hash", {"http": ports[f"h{i}"]}) for i in range(3)),
        route("hash.test", "hash"),
        service("lb", {"http": 8000, "http-alt": 8001}),
        workload("lb-1", "lb", {"http": ports["lb1"], "http-alt": ports["lb1"]}),
        workload("lb-2", "lb", {"http": ports["lb2"], "http-alt": ports["lb2"]}, "v2"),
        route("lb.test", "lb", subset="v1", port=8000),
    ]
    return "---\n".join(docs)


@contextlib.contextmanager
def backends() -> Iterator[dict[str, int]]:
    """Every backend the mesh routes to, by role; a slow one, a failing one, named ones."""
    with contextlib.ExitStack() as stack:

        def start(name: str, status: int = 200, delay: float = 0.0) -> int:
            return stack.enter_context(behaving_upstream(name, status, delay))

        yield {
            "slow": start("slow", delay=1.0),
            "good": start("good"),
            "bad": start("bad", status=503),
            **{f"h{i}": start(f"h{i}") for i in range(3)},
            "lb1": start("lb1"),
            "lb2": start("lb2"),
        }


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, Envoy, str]]:
    """The control plane and a SYNCED gateway; yields them and the gateway's URL."""
    root = tmp_path_factory.mktemp("dr")
    config, logdir = root / "config", root / "logs"
    config.mkdir()
    logdir.mkdir()
    gw = free_port()
    with backends() as ports:
        (config / "mesh.yaml").write_text(mesh_yaml(gw, ports))
        cp = ControlPlane(config, logdir)
        envoy = None
        try:
            envoy = Envoy(
                cp,
                logdir,
                kind="router",
                workload="ingress",
                namespace="istio-system",
                labels="istio=ingressgateway",
            )
            url = f"http://127.0.0.1:{gw}/"
            wait_for("the gateway to route", lambda: http_get(url, "lb.test")[0] == 200)
            wait_for("the gateway to be SYNCED", lambda: envoy.synced(cp))
            yield cp, envoy, url
            assert envoy.rejected() == 0
        finally:
            if envoy is not None:
                envoy.stop()
            cp.stop()


def admin(envoy: Envoy, path: str) -> str:
    status, body = http_get(f"http://127.0.0.1:{envoy.admin_port}{path}")
    assert status == 200, (path, status)
    return body


def cluster_configs(envoy: Envoy) -> dict[str, dict[str, Any]]:
    dump = json.loads(admin(envoy, "/config_dump?resource=dynamic_active_clusters"))
    return {c["cluster"]["name"]: c["cluster"] for c in dump["configs"]}


def test_circuit_breaker_sheds_concurrent_requests(mesh: tuple[ControlPlane, Envoy, str]) -> None:
    _, envoy, url = mesh
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: http_get(url, "cb.test", timeout=10), range(8)))
    codes = Counter(code for code, _ in results)
    assert codes[503] > 0, codes
    assert codes[200] > 0, codes
    assert set(codes) <= {200, 503}, codes
    stat = "cluster.outbound|8000||slow.demo.svc.cluster.local.upstream_rq_pending_overflow"
    assert int(envoy.stats().get(stat, "0")) > 0, "no pending overflow counted"


def test_outlier_detection_ejects_the_failing_endpoint(
    mesh: tuple[ControlPlane, Envoy, str],
) -> None:
    _, envoy, url = mesh
    bodies: list[tuple[int, str]] = []

    def ejected() -> bool:
        bodies.append(http_get(url, "od.test"))
        return "failed_outlier_check" in admin(envoy, "/clusters")

    wait_for("the failing endpoint to be ejected", ejected, timeout=15)
    assert (503, "bad") in bodies, "the failing endpoint was never reached before ejection"
    after = [http_get(url, "od.test") for _ in range(30)]
    assert after == [(200, "good")] * 30
    flagged = [
        line
        for line in admin(envoy, "/clusters").splitlines()
        if "od.demo.svc.cluster.local" in line and "failed_outlier_check" in line
    ]
    assert len(flagged) == 1, flagged


def test_consistent_hash_keeps_a_header_on_one_endpoint(
    mesh: tuple[ControlPlane, Envoy, str],
) -> None:
    _, _, url = mesh

    def by_user(user: str) -> set[str]:
        out = set()
        for _ in range(10):
            code, body = hash_get(url, user)
            assert code == 200, (code, body)
            out.add(body)
        return out

    for user in ("alice", "bob", "carol"):
        assert len(by_user(user)) == 1, user
    spread = {hash_get(url, f"user-{i}")[1] for i in range(40)}
    assert len(spread) >= 2, spread


def hash_get(url: str, user: str) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Host": "hash.test", "x-user": user})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return int(resp.status), resp.read().decode()


def test_lb_subset_and_port_level_policies_reach_envoy(
    mesh: tuple[ControlPlane, Envoy, str],
) -> None:
    _, envoy, url = mesh
    clusters = cluster_configs(envoy)
    host = "lb.demo.svc.cluster.local"
    top, port_level = clusters[f"outbound|8000||{host}"], clusters[f"outbound|8001||{host}"]
    v1, v2 = clusters[f"outbound|8000|v1|{host}"], clusters[f"outbound|8000|v2|{host}"]
    assert top["lb_policy"] == "RANDOM"
    # Port-level settings replace the top-level policy for that port (ROUND_ROBIN is Envoy's
    # zero value, so the dump leaves lb_policy out).
    assert port_level.get("lb_policy", "ROUND_ROBIN") == "ROUND_ROBIN"
    assert port_level["circuit_breakers"]["thresholds"][0]["max_connections"] == 7
    # A subset's own policy replaces the sections it sets and inherits the rest.
    assert v1["lb_policy"] == "LEAST_REQUEST"
    assert v1["circuit_breakers"]["thresholds"][0]["max_pending_requests"] == 3
    assert v2["lb_policy"] == "RANDOM"
    slow = clusters["outbound|8000||slow.demo.svc.cluster.local"]
    assert slow["circuit_breakers"]["thresholds"][0]["max_pending_requests"] == 1
    assert clusters["outbound|8000||hash.demo.svc.cluster.local"]["lb_policy"] == "RING_HASH"
    # And the subset route sends real traffic to the v1 endpoint only.
    assert {http_get(url, "lb.test") for _ in range(10)} == {(200, "lb1")}
