"""AuthorizationPolicy (security.istio.io v1/v1beta1) as a typed value: who may do what on
the workloads a policy selects. The translators compile it to Envoy RBAC filters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ACTIONS = ("ALLOW", "DENY", "AUDIT", "CUSTOM")


@dataclass(frozen=True)
class Source:
    """`rules[].from[].source`: every set field must match (AND); values of one field OR."""

    principals: tuple[str, ...] = ()
    not_principals: tuple[str, ...] = ()
    request_principals: tuple[str, ...] = ()
    not_request_principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()
    service_accounts: tuple[str, ...] = ()  # "ns/sa" (api 1.25)
    not_service_accounts: tuple[str, ...] = ()
    ip_blocks: tuple[str, ...] = ()
    not_ip_blocks: tuple[str, ...] = ()
    remote_ip_blocks: tuple[str, ...] = ()
    not_remote_ip_blocks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    """`rules[].to[].operation`; ports are kept as the strings Istio's API uses."""

    hosts: tuple[str, ...] = ()
    not_hosts: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    not_ports: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    not_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class Condition:
    """`rules[].when[]`: the attribute `key` has one of `values` and none of `not_values`."""

    key: str
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    """A rule matches when one `from`, one `to` and every `when` match (empty = any)."""

    sources: tuple[Source, ...] = ()
    operations: tuple[Operation, ...] = ()
    when: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class AuthorizationPolicySpec:
    selector: Mapping[str, str] | None = None  # None: every workload of the namespace
    action: str = "ALLOW"  # ALLOW | DENY | AUDIT | CUSTOM
    rules: tuple[Rule, ...] = ()
    provider: str | None = None  # CUSTOM only: a MeshConfig extensionProviders name
