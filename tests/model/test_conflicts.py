"""Conflicts users hit in Istio get a deterministic answer and a warning, never a silent pick:
two VirtualServices for one host, subsets no DestinationRule defines, weights that do not add
up, DestinationRules for unknown hosts, and two DestinationRules for one host (merged)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from model_inputs import dr, obj, service, up, vs

from meshplane.model.analysis import analyze
from meshplane.model.proxy import Proxy
from meshplane.model.store import ConfigStore
from meshplane.model.views import view_for
from meshplane.translators.plans import outbound_cluster_plans

REVIEWS = "reviews.default.svc.cluster.local"
OLDER = "DestinationRule default/reviews-a"


def sidecar() -> Proxy:
    node = "sidecar~10.0.0.1~sleep.default~default.svc.cluster.local"
    return Proxy.from_node(node, {"LABELS": {"app": "sleep"}})


def gateway_proxy() -> Proxy:
    node = "router~10.0.9.9~gw.istio-system~istio-system.svc.cluster.local"
    return Proxy.from_node(node, {"LABELS": {"istio": "ingressgateway"}})


def store_with(*manifests: dict[str, Any]) -> ConfigStore:
    store = ConfigStore()
    store.apply(up(service("reviews"), doc=0))
    for i, m in enumerate(manifests, start=1):
        store.apply(up(m, doc=i))
    return store


def warnings_for(store: ConfigStore, name: str) -> list[tuple[str, str]]:
    return [(w.field, w.reason) for w in store.warnings() if w.name == name]


def test_two_virtual_services_for_one_host_oldest_wins_on_the_mesh() -> None:
    store = store_with(vs("first", [REVIEWS], "reviews"), vs("second", [REVIEWS], "ratings"))
    view = view_for(store.mesh(), sidecar())
    assert [v.name for v in view.virtual_services] == ["first"]
    found = warnings_for(store, "second")
    assert found == [
        (
            "spec.hosts",
            f"host {REVIEWS} on mesh is also routed by VirtualService default/first: "
            "the older one wins, this one is ignored for that host",
        )
    ] + [f for f in found if f[0].endswith(".host")]
    assert warnings_for(store, "first") == []
    # The model carries the same warning that `meshplane analyze` prints.
    assert any(w.name == "second" for w in store.mesh().warnings)


def test_younger_virtual_service_keeps_its_unclaimed_hosts() -> None:
    other = "ratings.default.svc.cluster.local"
    store = store_with(
        service("ratings"),
        vs("first", [REVIEWS], "reviews"),
        vs("second", [REVIEWS, other], "ratings"),
    )
    view = view_for(store.mesh(), sidecar())
    hosts = {v.name: v.spec.hosts for v in view.virtual_services}
    assert hosts == {"first": (REVIEWS,), "second": (other,)}


def test_two_virtual_services_on_a_gateway_are_merged() -> None:
    gw = obj(
        "Gateway",
        "gw",
        "default",
        {
            "selector": {"istio": "ingressgateway"},
            "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                         "hosts": ["*"]}],
        },
    )  # fmt: skip
    store = store_with(
        gw,
        vs("first", ["example.com"], "reviews", gateways=["gw"]),
        vs("second", ["example.com"], "reviews", gateways=["gw"]),
    )
    view = view_for(store.mesh(), gateway_proxy())
    assert [v.name for v in view.virtual_services] == ["first", "second"]
    (field, reason), *_ = warnings_for(store, "second")
    assert field == "spec.hosts"
    assert "their routes are merged, the older one's first" in reason


def test_undefined_subset_is_reported() -> None:
    route = vs("reviews", [REVIEWS], "reviews")
    route["spec"]["http"][0]["route"][0]["destination"]["subset"] = "v9"
    store = store_with(dr("reviews", REVIEWS, subsets=("v1",)), route)
    assert warnings_for(store, "reviews") == [
        (
            "spec.http[0].route[0].destination.subset",
            f"subset 'v9' of host {REVIEWS} is not defined by any DestinationRule",
        )
    ]


def test_weights_that_do_not_add_up_are_reported_and_applied_as_relative() -> None:
    route = vs("reviews", [REVIEWS], "reviews")
    dest = {"host": "reviews", "subset": "v1"}
    route["spec"]["http"][0]["route"] = [
        {"destination": dest, "weight": 30},
        {"destination": {**dest, "subset": "v2"}, "weight": 30},
    ]
    store = store_with(dr("reviews", REVIEWS, subsets=("v1", "v2")), route)
    assert warnings_for(store, "reviews") == [
        ("spec.http[0].route", "weights sum to 60, not 100 (they are applied as relative)")
    ]
    assert store.errors() == []


def test_destination_rule_for_unknown_host_is_reported() -> None:
    store = store_with(dr("ghost", "ghost.default.svc.cluster.local"))
    assert warnings_for(store, "ghost") == [
        ("spec.host", "host ghost.default.svc.cluster.local is not a known service")
    ]


def two_rules() -> ConfigStore:
    first = dr(
        "reviews-a",
        REVIEWS,
        subsets=("v1", "v2"),
        trafficPolicy={"loadBalancer": {"simple": "RANDOM"}},
    )
    second = dr(
        "reviews-b",
        REVIEWS,
        subsets=("v2", "v3"),
        trafficPolicy={"loadBalancer": {"simple": "ROUND_ROBIN"}},
    )
    second["spec"]["subsets"][0]["labels"] = {"version": "other"}
    return store_with(first, second)


def test_two_destination_rules_for_one_host_merge_as_istio_does() -> None:
    store = two_rules()
    view = view_for(store.mesh(), sidecar())
    rule = view.destination_rules[REVIEWS]
    assert rule.name == "reviews-a"
    # New subset names are appended; a repeated name keeps the oldest's definition.
    assert [(s.name, dict(s.labels)) for s in rule.spec.subsets] == [
        ("v1", {"version": "v1"}),
        ("v2", {"version": "v2"}),
        ("v3", {"version": "v3"}),
    ]
    # The oldest's trafficPolicy wins when both set one.
    assert rule.spec.traffic_policy is not None
    assert rule.spec.traffic_policy.load_balancer is not None
    assert rule.spec.traffic_policy.load_balancer.simple == "RANDOM"
    names = [p.name for p in outbound_cluster_plans(view)]
    assert f"outbound|9080|v3|{REVIEWS}" in names
    assert sorted(warnings_for(store, "reviews-b")) == [
        (
            "spec.host",
            f"DestinationRule default/reviews-a also applies to {REVIEWS} in this namespace; "
            "this one is merged into it (its new subsets are added)",
        ),
        ("spec.subsets[0]", f"ignored: subset 'v2' is already defined by {OLDER}"),
        ("spec.trafficPolicy", f"ignored: {OLDER} already sets a trafficPolicy"),
    ]


def test_younger_rule_supplies_the_policy_when_the_oldest_has_none() -> None:
    store = store_with(
        dr("reviews-a", REVIEWS, subsets=("v1",)),
        dr("reviews-b", REVIEWS, trafficPolicy={"loadBalancer": {"simple": "RANDOM"}}),
    )
    rule = view_for(store.mesh(), sidecar()).destination_rules[REVIEWS]
    assert rule.spec.traffic_policy is not None
    assert rule.spec.traffic_policy.load_balancer is not None
    assert rule.spec.traffic_policy.load_balancer.simple == "RANDOM"
    assert [s.name for s in rule.spec.subsets] == ["v1"]


def test_changing_the_merged_away_rule_changes_the_view() -> None:
    store = two_rules()
    before = view_for(store.mesh(), sidecar()).key
    changed = dr("reviews-b", REVIEWS, subsets=("v4",))
    store.apply(up(changed, doc=2))
    view = view_for(store.mesh(), sidecar())
    assert view.key != before
    assert [s.name for s in view.destination_rules[REVIEWS].spec.subsets] == ["v1", "v2", "v4"]


def test_analyze_command_reports_every_conflict(tmp_path: Path) -> None:
    route = vs("second", [REVIEWS], "reviews")
    route["spec"]["http"][0]["route"][0]["destination"]["subset"] = "v9"
    docs = [
        service("reviews"),
        vs("first", [REVIEWS], "reviews"),
        route,
        dr("ghost", "ghost.default.svc.cluster.local"),
    ]
    (tmp_path / "mesh.yaml").write_text(yaml.safe_dump_all(docs))
    done = subprocess.run(
        [sys.executable, "-m", "meshplane", "analyze", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "VirtualService default/second spec.hosts" in out
    assert "spec.http[0].route[0].destination.subset" in out
    assert "DestinationRule default/ghost spec.host" in out
    assert analyze(store_with(*docs[1:])) != []
