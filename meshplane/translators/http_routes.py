"""VirtualService http routes -> Envoy Routes for one route configuration.

`RouteContext` says where the routes go (the listener port, and the Gateway for router
proxies): matches bound to another port, gateway, source namespace or source labels are
dropped (Istio evaluates those in the control plane), destinations without a port take
Istio's default. Each route carries its action (weighted clusters, redirect or direct
response) and Istio's per-route policies: rewrite, timeout, retries, mirrors, header
operations, and fault / CORS as per-filter config. Delegates are merged by the model, so
routes here are plain. A route whose action cannot be built is skipped rather than emitted
half-built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.core.v3.base_pb2 import DataSource
from envoy.config.route.v3.route_components_pb2 import (
    DirectResponseAction,
    RedirectAction,
    Route,
    RouteAction,
    WeightedCluster,
)
from envoy.config.route.v3.route_pb2 import RouteConfiguration

from meshplane.api.meta import Object
from meshplane.api.networking.virtual_service import (
    Destination,
    HTTPMatchRequest,
    HTTPRedirect,
    HTTPRoute,
    HTTPRouteDestination,
    VirtualServiceSpec,
)
from meshplane.model.hosts import fqdn
from meshplane.model.scope import ProxyView, label_key
from meshplane.model.services import Service
from meshplane.translators.filters import cors, fault
from meshplane.translators.names import config_path, outbound_cluster_name
from meshplane.translators.policies import cluster_policy
from meshplane.translators.protos import any_of, duration, u32
from meshplane.translators.route_match import route_match
from meshplane.translators.route_policies import (
    apply_headers,
    hash_policies,
    mirror_policies,
    retry_policy,
)

_REDIRECT_CODES = {
    301: RedirectAction.MOVED_PERMANENTLY,
    302: RedirectAction.FOUND,
    303: RedirectAction.SEE_OTHER,
    307: RedirectAction.TEMPORARY_REDIRECT,
    308: RedirectAction.PERMANENT_REDIRECT,
}


@dataclass(frozen=True)
class RouteContext:
    """Where routes are built: the view, the listener port, and for routers the Gateway
    (``ns/name``) whose server is being translated."""

    view: ProxyView
    port: int
    gateway: str = ""
    services_by_host: Mapping[str, Service] | None = None
    """The view's services by hostname, when the caller has indexed them (a scan otherwise)."""

    def service(self, host: str) -> Service | None:
        """The visible service named `host`, if any."""
        if self.services_by_host is not None:
            return self.services_by_host.get(host)
        return next((s for s in self.view.services if s.hostname == host), None)


def object_content(obj: Object[Any] | None) -> tuple[object, ...] | None:
    """An object's identity and meaning, comparable by content (Objects compare by id)."""
    if obj is None:
        return None
    return (obj.kind, obj.namespace, obj.name, obj.revision, obj.spec)


def route_inputs(vs: Object[VirtualServiceSpec], ctx: RouteContext) -> tuple[object, ...]:
    """Everything `virtual_service_routes(vs, ctx)` reads besides ctx.port and the view's
    namespace: the memo key of its output. Keep it in step with the builders below: a read
    of the view missing here is a stale-cache bug."""
    suffix = ctx.view.mesh.dns_domain_suffix
    hosts = sorted(
        {
            fqdn(dest.host, vs.namespace, suffix)
            for http in vs.spec.http
            for dest in (
                *(r.destination for r in http.route),
                *(m.destination for m in http.mirrors),
            )
        }
    )
    rules = ctx.view.destination_rules
    selectors = {
        label_key(m.source_labels) for http in vs.spec.http for m in http.match if m.source_labels
    }
    return (
        object_content(vs),
        ctx.gateway,
        ctx.view.mesh,
        [(h, ctx.service(h), object_content(rules.get(h))) for h in hosts],
        sorted(sel for sel in selectors if sel in ctx.view.source_labels),
    )


def _gateway_ref(ref: str, vs_namespace: str) -> str:
    return ref if "/" in ref else f"{vs_namespace}/{ref}"


def _match_applies(m: HTTPMatchRequest, ctx: RouteContext, vs_ns: str) -> bool:
    if m.port is not None and m.port != ctx.port:
        return False
    if m.gateways:
        wanted = ctx.gateway or "mesh"
        refs = {g if g == "mesh" else _gateway_ref(g, vs_ns) for g in m.gateways}
        if wanted not in refs:
            return False
    if m.source_namespace is not None and m.source_namespace != ctx.view.namespace:
        return False
    # The view lists the sourceLabels selectors that match this proxy's labels.
    return not m.source_labels or label_key(m.source_labels) in ctx.view.source_labels


