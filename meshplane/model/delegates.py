"""Delegate VirtualServices (Istio 1.6+): a root route with `delegate` is replaced by the
routes of another VirtualService, merged the way istiod merges them.

A delegate has no hosts and is never bound on its own; a root reaches it by name (its
namespace defaults to the root's) if the delegate is exported to the root's namespace.
Each delegate route keeps its own action; its matches are ANDed with the root's, and a
delegate match that no root match can contain (istio's hasConflict) drops the whole
delegate route. Policies the delegate route leaves unset come from the root route.
Delegation is one level deep: a delegate's own `delegate` routes are dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from meshplane.api.errors import ValidationError
from meshplane.api.meta import Object
from meshplane.api.networking.virtual_service import (
    HTTPMatchRequest,
    HTTPRoute,
    StringMatch,
    VirtualServiceSpec,
)

VS = Object[VirtualServiceSpec]
Lookup = Callable[[str, str, str], VS | None]  # (namespace, name, root namespace)

_INHERITED = (
    "rewrite", "timeout", "retries", "fault", "mirrors", "cors_policy", "headers",
)  # fmt: skip


def _string_conflict(root: StringMatch | None, leaf: StringMatch | None) -> bool:
    """istio's stringMatchConflict: the leaf must select a subset of what the root does."""
    if root is None or leaf is None:
        return False
    if root.regex or leaf.regex:
        return True  # a regex can only stand alone on one side
    if root.exact:
        return leaf.prefix is not None or leaf.exact != root.exact
    if root.prefix:
        narrower = leaf.prefix if leaf.prefix is not None else leaf.exact
        return narrower is None or not narrower.startswith(root.prefix)
    return True


def _map_conflict(root: Mapping[str, StringMatch], leaf: Mapping[str, StringMatch]) -> bool:
    return any(_string_conflict(root.get(k), v) for k, v in leaf.items())


def has_conflict(root: HTTPMatchRequest, leaf: HTTPMatchRequest) -> bool:
    """Whether `leaf` (a delegate match) cannot be narrowed into `root` (istio's rule)."""
    pairs = (
        (root.uri, leaf.uri),
        (root.scheme, leaf.scheme),
        (root.method, leaf.method),
        (root.authority, leaf.authority),
    )
    if any(_string_conflict(r, lf) for r, lf in pairs):
        return True
    if _map_conflict(root.headers, leaf.headers):
        return True
    if _map_conflict(root.without_headers, leaf.without_headers):
        return True
    if _map_conflict(root.query_params, leaf.query_params):
        return True
    if root.ignore_uri_case != leaf.ignore_uri_case:
        return True
    if root.port is not None and leaf.port is not None and root.port != leaf.port:
        return True
    if root.source_namespace and leaf.source_namespace != root.source_namespace:
        return True
    if any(root.source_labels.get(k, v) != v for k, v in leaf.source_labels.items()):
        return True
    return bool(root.gateways and leaf.gateways and not set(leaf.gateways) <= set(root.gateways))


def merge_match(root: HTTPMatchRequest, leaf: HTTPMatchRequest) -> HTTPMatchRequest:
    """The leaf match with whatever it leaves unset taken from the root (istio's
    mergeHTTPMatchRequest)."""
    name = "-".join(n for n in (root.name, leaf.name) if n)
    return dataclasses.replace(
        leaf,
        name=name,
        uri=leaf.uri or root.uri,
        scheme=leaf.scheme or root.scheme,
        method=leaf.method or root.method,
        authority=leaf.authority or root.authority,
        headers={**root.headers, **leaf.headers},
        without_headers={**root.without_headers, **leaf.without_headers},
        query_params={**root.query_params, **leaf.query_params},
        port=leaf.port if leaf.port is not None else root.port,
        source_labels={**root.source_labels, **leaf.source_labels},
        source_namespace=leaf.source_namespace or root.source_namespace,
        gateways=leaf.gateways or root.gateways,
    )


