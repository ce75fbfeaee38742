"""`envoy.filters.http.rbac` and `envoy.filters.network.rbac`: AuthorizationPolicies as
Envoy RBAC filters, compiled as Istio does (pilot/pkg/security/authz/builder).

- One filter per action, in Istio's order: AUDIT (RBAC action LOG), CUSTOM (a shadow RBAC
  filter and ext_authz, filters/ext_authz.py), DENY, ALLOW.
- Each rule is one RBAC policy named ``ns[NS]-policy[NAME]-rule[I]``: its principals are
  the `from` sources (any of them), its permissions the `to` operations (any of them); the
  fields of one source or operation must all match, and every `when` condition is added to
  each principal (source-side attributes) or each permission (request-side attributes).
- A policy without rules matches nothing, so an ALLOW policy without rules denies all.
- On TCP chains, HTTP-only attributes (request principals, hosts, methods, paths, request
  headers and auth claims) cannot be checked: an ALLOW rule using one is dropped (fail
  closed: a smaller allow); in DENY and AUDIT rules the attribute is ignored (a wider deny).
- Principals (`principals`, `notPrincipals`, ``source.principal``) in the mesh's trust
  domain, one of its `trustDomainAliases` or ``cluster.local`` match in all of them
  (trust_domains.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.listener.v3.listener_components_pb2 import Filter
from envoy.config.rbac.v3.rbac_pb2 import RBAC as RBACConfig
from envoy.config.rbac.v3.rbac_pb2 import Permission, Policy, Principal
from envoy.extensions.filters.http.rbac.v3.rbac_pb2 import RBAC as HttpRBAC
from envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2 import (  # noqa: E501
    HttpFilter,
)
from envoy.extensions.filters.network.rbac.v3.rbac_pb2 import RBAC as NetworkRBAC

from meshplane.api.meta import Object
from meshplane.api.security.authorization_policy import (
    AuthorizationPolicySpec,
    Condition,
    Operation,
    Rule,
    Source,
)
from meshplane.model.mesh import MeshConfig
from meshplane.model.scope import ProxyView
from meshplane.translators.filters import rbac_matchers as m
from meshplane.translators.filters.ext_authz import custom_http_filters, custom_network_filters
from meshplane.translators.protos import any_of
from meshplane.translators.trust_domains import CLUSTER_LOCAL, TrustDomainBundle

HTTP_NAME = "envoy.filters.http.rbac"
NETWORK_NAME = "envoy.filters.network.rbac"
TCP_STAT_PREFIX = "tcp."
# Istio's filter order. CUSTOM rules are compiled like DENY ones (a match means "ask the
# external authorizer"), then wrapped by filters/ext_authz.py.
ACTION_ORDER: tuple[tuple[str, RBACConfig.Action.ValueType], ...] = (
    ("AUDIT", RBACConfig.LOG),
    ("CUSTOM", RBACConfig.DENY),
    ("DENY", RBACConfig.DENY),
    ("ALLOW", RBACConfig.ALLOW),
)

Policies = Sequence[Object[AuthorizationPolicySpec]]


@dataclass(frozen=True)
class _Term:
    """One attribute of a source, operation or condition: its values OR'd, negated for
    the ``not*`` fields."""

    build: Callable[[str], Any]
    values: tuple[str, ...]
    negate: bool
    http_only: bool


def _source_terms(s: Source, bundle: TrustDomainBundle) -> list[_Term]:
    return [
        _Term(m.principal_name, bundle.principals(s.principals), False, False),
        _Term(m.principal_name, bundle.principals(s.not_principals), True, False),
        _Term(m.request_principal, s.request_principals, False, True),
        _Term(m.request_principal, s.not_request_principals, True, True),
        _Term(m.namespace, s.namespaces, False, False),
        _Term(m.namespace, s.not_namespaces, True, False),
        _Term(m.service_account, s.service_accounts, False, False),
        _Term(m.service_account, s.not_service_accounts, True, False),
        _Term(m.direct_remote_ip, s.ip_blocks, False, False),
        _Term(m.direct_remote_ip, s.not_ip_blocks, True, False),
        _Term(m.remote_ip, s.remote_ip_blocks, False, False),
        _Term(m.remote_ip, s.not_remote_ip_blocks, True, False),
    ]


def _operation_terms(o: Operation) -> list[_Term]:
    return [
        _Term(m.host, o.hosts, False, True),
        _Term(m.host, o.not_hosts, True, True),
        _Term(m.destination_port, o.ports, False, False),
        _Term(m.destination_port, o.not_ports, True, False),
        _Term(m.method, o.methods, False, True),
        _Term(m.method, o.not_methods, True, True),
        _Term(m.path, o.paths, False, True),
        _Term(m.path, o.not_paths, True, True),
    ]


# `when` attribute -> (builder, principal side?, HTTP only?)
_CONDITIONS: dict[str, tuple[Callable[[str], Any], bool, bool]] = {
    "source.ip": (m.direct_remote_ip, True, False),
    "remote.ip": (m.remote_ip, True, False),
    "source.namespace": (m.namespace, True, False),
    "request.auth.principal": (m.request_principal, True, True),
    "request.auth.audiences": (m.claim(("aud",)), True, True),
    "request.auth.presenter": (m.claim(("azp",)), True, True),
    "destination.ip": (m.destination_ip, False, False),
    "destination.port": (m.destination_port, False, False),
    "connection.sni": (m.server_name, False, False),
}


def _condition_terms(c: Condition, bundle: TrustDomainBundle) -> tuple[bool, list[_Term]]:
    """(principal side?, terms) for one `when` entry."""
    if c.key == "source.principal":
        values, not_values = bundle.principals(c.values), bundle.principals(c.not_values)
        return True, [
            _Term(m.principal_name, values, False, False),
            _Term(m.principal_name, not_values, True, False),
        ]
    if c.key.startswith("request.headers["):
        build = m.request_header(c.key[len("request.headers[") : -1])
        principal_side, http_only = True, True
    elif c.key.startswith("request.auth.claims["):
        path = tuple(c.key[len("request.auth.claims[") : -1].split("]["))
        build, principal_side, http_only = m.claim(path), True, True
    elif c.key.startswith("experimental.envoy.filters."):
        build, principal_side, http_only = m.filter_metadata(c.key), False, False
    else:
        build, principal_side, http_only = _CONDITIONS[c.key]
    terms = [_Term(build, c.values, False, http_only), _Term(build, c.not_values, True, http_only)]
    return principal_side, terms


def _combine(kind: type[Any], terms: list[_Term]) -> Any:
    """AND of the terms with values (any = match all); each term an OR of its values."""
    parts = []
    for t in terms:
        if not t.values:
            continue
        ids = [t.build(v) for v in t.values]
        one = ids[0] if len(ids) == 1 else _or(kind, ids)
        parts.append(_not(kind, one) if t.negate else one)
    if not parts:
        return kind(any=True)
    return parts[0] if len(parts) == 1 else _and(kind, parts)


def _or(kind: type[Any], items: list[Any]) -> Any:
    if kind is Principal:
        return Principal(or_ids=Principal.Set(ids=items))
    return Permission(or_rules=Permission.Set(rules=items))


def _and(kind: type[Any], items: list[Any]) -> Any:
    if kind is Principal:
        return Principal(and_ids=Principal.Set(ids=items))
    return Permission(and_rules=Permission.Set(rules=items))


def _not(kind: type[Any], item: Any) -> Any:
    return Principal(not_id=item) if kind is Principal else Permission(not_rule=item)


def _uses_http(terms: list[_Term]) -> bool:
    return any(t.http_only and t.values for t in terms)


def rule_policy(
    rule: Rule,
    *,
    tcp: bool,
    action: str,
    trust_domain: str = CLUSTER_LOCAL,
    aliases: Sequence[str] = (),
) -> Policy | None:
    """One rule as an RBAC policy; None when a TCP ALLOW rule needs HTTP attributes.
    Principals in ``cluster.local``, `trust_domain` (the mesh's) or one of its `aliases`
    are matched in each of those."""
    bundle = TrustDomainBundle.of(trust_domain, aliases)
    when_principal: list[_Term] = []
    when_permission: list[_Term] = []
    for condition in rule.when:
        principal_side, terms = _condition_terms(condition, bundle)
        (when_principal if principal_side else when_permission).extend(terms)
    sources = [_source_terms(s, bundle) + when_principal for s in rule.sources]
    sources = sources or [when_principal]
    operations = [_operation_terms(o) + when_permission for o in rule.operations]
    operations = operations or [when_permission]
    if tcp:
        if action == "ALLOW" and any(_uses_http(t) for t in (*sources, *operations)):
            return None
        sources = [[t for t in ts if not t.http_only] for ts in sources]
        operations = [[t for t in ts if not t.http_only] for ts in operations]
    return Policy(
        principals=[_combine(Principal, ts) for ts in sources],
        permissions=[_combine(Permission, ts) for ts in operations],
    )


def policy_id(policy: Object[AuthorizationPolicySpec], index: int) -> str:
    return f"ns[{policy.namespace}]-policy[{policy.name}]-rule[{index}]"


def _policies(
    policies: Policies, *, tcp: bool, action: str, mesh: MeshConfig
) -> Iterator[tuple[str, Policy]]:
    td, aliases = mesh.trust_domain, mesh.trust_domain_aliases
    for policy in policies:
        for i, rule in enumerate(policy.spec.rules):
            compiled = rule_policy(rule, tcp=tcp, action=action, trust_domain=td, aliases=aliases)
            if compiled is not None:
                yield policy_id(policy, i), compiled


def rbac_configs(view: ProxyView, *, tcp: bool) -> list[tuple[str, RBACConfig]]:
    """(action, RBAC config) for each action some applying policy uses, in filter order."""
    configs = []
    for action, envoy_action in ACTION_ORDER:
        chosen = [p for p in view.authorization_policies if p.spec.action == action]
        if chosen:
            policies = dict(_policies(chosen, tcp=tcp, action=action, mesh=view.mesh))
            configs.append((action, RBACConfig(action=envoy_action, policies=policies)))
    return configs


def http_rbac_filters(view: ProxyView) -> list[HttpFilter]:
    """AUDIT, CUSTOM, DENY, ALLOW filters for an HTTP connection manager of `view`."""
    filters = []
    for action, config in rbac_configs(view, tcp=False):
        if action == "CUSTOM":
            filters += custom_http_filters(view, config)
        else:
            filters.append(HttpFilter(name=HTTP_NAME, typed_config=any_of(HttpRBAC(rules=config))))
    return filters


def network_rbac_filters(view: ProxyView, port: int) -> list[Filter]:
    """AUDIT, CUSTOM, DENY, ALLOW network filters for a TCP chain of `view` on `port` (the
    policies themselves match ports through `destination_port`)."""
    del port  # every chain of a workload gets the same policies, as in Istio
    filters = []
    for action, config in rbac_configs(view, tcp=True):
        if action == "CUSTOM":
            filters += custom_network_filters(view, config)
            continue
        rbac = NetworkRBAC(rules=config, stat_prefix=TCP_STAT_PREFIX)
        filters.append(Filter(name=NETWORK_NAME, typed_config=any_of(rbac)))
    return filters
