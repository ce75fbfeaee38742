"""Which AuthorizationPolicies and RequestAuthentications apply to one proxy, as Istio
picks them (getConfigsForWorkload): policies in the root namespace apply mesh-wide,
policies in the proxy's namespace apply to it; a policy with a `selector` applies only to
workloads whose labels match it (a root-namespace one in every namespace). Every policy
that applies is enforced; there is no "most specific wins" as for PeerAuthentication."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from meshplane.api.meta import Object
from meshplane.model.mesh import MeshModel
from meshplane.model.proxy import Proxy
from meshplane.model.scope import ProxyView
from meshplane.model.workloads import selects


class _Selecting(Protocol):
    @property
    def selector(self) -> Mapping[str, str] | None: ...


S = TypeVar("S", bound=_Selecting)


def applying(
    policies: Sequence[Object[S]], root_namespace: str, namespace: str, labels: Mapping[str, str]
) -> tuple[Object[S], ...]:
    """The policies (in model order: oldest first) that apply to a workload with `labels`
    in `namespace`."""
    return tuple(
        p
        for p in policies
        if p.namespace in (root_namespace, namespace)
        and (not p.spec.selector or selects(p.spec.selector, labels))
    )


def policy_key(policies: Sequence[Object[Any]]) -> tuple[tuple[str, str], ...]:
    """What of the applying policies goes into a view's cache key."""
    return tuple((str(p.key), p.revision) for p in policies)


SecuredViews = dict[tuple[int, tuple[Any, ...]], ProxyView]


def secured_view(view: ProxyView, mesh: MeshModel, proxy: Proxy, cache: SecuredViews) -> ProxyView:
    """`view` with the security policies that apply to `proxy` added and folded into its key;
    `view` itself when none applies. Equal results are shared through `cache` (owned by the
    model's index, so it lives as long as the views it holds)."""
    root = mesh.mesh_config.root_namespace
    authz = applying(mesh.authorization_policies, root, proxy.namespace, proxy.labels)
    authn = applying(mesh.request_authentications, root, proxy.namespace, proxy.labels)
    if not authz and not authn:
        return view
    parts = (policy_key(authz), policy_key(authn))
    found = cache.get((id(view), parts))
    if found is None:
        digest = hashlib.sha256(repr((view.key, parts)).encode()).hexdigest()[:24]
        found = dataclasses.replace(
            view, key=digest, authorization_policies=authz, request_authentications=authn
        )
        cache[(id(view), parts)] = found
    return found
