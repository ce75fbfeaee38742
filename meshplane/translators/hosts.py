"""Host comparisons only translators need: gateway host intersection and Sidecar egress host
filters ("ns/dnsName"). Short-name resolution and wildcard matching are the model's
(`meshplane.model.hosts`), so both stages agree on what a host means."""

from __future__ import annotations

from collections.abc import Iterable

from meshplane.model.hosts import host_matches
from meshplane.model.services import Service


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