def destination_host_port(
    dest: Destination, vs_namespace: str, ctx: RouteContext
) -> tuple[str, int]:
    """The destination's FQDN and port; without a port: the service's only port, else the
    listener's port (Istio's rule)."""
    host = fqdn(dest.host, vs_namespace, ctx.view.mesh.dns_domain_suffix)
    if dest.port is not None:
        return host, dest.port
    service = ctx.service(host)
    if service is not None and len(service.ports) == 1:
        return host, service.ports[0].number
    return host, ctx.port


def destination_cluster(dest: Destination, vs_namespace: str, ctx: RouteContext) -> str:
    """``outbound|PORT|SUBSET|HOST`` for a route destination."""
    host, port = destination_host_port(dest, vs_namespace, ctx)
    return outbound_cluster_name(port, host, dest.subset or "")


def _destination_hash(
    dest: Destination, vs_ns: str, ctx: RouteContext
) -> list[RouteAction.HashPolicy]:
    host, port = destination_host_port(dest, vs_ns, ctx)
    rule = ctx.view.destination_rules.get(host)
    if rule is None:
        return []
    subset = next((s for s in rule.spec.subsets if s.name == dest.subset), None)
    return hash_policies(cluster_policy(rule.spec.traffic_policy, subset, port).load_balancer)


def route_action(
    destinations: Sequence[HTTPRouteDestination], vs_ns: str, ctx: RouteContext
) -> RouteAction | None:
    """One cluster, or weighted clusters (zero weights dropped, as Istio does)."""
    weighted = [d for d in destinations if d.weight is None or d.weight > 0]
    if not weighted:
        return None
    action = RouteAction()
    if len(weighted) == 1:
        action.cluster = destination_cluster(weighted[0].destination, vs_ns, ctx)
    else:
        action.weighted_clusters.CopyFrom(
            WeightedCluster(clusters=[_cluster_weight(d, vs_ns, ctx) for d in weighted])
        )
    # Hash only when every destination agrees on what to hash; mixing would make the
    # policy depend on which cluster the request lands in.
    hashes = [_destination_hash(d.destination, vs_ns, ctx) for d in weighted]
    if hashes[0] and all(h == hashes[0] for h in hashes):
        action.hash_policy.extend(hashes[0])
    return action


def _cluster_weight(
    dest: HTTPRouteDestination, vs_ns: str, ctx: RouteContext
) -> WeightedCluster.ClusterWeight:
    """One weighted destination, with its own header operations (Istio's per-destination
    `headers`); an authority they set becomes the cluster's host rewrite."""
    out = WeightedCluster.ClusterWeight(
        name=destination_cluster(dest.destination, vs_ns, ctx), weight=u32(dest.weight or 0)
    )
    authority = apply_headers(out, dest.headers)
    if authority:
        out.host_rewrite_literal = authority
    return out


# Envoy refuses a route configuration with a direct response body over 4KB unless it raises
# this limit; Istio raises it to the 1MB its validation allows.
_ENVOY_DEFAULT_MAX_BODY = 4096
MAX_DIRECT_RESPONSE_BODY_BYTES = 1024 * 1024


def allow_direct_response_bodies(config: RouteConfiguration) -> RouteConfiguration:
    """Raise the configuration's direct response body limit when a body needs it."""
    largest = max(
        (
            len(
                r.direct_response.body.inline_string.encode() or r.direct_response.body.inline_bytes
            )
            for vh in config.virtual_hosts
            for r in vh.routes
            if r.HasField("direct_response")
        ),
        default=0,
    )
    if largest > _ENVOY_DEFAULT_MAX_BODY:
        config.max_direct_response_body_size_bytes.value = MAX_DIRECT_RESPONSE_BODY_BYTES
    return config


def redirect_action(redirect: HTTPRedirect, port: int = 0) -> RedirectAction:
    """Istio's translateRedirect. `derivePort`: Envoy cannot take the port from the request,
    but routes are built for one listener port (`port`), so FROM_REQUEST_PORT is that port;
    FROM_PROTOCOL_DEFAULT sets none (the scheme's default)."""
    action = RedirectAction(response_code=_REDIRECT_CODES.get(redirect.redirect_code, 0))
    if redirect.uri is not None:
        action.path_redirect = redirect.uri
    if redirect.authority is not None:
        action.host_redirect = redirect.authority
    if redirect.port is not None:
        action.port_redirect = redirect.port
    elif redirect.derive_port == "FROM_REQUEST_PORT" and port:
        action.port_redirect = port
    if redirect.scheme is not None:
        action.scheme_redirect = redirect.scheme
    return action


