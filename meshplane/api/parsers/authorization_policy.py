"""AuthorizationPolicy parser with Istio's validation (pkg/config/validation and
pkg/config/security): known actions, `provider` only with CUSTOM, no empty `from`/`to`
lists or empty sources/operations, no empty values, IPs/CIDRs and ports checked, `when`
keys restricted to the attributes Istio supports."""

from __future__ import annotations

import re
from collections.abc import Callable

from meshplane.api import formats
from meshplane.api.fields import Fields
from meshplane.api.parsers.security_selector import match_labels
from meshplane.api.security.authorization_policy import (
    ACTIONS,
    AuthorizationPolicySpec,
    Condition,
    Operation,
    Rule,
    Source,
)

_SOURCE_FIELDS = {
    "principals": "principals",
    "notPrincipals": "not_principals",
    "requestPrincipals": "request_principals",
    "notRequestPrincipals": "not_request_principals",
    "namespaces": "namespaces",
    "notNamespaces": "not_namespaces",
    "serviceAccounts": "service_accounts",
    "notServiceAccounts": "not_service_accounts",
    "ipBlocks": "ip_blocks",
    "notIpBlocks": "not_ip_blocks",
    "remoteIpBlocks": "remote_ip_blocks",
    "notRemoteIpBlocks": "not_remote_ip_blocks",
}
_OPERATION_FIELDS = {
    "hosts": "hosts",
    "notHosts": "not_hosts",
    "ports": "ports",
    "notPorts": "not_ports",
    "methods": "methods",
    "notMethods": "not_methods",
    "paths": "paths",
    "notPaths": "not_paths",
}
# Attributes whose values are free strings (Istio's supported `when` keys).
_PLAIN_KEYS = (
    "source.namespace",
    "source.principal",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "connection.sni",
)
_IP_KEYS = ("source.ip", "remote.ip", "destination.ip")
_BRACKETED = re.compile(r"^(request\.headers|request\.auth\.claims)\[(.+)\]$")
_EXPERIMENTAL = re.compile(r"^experimental\.envoy\.filters\.[a-z0-9_.]+\[.+\]$")


def _not_empty(value: str) -> str:
    return "" if value else "empty value not allowed"


def _port_problem(value: str) -> str:
    if not value.isdigit() or not 0 < int(value) < 65536:
        return f"port {value!r} must be a number in [1, 65535]"
    return ""


def _path_problem(value: str) -> str:
    if not value:
        return "empty value not allowed"
    if "{" in value or "}" in value:
        return f"path templates ({{*}}, {{**}}) are not supported yet: {value!r}"
    return ""


def _service_account_problem(value: str) -> str:
    ns, _, sa = value.partition("/")
    if not ns or not sa or "/" in sa:
        return f"service account {value!r} must be 'namespace/name'"
    return ""


def _source_check(field: str) -> Callable[[str], str]:
    if "IpBlocks" in field or "ipBlocks" in field:
        return formats.cidr_problem
    if "erviceAccounts" in field:
        return _service_account_problem
    return _not_empty


def _operation_check(field: str) -> Callable[[str], str]:
    if field in ("ports", "notPorts"):
        return _port_problem
    if field in ("paths", "notPaths"):
        return _path_problem
    return _not_empty


def _source(f: Fields) -> Source | None:
    src = f.obj("source")
    f.keys(("source",))
    if src is None:
        f.error("source", "`from.source` must not be nil")
        return None
    src.keys(tuple(_SOURCE_FIELDS))
    values = {
        attr: src.str_list(key, check=_source_check(key)) for key, attr in _SOURCE_FIELDS.items()
    }
    if not src.data:
        f.error("source", "`from.source` must not be empty")
        return None
    return Source(**values)


def _operation(f: Fields) -> Operation | None:
    op = f.obj("operation")
    f.keys(("operation",))
    if op is None:
        f.error("operation", "`to.operation` must not be nil")
        return None
    op.keys(tuple(_OPERATION_FIELDS))
    values = {
        attr: op.str_list(key, check=_operation_check(key))
        for key, attr in _OPERATION_FIELDS.items()
    }
    if not op.data:
        f.error("operation", "`to.operation` must not be empty")
        return None
    return Operation(**values)


def condition_value_check(key: str) -> Callable[[str], str] | None:
    """How values of the `when` attribute `key` are checked; None when Istio does not
    support `key`."""
    if key in _IP_KEYS:
        return formats.cidr_problem
    if key == "destination.port":
        return _port_problem
    if key in _PLAIN_KEYS or _BRACKETED.match(key) or _EXPERIMENTAL.match(key):
        return _not_empty
    return None


def _condition(f: Fields) -> Condition | None:
    f.keys(("key", "values", "notValues"))
    key = f.text("key", required=True, empty_ok=False)
    check = condition_value_check(key) if key else None
    if key and check is None:
        f.error("key", f"unknown attribute ({key})")
    values = f.str_list("values", check=check)
    not_values = f.str_list("notValues", check=check)
    if key and not f.has("values") and not f.has("notValues"):
        f.problems.error(f.path, f"at least one of `values` or `notValues` must be set for {key}")
        return None
    if not key or check is None:
        return None
    return Condition(key=key, values=values, not_values=not_values)


def _non_empty_list(f: Fields, key: str, what: str) -> None:
    value = f.data.get(key)
    if isinstance(value, list) and not value:
        f.error(key, f"`{what}` must not be empty")


def _rule(f: Fields) -> Rule:
    f.keys(("from", "to", "when"))
    _non_empty_list(f, "from", "from")
    _non_empty_list(f, "to", "to")
    sources = f.each("from", _source)
    operations = f.each("to", _operation)
    return Rule(sources=sources, operations=operations, when=f.each("when", _condition))


def authorization_policy(f: Fields) -> AuthorizationPolicySpec:
    f.keys(("selector", "action", "rules", "provider", "targetRef", "targetRefs"))
    selector = match_labels(f)
    action = f.enum("action", ACTIONS) or "ALLOW"
    provider = None
    prov = f.obj("provider")
    if prov is not None:
        prov.keys(("name",))
        provider = prov.text("name", required=True, empty_ok=False)
    if action == "CUSTOM":
        if prov is None:
            f.error("provider", "action CUSTOM requires a provider")
    elif prov is not None:
        f.error("provider", "provider is only allowed with action CUSTOM")
    rules = tuple(_rule(r) for r in f.objs("rules"))
    return AuthorizationPolicySpec(selector=selector, action=action, rules=rules, provider=provider)
