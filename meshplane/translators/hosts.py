"""Host names as Istio compares them: short-name resolution, wildcard matching, gateway host
intersection and Sidecar egress host filters ("ns/dnsName")."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from meshplane.model.services import Service


def resolve_host(host: str, namespace: str, dns_suffix: str) -> str:
    """A rule's host as an FQDN: ``reviews`` in namespace ``default`` is
    ``reviews.default.svc.cluster.local``; names with a dot, IPs and ``*`` stay as written
    (Istio's ResolveShortnameToFQDN)."""
    if not host or host == "*" or "." in host or _is_ip(host):
        return host
    return f"{host}.{namespace}.{dns_suffix}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_matches(pattern: str, hostname: str) -> bool:
    """True when `pattern` (``foo.com``, ``*.foo.com``, ``*``) covers `hostname` (which may
    itself be a wildcard: ``*.foo.com`` covers ``*.bar.foo.com``)."""
    if pattern == hostname or pattern == "*":
        return True
    if not pattern.startswith("*"):
        return False
    return hostname.removeprefix("*").endswith(pattern[1:])


def more_specific(a: str, b: str) -> str | None:
    """The narrower of two hosts when one covers the other, else None (Istio's gateway
    host intersection)."""
    if host_matches(a, b):
        return b
    if host_matches(b, a):
        return a
    return None


def _namespace_allows(ns: str, service_ns: str, proxy_ns: str) -> bool:
    if ns == "*":
        return True
    if ns == "~":
        return False
    if ns == ".":
        return service_ns == proxy_ns
    return ns == service_ns


def egress_allows(hosts: Iterable[str], service: Service, proxy_namespace: str) -> bool:
    """True when a Sidecar egress entry's `hosts` ("ns/dnsName") import `service`."""
    for entry in hosts:
        ns, _, dns = entry.rpartition("/")
        if _namespace_allows(ns or "*", service.namespace, proxy_namespace) and host_matches(
            dns, service.hostname
        ):
            return True
    return False