def merge_matches(
    root: tuple[HTTPMatchRequest, ...], leaf: tuple[HTTPMatchRequest, ...]
) -> tuple[HTTPMatchRequest, ...] | None:
    """Every (root, leaf) pair that does not conflict, merged; None (a conflict) when some
    leaf match fits no root match."""
    if not root or not leaf:
        return root or leaf
    out: list[HTTPMatchRequest] = []
    for sub in leaf:
        merged = [merge_match(r, sub) for r in root if not has_conflict(r, sub)]
        if not merged:
            return None
        out += merged
    return tuple(out)


def merge_route(root: HTTPRoute, leaf: HTTPRoute) -> HTTPRoute | None:
    """The delegate route `leaf` under the root route; None when their matches conflict."""
    matches = merge_matches(root.match, leaf.match)
    if matches is None:
        return None
    inherited: dict[str, Any] = {
        name: getattr(root, name) for name in _INHERITED if not getattr(leaf, name)
    }
    name = "-".join(n for n in (root.name, leaf.name) if n)
    return dataclasses.replace(leaf, name=name, match=matches, **inherited)


def resolve(root: VS, lookup: Lookup) -> tuple[VS, tuple[VS, ...]]:
    """`root` with every delegate route replaced by its delegate's merged routes, and the
    delegates used (their revisions belong in any cache key of the result)."""
    if not any(r.delegate for r in root.spec.http):
        return root, ()
    used: dict[tuple[str, str], VS] = {}
    routes: list[HTTPRoute] = []
    for http in root.spec.http:
        if http.delegate is None:
            routes.append(http)
            continue
        ns = http.delegate.namespace or root.namespace
        delegate = lookup(ns, http.delegate.name, root.namespace)
        if delegate is None:
            continue
        used[(ns, http.delegate.name)] = delegate
        for leaf in delegate.spec.http:
            merged = None if leaf.delegate else merge_route(http, leaf)
            if merged is not None:
                routes.append(merged)
    spec = dataclasses.replace(root.spec, http=tuple(routes))
    return dataclasses.replace(root, spec=spec), tuple(used.values())


def _warn(obj: Object[Any], field: str, reason: str) -> ValidationError:
    return ValidationError(obj.origin, obj.kind, obj.namespace, obj.name, field, reason, "warning")


def delegate_warnings(services: tuple[VS, ...], lookup: Lookup) -> Iterator[ValidationError]:
    """Missing delegates, delegates that delegate again, and delegate routes dropped for
    conflicting matches (what istiod logs)."""
    for vs in services:
        for i, http in enumerate(vs.spec.http):
            if http.delegate is None:
                continue
            path = f"spec.http[{i}].delegate"
            ns = http.delegate.namespace or vs.namespace
            delegate = lookup(ns, http.delegate.name, vs.namespace)
            if delegate is None:
                reason = (
                    f"delegate VirtualService {ns}/{http.delegate.name} not found (a delegate "
                    f"has no hosts and must be exported to {vs.namespace}); route dropped"
                )
                yield _warn(vs, path, reason)
                continue
            for j, leaf in enumerate(delegate.spec.http):
                leaf_path = f"spec.http[{j}]"
                if leaf.delegate is not None:
                    yield _warn(
                        delegate,
                        f"{leaf_path}.delegate",
                        "delegation is one level deep: a delegate's delegate route is dropped",
                    )
                elif merge_route(http, leaf) is None:
                    yield _warn(
                        delegate,
                        f"{leaf_path}.match",
                        f"conflicts with the match of VirtualService {vs.namespace}/{vs.name} "
                        f"{path.removesuffix('.delegate')}, which delegates here; route dropped",
                    )


def _exported_to(vs: VS, namespace: str) -> bool:
    export = vs.spec.export_to
    if not export or "*" in export:
        return True
    return namespace in export or ("." in export and vs.namespace == namespace)


def delegate_lookup(services: tuple[VS, ...]) -> Lookup:
    """Find a delegate by (namespace, name) as a root in `root namespace` may use it:
    VirtualServices without hosts, exported to that namespace."""
    by_name = {(vs.namespace, vs.name): vs for vs in services if not vs.spec.hosts}

    def lookup(namespace: str, name: str, root_namespace: str) -> VS | None:
        found = by_name.get((namespace, name))
        return found if found is not None and _exported_to(found, root_namespace) else None

    return lookup
