"""Route configurations: domains, default routes, VirtualService routes, gateways."""

from __future__ import annotations

import pytest
from envoy.config.route.v3.route_components_pb2 import VirtualHost

from meshplane.api.networking.destination_rule import (
    ConsistentHash,
    LoadBalancer,
    TrafficPolicy,
)
from meshplane.api.networking.gateway import GatewayPort, GatewaySpec, Server, ServerTLS
from meshplane.api.networking.virtual_service import (
    Destination,
    HTTPMatchRequest,
    HTTPRetry,
    HTTPRoute,
    HTTPRouteDestination,
    StringMatch,
)
from meshplane.translators import translate
from meshplane.translators.domains import alternate_hostnames
from meshplane.translators.route_policies import parse_retry_on
from tests.fixtures import builders as b

REVIEWS = b.fqdn("reviews")


@pytest.mark.parametrize(
    ("hostname", "proxy_domain", "expected"),
    [
        (
            "reviews.default.svc.cluster.local",
            "default.svc.cluster.local",
            ["reviews", "reviews.default.svc.cluster", "reviews.default.svc", "reviews.default"],
        ),
        (
            "ratings.other.svc.cluster.local",
            "default.svc.cluster.local",
            ["ratings.other", "ratings.other.svc.cluster", "ratings.other.svc"],
        ),
        ("api.example.com", "default.svc.cluster.local", []),
    ],
)
def test_alternate_hostnames(hostname: str, proxy_domain: str, expected: list[str]) -> None:
    assert alternate_hostnames(hostname, proxy_domain) == expected


def _vhost(res_routes: object, name: str) -> VirtualHost:
    return next(v for v in res_routes.virtual_hosts if v.name == name)  # type: ignore[attr-defined]