def _rewrite(action: RouteAction, http: HTTPRoute, authority: str) -> None:
    """`rewrite` (uri prefix or regex, authority); a header op on the authority otherwise."""
    rewrite = http.rewrite
    if rewrite is not None and rewrite.uri_regex_pattern is not None:
        action.regex_rewrite.pattern.regex = rewrite.uri_regex_pattern
        action.regex_rewrite.substitution = rewrite.uri_regex_substitution or ""
    elif rewrite is not None and rewrite.uri is not None:
        action.prefix_rewrite = rewrite.uri
    if rewrite is not None and rewrite.authority:
        authority = rewrite.authority
    if authority:
        action.host_rewrite_literal = authority


def _forward_action(
    route: Route, http: HTTPRoute, vs_ns: str, ctx: RouteContext, authority: str
) -> bool:
    action = route_action(http.route, vs_ns, ctx)
    if action is None:
        return False
    kept = [d for d in http.route if d.weight is None or d.weight > 0]
    if len(kept) == 1:
        # One destination: its header operations are the route's (Istio merges them).
        authority = apply_headers(route, kept[0].headers) or authority
    action.timeout.CopyFrom(duration(http.timeout or 0))
    retries = retry_policy(http.retries)
    if retries is not None:
        action.retry_policy.CopyFrom(retries)
    _rewrite(action, http, authority)
    action.request_mirror_policies.extend(
        mirror_policies(http.mirrors, lambda d: destination_cluster(d, vs_ns, ctx))
    )
    route.route.CopyFrom(action)
    return True


def _with_action(route: Route, http: HTTPRoute, vs_ns: str, ctx: RouteContext) -> bool:
    authority = apply_headers(route, http.headers)
    if http.fault is not None and (config := fault.route_config(http.fault)) is not None:
        route.typed_per_filter_config[fault.NAME].CopyFrom(any_of(config))
    if http.cors_policy is not None:
        policy = cors.route_config(http.cors_policy)
        route.typed_per_filter_config[cors.NAME].CopyFrom(any_of(policy))
    if http.redirect is not None:
        route.redirect.CopyFrom(redirect_action(http.redirect, ctx.port))
        return True
    if http.direct_response is not None:
        response = DirectResponseAction(status=http.direct_response.status)
        if http.direct_response.body is not None:
            response.body.CopyFrom(DataSource(inline_string=http.direct_response.body))
        elif http.direct_response.body_bytes is not None:
            response.body.CopyFrom(DataSource(inline_bytes=http.direct_response.body_bytes))
        route.direct_response.CopyFrom(response)
        return True
    return _forward_action(route, http, vs_ns, ctx, authority)


def http_route_routes(http: HTTPRoute, vs_ns: str, ctx: RouteContext) -> list[Route]:
    """Envoy routes for one http route: one per applicable match block (Istio's shape)."""
    if http.match:
        matches: list[HTTPMatchRequest | None] = [
            m for m in http.match if _match_applies(m, ctx, vs_ns)
        ]
        if not matches:
            return []
    else:
        matches = [None]
    template = Route(name=http.name)
    if not _with_action(template, http, vs_ns, ctx):
        return []
    routes = []
    for m in matches:
        route = Route()
        route.CopyFrom(template)
        route.match.CopyFrom(route_match(m))
        routes.append(route)
    return routes


def virtual_service_routes(vs: Object[VirtualServiceSpec], ctx: RouteContext) -> list[Route]:
    """Every route of `vs` that applies in `ctx`, in the VirtualService's order, each naming
    its VirtualService in Istio's `istio` metadata (istioctl's VIRTUAL SERVICE column)."""
    routes = [r for http in vs.spec.http for r in http_route_routes(http, vs.namespace, ctx)]
    path = config_path(vs.namespace, "virtual-service", vs.name)
    for route in routes:
        route.metadata.filter_metadata["istio"].update({"config": path})
    return routes


def default_route(cluster: str) -> Route:
    """``prefix: /`` to `cluster`, no timeout, Istio's default retries."""
    action = RouteAction(cluster=cluster, timeout=duration(0))
    retries = retry_policy(None)
    if retries is not None:
        action.retry_policy.CopyFrom(retries)
    route = Route(name="default", route=action)
    route.match.prefix = "/"
    return route
