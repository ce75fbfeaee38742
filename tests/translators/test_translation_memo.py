"""TranslationMemo: translating with a memo gives exactly what translating without one gives,
reuses the very objects whose inputs did not change, and never serves a stale one: a
DestinationRule edit changes the cluster, a VirtualService edit the routes, an endpoint edit
the assignment (and only that one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshplane.model.load import load_paths
from meshplane.model.proxy import Proxy
from meshplane.model.store import ConfigStore
from meshplane.model.views import view_for
from meshplane.sources.files import read_file
from meshplane.translators import TranslationMemo, translate
from meshplane.translators.endpoints import cluster_load_assignments
from meshplane.translators.resources import Resources
from tests.golden.harness import canonical_json, discover_cases, proxies

REVIEWS = "reviews.default.svc.cluster.local"
V1 = f"outbound|9080|v1|{REVIEWS}"
V2 = f"outbound|9080|v2|{REVIEWS}"

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  clusterIP: 10.96.0.12
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
"""


def _pod(version: str, ip: str) -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata:
  name: reviews-{version}
  namespace: default
  labels: {{app: reviews, version: {version}}}
spec:
  containers: [{{name: reviews, image: reviews}}]
status: {{podIP: {ip}, phase: Running}}
"""


def _rule(lb: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews
  trafficPolicy: {{loadBalancer: {{simple: {lb}}}}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
"""


def _routes(v1: int, v2: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - route:
    - {{destination: {{host: reviews, subset: v1}}, weight: {v1}}}
    - {{destination: {{host: reviews, subset: v2}}, weight: {v2}}}
"""


SLEEP = Proxy.from_node(
    "sidecar~10.1.0.2~sleep.default~default.svc.cluster.local",
    {"NAMESPACE": "default", "LABELS": {"app": "sleep"}, "INSTANCE_IPS": "10.1.0.2"},
)
OTHER_NS = Proxy.from_node(
    "sidecar~10.2.0.2~client.other~other.svc.cluster.local",
    {"NAMESPACE": "other", "LABELS": {"app": "client"}, "INSTANCE_IPS": "10.2.0.2"},
)


class Mesh:
    """A config directory loaded into a store, edited one file at a time as `serve` sees it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = {
            "service": SERVICE,
            "v1": _pod("v1", "10.1.0.5"),
            "v2": _pod("v2", "10.1.0.6"),
            "rule": _rule("RANDOM"),
            "routes": _routes(90, 10),
        }
        for name, text in self.files.items():
            (root / f"{name}.yaml").write_text(text)
        self.store: ConfigStore = load_paths([root])

    def edit(self, name: str, text: str) -> None:
        path = self.root / f"{name}.yaml"
        path.write_text(text)
        change = self.store.apply_all(read_file(path))
        assert not change.is_empty

    def translate(self, memo: TranslationMemo | None, proxy: Proxy = SLEEP) -> Resources:
        return translate(view_for(self.store.mesh(), proxy), memo)


@pytest.fixture
def mesh(tmp_path: Path) -> Mesh:
    return Mesh(tmp_path)


def _same_output(mesh: Mesh, memo: TranslationMemo, proxy: Proxy = SLEEP) -> Resources:
    with_memo = mesh.translate(memo, proxy)
    assert canonical_json(with_memo) == canonical_json(mesh.translate(None, proxy))
    return with_memo


@pytest.mark.parametrize("case", discover_cases(), ids=lambda p: p.name)
def test_memo_changes_no_golden_output(case: Path) -> None:
    """Every golden case renders the same with a memo shared by all its proxies, twice."""
    store = load_paths([p for p in (case / "input.yaml", case / "input") if p.exists()])
    mesh = store.mesh()
    memo = TranslationMemo()
    for _ in range(2):
        for spec in proxies(case).values():
            view = view_for(mesh, Proxy.from_node(spec["id"], spec.get("metadata") or {}))
            assert canonical_json(translate(view, memo)) == canonical_json(translate(view))


def test_unchanged_resources_are_the_same_objects_across_scopes(mesh: Mesh) -> None:
    memo = TranslationMemo()
    mine = _same_output(mesh, memo, SLEEP)
    theirs = _same_output(mesh, memo, OTHER_NS)
    assert theirs.clusters[V1] is mine.clusters[V1]
    assert theirs.endpoints[V1] is mine.endpoints[V1]
    # Virtual hosts depend on the proxy's namespace (short domains): never shared across.
    assert memo.hits > 0


def test_destination_rule_edit_changes_the_cluster(mesh: Mesh) -> None:
    memo = TranslationMemo()
    before = _same_output(mesh, memo)
    mesh.edit("rule", _rule("ROUND_ROBIN"))
    after = _same_output(mesh, memo)
    assert after.clusters[V1] is not before.clusters[V1]
    assert after.clusters[V1].lb_policy != before.clusters[V1].lb_policy
    # The assignments did not depend on the load balancer: kept as built.
    assert after.endpoints[V1] is before.endpoints[V1]


def test_virtual_service_edit_changes_the_routes(mesh: Mesh) -> None:
    memo = TranslationMemo()
    before = _same_output(mesh, memo)
    mesh.edit("routes", _routes(10, 90))
    after = _same_output(mesh, memo)
    assert after.routes["9080"] != before.routes["9080"]
    weights = [
        c.weight.value
        for h in after.routes["9080"].virtual_hosts
        if h.name.startswith(REVIEWS)
        for c in h.routes[0].route.weighted_clusters.clusters
    ]
    assert weights == [10, 90]
    assert after.clusters[V1] is before.clusters[V1]


def test_consistent_hash_rule_changes_the_route_hash_policy(mesh: Mesh) -> None:
    """A DestinationRule edit reaches the routes too (their hash policy reads the rule)."""
    memo = TranslationMemo()
    before = _same_output(mesh, memo)
    consistent = _rule("RANDOM").replace(
        "trafficPolicy: {loadBalancer: {simple: RANDOM}}",
        "trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}",
    )
    mesh.edit("rule", consistent)
    after = _same_output(mesh, memo)
    assert after.routes["9080"] != before.routes["9080"]


def test_endpoint_edit_rebuilds_only_that_subsets_assignment(mesh: Mesh) -> None:
    memo = TranslationMemo()
    before = _same_output(mesh, memo)
    mesh.edit("v2", _pod("v2", "10.1.0.60"))
    view = view_for(mesh.store.mesh(), SLEEP)
    changed = cluster_load_assignments(view, memo, {REVIEWS})
    assert set(changed) == {f"outbound|9080||{REVIEWS}", V1, V2}
    assert changed[V1] is before.endpoints[V1]
    assert changed[V2] is not before.endpoints[V2]
    address = changed[V2].endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert address.address == "10.1.0.60"
    assert cluster_load_assignments(view, memo, {"nothing.example"}) == {}
    _same_output(mesh, memo)


def test_sweep_drops_what_the_last_round_did_not_use(mesh: Mesh) -> None:
    memo = TranslationMemo()
    mesh.translate(memo)
    memo.sweep()
    used = len(memo)
    assert used > 0
    assert memo.sweep() == used  # nothing used since: all of it goes
    assert len(memo) == 0
    memo.get("slot", 1, lambda: "one")
    assert memo.get("slot", 2, lambda: "two") == "two"  # another key rebuilds
    assert len(memo) == 1