def test_default_route_and_retry_policy() -> None:
    res = translate(b.view(services=[b.service("reviews")]))
    vhost = _vhost(res.routes["9080"], f"{REVIEWS}:9080")
    assert "reviews:9080" in vhost.domains and "10.96.0.10" in vhost.domains
    route = vhost.routes[0]
    assert route.match.prefix == "/"
    assert route.route.cluster == f"outbound|9080||{REVIEWS}"
    assert route.route.timeout.seconds == 0
    retry = route.route.retry_policy
    assert retry.num_retries.value == 2
    assert (
        retry.retry_on
        == "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    )
    assert retry.retry_host_predicate[0].name == "envoy.retry_host_predicates.previous_hosts"
    assert retry.host_selection_retry_max_attempts == 5


def test_domains_never_collide() -> None:
    # Two services sharing a VIP: the VIP stays with the first host only.
    one = b.service("a", addresses=("10.96.0.50",))
    two = b.service("b", addresses=("10.96.0.50",))
    res = translate(b.view(services=[one, two]))
    domains = [d for v in res.routes["9080"].virtual_hosts for d in v.domains]
    assert len(domains) == len(set(domains))
    assert "10.96.0.50" in _vhost(res.routes["9080"], f"{b.fqdn('a')}:9080").domains


def test_virtual_service_matches_weights_timeout_retries() -> None:
    http = (
        HTTPRoute(
            name="jason",
            match=(
                HTTPMatchRequest(headers={"end-user": StringMatch(exact="jason")}),
                HTTPMatchRequest(uri=StringMatch(regex="^/v2/.*")),
            ),
            route=(HTTPRouteDestination(Destination("reviews", "v2")),),
            timeout=1.5,
            retries=HTTPRetry(attempts=3, per_try_timeout=0.5, retry_on="5xx,503"),
        ),
        b.weighted_route("reviews", {"v1": 90, "v3": 10}),
    )
    vs = b.virtual_service(["reviews"], http)
    res = translate(b.view(services=[b.service("reviews")], virtual_services=[vs]))
    routes = _vhost(res.routes["9080"], f"{REVIEWS}:9080").routes
    assert len(routes) == 3
    assert routes[0].match.headers[0].string_match.exact == "jason"
    assert routes[1].match.safe_regex.regex == "^/v2/.*"
    assert routes[0].route.cluster == f"outbound|9080|v2|{REVIEWS}"
    assert routes[0].route.timeout.ToMilliseconds() == 1500
    assert routes[0].route.retry_policy.num_retries.value == 3
    assert routes[0].route.retry_policy.retry_on == "5xx,retriable-status-codes"
    assert list(routes[0].route.retry_policy.retriable_status_codes) == [503]
    weights = [(c.name, c.weight.value) for c in routes[2].route.weighted_clusters.clusters]
    assert weights == [(f"outbound|9080|v1|{REVIEWS}", 90), (f"outbound|9080|v3|{REVIEWS}", 10)]


def test_match_on_another_port_is_dropped() -> None:
    http = (
        HTTPRoute(
            match=(HTTPMatchRequest(port=8000),),
            route=(HTTPRouteDestination(Destination("reviews", "v2")),),
        ),
    )
    vs = b.virtual_service(["reviews"], http)
    res = translate(b.view(services=[b.service("reviews")], virtual_services=[vs]))
    route = _vhost(res.routes["9080"], f"{REVIEWS}:9080").routes[0]
    assert route.route.cluster == f"outbound|9080||{REVIEWS}"  # falls back to the default


def test_consistent_hash_becomes_route_hash_policy() -> None:
    lb = LoadBalancer(consistent_hash=ConsistentHash(http_header_name="x-user"))
    rule = b.destination_rule(REVIEWS, policy=TrafficPolicy(load_balancer=lb))
    vs = b.virtual_service(["reviews"], [b.weighted_route("reviews", {"": 100})])
    res = translate(
        b.view(services=[b.service("reviews")], destination_rules=[rule], virtual_services=[vs])
    )
    route = _vhost(res.routes["9080"], f"{REVIEWS}:9080").routes[0]
    assert route.route.hash_policy[0].header.header_name == "x-user"


@pytest.mark.parametrize(
    ("retry_on", "expected"),
    [
        ("5xx,gateway-error", ("5xx,gateway-error", [])),
        ("503, 429", ("retriable-status-codes", [503, 429])),
        ("reset,retriable-status-codes,502", ("reset,retriable-status-codes", [502])),
    ],
)
def test_parse_retry_on(retry_on: str, expected: tuple[str, list[int]]) -> None:
    assert parse_retry_on(retry_on) == expected


def test_gateway_hosts_intersect_and_https_redirect() -> None:
    server_plain = Server(
        GatewayPort(80, "HTTP", "http"), ("*.example.com",), ServerTLS(https_redirect=True)
    )
    gw = b.obj("Gateway", "gw", GatewaySpec(servers=(server_plain,)), "istio-system")
    bound = b.virtual_service(
        ["shop.example.com", "other.org"],
        [b.weighted_route("reviews", {"": 100})],
        gateways=["istio-system/gw"],
    )
    unbound = b.virtual_service(
        ["x.example.com"], [b.weighted_route("reviews", {"": 100})], name="u"
    )
    view = b.view(
        services=[b.service("reviews")],
        gateways=[gw],
        virtual_services=[bound, unbound],
        proxy_type="router",
        namespace="istio-system",
    )
    routes = translate(view).routes["http.80"]
    assert [v.name for v in routes.virtual_hosts] == ["shop.example.com:80"]
    vhost = routes.virtual_hosts[0]
    assert list(vhost.domains) == ["shop.example.com", "shop.example.com:*"]
    assert vhost.require_tls == VirtualHost.ALL
    assert vhost.routes[0].route.cluster == f"outbound|9080||{REVIEWS}"


def test_gateway_without_virtual_services_answers_404() -> None:
    view = b.view(gateways=[b.gateway([(80, "HTTP", ["*"])])], proxy_type="router")
    vhost = translate(view).routes["http.80"].virtual_hosts[0]
    assert vhost.routes[0].direct_response.status == 404
