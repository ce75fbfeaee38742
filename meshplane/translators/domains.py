"""Virtual host domains as Istio generates them, and the de-duplication Envoy demands
(a route configuration with the same domain in two virtual hosts is NACKed)."""

from __future__ import annotations

from collections.abc import Iterable

from meshplane.model.services import Service


def _unique_and_shared(hostname: str, proxy_domain: str) -> tuple[str, str]:
    """Split `hostname` into the part it does not share with the proxy's DNS domain and the
    shared suffix (with its leading dot), as Istio's getUniqueAndSharedDNSDomain does."""
    host_parts = hostname.split(".")[::-1]
    proxy_parts = proxy_domain.split(".")[::-1]
    shared: list[str] = []
    for mine, theirs in zip(host_parts, proxy_parts, strict=False):
        if mine != theirs:
            break
        shared.append(mine)
    if not shared:
        return hostname, ""
    unique = ".".join(host_parts[len(shared) :][::-1])
    return unique, "." + ".".join(shared[::-1])


def alternate_hostnames(hostname: str, proxy_domain: str) -> list[str]:
    """Shorter names a client in `proxy_domain` (``NS.svc.cluster.local``) may use:
    ``reviews``, ``reviews.default``, ``reviews.default.svc`` ... (generateAltVirtualHosts)."""
    unique, shared = _unique_and_shared(hostname, proxy_domain)
    if not shared or not unique:
        return []
    names = [unique]
    for i in range(len(shared) - 1, 0, -1):
        if shared[i] == ".":
            names.append(unique + shared[:i])
    return names


def service_domains(service: Service, port: int, proxy_domain: str) -> list[str]:
    """FQDN, its alternates and the VIPs, each bare and with ``:PORT``."""
    names = [service.hostname, *alternate_hostnames(service.hostname, proxy_domain)]
    # VIPs are domains too (clients may send Host: 10.96.0.12); CIDR ranges are not.
    names += [a for a in service.addresses if a and a != "0.0.0.0" and "/" not in a]
    return [d for name in names for d in (name, f"{name}:{port}")]


def dedupe_domains(domain_lists: Iterable[list[str]]) -> list[list[str]]:
    """Each domain kept only in the first list that has it (callers pass virtual hosts in a
    deterministic order, so the same host always wins)."""
    seen: set[str] = set()
    result = []
    for domains in domain_lists:
        kept = [d for d in dict.fromkeys(domains) if d not in seen]
        seen.update(kept)
        result.append(kept)
    return result
