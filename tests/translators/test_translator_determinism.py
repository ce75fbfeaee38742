"""Views with equal contents produce byte-identical Resources (snapshots are shared by
view key, and versions are content hashes: any nondeterminism would churn pushes)."""

from __future__ import annotations

from meshplane.api.networking.destination_rule import LoadBalancer, TrafficPolicy
from meshplane.model.scope import InboundPort, ProxyView
from meshplane.translators import translate
from meshplane.translators.resources import Resources
from tests.fixtures import builders as b


def _view() -> ProxyView:
    services = [
        b.service("reviews"),
        b.service("ratings", namespace="other", addresses=("10.96.0.30",)),
        b.service("db", ports=[("tcp", 5432, "TCP")], addresses=("10.96.0.40",)),
    ]
    endpoints = [
        b.endpoint(
            services[0], f"10.1.0.{i}", labels={"version": f"v{i % 3}"}, locality=f"r/z{i % 2}"
        )
        for i in range(6, 0, -1)
    ]
    rule = b.destination_rule(
        b.fqdn("reviews"),
        {"v0": {"version": "v0"}, "v1": {"version": "v1"}},
        policy=TrafficPolicy(load_balancer=LoadBalancer(simple="ROUND_ROBIN")),
    )
    vs = b.virtual_service(["reviews"], [b.weighted_route("reviews", {"v0": 50, "v1": 50})])
    return b.view(
        services=services,
        endpoints=endpoints,
        destination_rules=[rule],
        virtual_services=[vs],
        inbound=[InboundPort(9080, "HTTP", 9080)],
        key="k1",
    )


def _bytes(resources: Resources) -> list[tuple[str, str, bytes]]:
    return [
        (kind, name, message.SerializeToString(deterministic=True))
        for kind in ("listeners", "routes", "clusters", "endpoints", "secrets")
        for name, message in getattr(resources, kind).items()
    ]


def test_equal_views_give_identical_bytes() -> None:
    first, second = translate(_view()), translate(_view())
    assert _bytes(first) == _bytes(second)
    assert _bytes(first)  # not vacuous


def test_resources_are_keyed_by_their_names_in_order() -> None:
    res = translate(_view())
    for kind in ("listeners", "routes", "clusters"):
        mapping = getattr(res, kind)
        assert list(mapping) == sorted(mapping)
        assert all(name == message.name for name, message in mapping.items())
