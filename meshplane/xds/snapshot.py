"""Immutable xDS snapshots: every resource encoded and hashed once, shared by content.

A Snapshot is what one scope of proxies should hold. Each resource is packed into an
`Any` once, and its version is a hash of its deterministic encoding, so versions are
stable across restarts and replicas (xDS rule 33): a reconnecting Envoy that already holds
the current config is not sent it again. An `Interner` keyed by content hash keeps one
`CachedResource` per distinct content, so scopes and successive snapshots that carry the
same resource share one encoded copy (go-control-plane's cached_resource.go).
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any as AnyType

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from meshplane.translators.resources import Resources
from meshplane.xds import encoding, type_urls

_HASH_CHARS = 16
_HCM_TYPE_URL = "type.googleapis.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
_MAX_VIEWS = 256


def content_hash(data: bytes) -> str:
    """Short hex SHA-256, used as an opaque xDS version."""
    return hashlib.sha256(data).hexdigest()[:_HASH_CHARS]


def _pairs_hash(pairs: Iterable[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for name, version in pairs:
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(version.encode())
        digest.update(b"\n")
    return digest.hexdigest()[:_HASH_CHARS]


@dataclass(frozen=True, slots=True, weakref_slot=True, eq=False)
class CachedResource:
    """One resource, encoded once: its `Any`, and its SotW and Delta response entries."""

    type_url: str
    name: str
    version: str
    message: AnyType
    any_bytes: bytes
    sotw_entry: bytes
    delta_entry: bytes
    eds_name: str | None = None
    """For a cluster of type EDS: the ClusterLoadAssignment name it waits for."""


def _eds_name(message: AnyType) -> str | None:
    if not isinstance(message, Cluster) or message.type != Cluster.EDS:
        return None
    return str(message.eds_cluster_config.service_name or message.name)


def resource_name(message: AnyType) -> str:
    """The xDS name of a resource (a ClusterLoadAssignment's is its cluster_name)."""
    if isinstance(message, ClusterLoadAssignment):
        return str(message.cluster_name)
    return str(message.name)


class Interner:
    """Content hash -> CachedResource; entries vanish when no snapshot holds them.

    A message object interned before is recognised by identity and not serialized again:
    translators given a TranslationMemo return the very objects they built earlier, so a
    resource is encoded once per content however many scopes and pushes carry it. (The
    identity entry is trusted only while its CachedResource still holds that object, which
    also keeps the object's id from being reused.)
    """

    def __init__(self) -> None:
        self._by_hash: weakref.WeakValueDictionary[tuple[str, str], CachedResource] = (
            weakref.WeakValueDictionary()
        )
        self._by_object: weakref.WeakValueDictionary[int, CachedResource] = (
            weakref.WeakValueDictionary()
        )
        self.encoded = 0
        """Messages serialized so far (a message seen before by identity is not)."""

    def __len__(self) -> int:
        return len(self._by_hash)

    def intern(self, type_url: str, message: AnyType) -> CachedResource:
        """The shared CachedResource for this message's content."""
        seen = self._by_object.get(id(message))
        if seen is not None and seen.message is message and seen.type_url == type_url:
            return seen
        self.encoded += 1
        value = message.SerializeToString(deterministic=True)
        version = content_hash(value)
        key = (type_url, version)
        found = self._by_hash.get(key)
        if found is not None:
            return found
        any_bytes = encoding.any_message(type_url, value)
        name = resource_name(message)
        cached = CachedResource(
            type_url=type_url,
            name=name,
            version=version,
            message=message,
            any_bytes=any_bytes,
            sotw_entry=encoding.field(encoding.SOTW_RESOURCES, any_bytes),
            delta_entry=encoding.field(
                encoding.DELTA_RESOURCES,
                encoding.delta_resource(name, version, any_bytes),
            ),
            eds_name=_eds_name(message),
        )
        self._by_hash[key] = cached
        self._by_object[id(message)] = cached
        return cached


SHARED_INTERNER = Interner()


@dataclass(frozen=True, eq=False)
class View:
    """The resources of one type that one subscription selects, and their response body."""

    type_url: str
    version: str
    resources: Mapping[str, CachedResource]
    digest: str
    _body: list[bytes] = field(default_factory=list, repr=False)

    def sotw_body(self) -> bytes:
        """DiscoveryResponse bytes without nonce, built on first use and then shared."""
        if not self._body:
            entries = (self.resources[name].sotw_entry for name in sorted(self.resources))
            self._body.append(encoding.sotw_body(self.version, self.type_url, entries))
        return self._body[0]


class TypeResources:
    """All resources of one type in a snapshot, with a per-type version.

    `ttl` (seconds, or None) is how long a client that supports resource TTLs may keep these
    resources without hearing from us (rule 42). It is not part of any version: resources
    with and without a TTL are the same config, and a heartbeat repeats their versions.
    """

    def __init__(
        self, type_url: str, resources: Mapping[str, CachedResource], ttl: float | None = None
    ) -> None:
        self.type_url = type_url
        self.ttl = ttl
        self.resources: Mapping[str, CachedResource] = MappingProxyType(dict(resources))
        self.version = _pairs_hash((n, self.resources[n].version) for n in sorted(resources))
        self._views: dict[frozenset[str] | None, View] = {}

    def view(self, names: frozenset[str] | None) -> View:
        """What a subscription to `names` (None: wildcard) selects; memoized."""
        found = self._views.get(names)
        if found is not None:
            return found
        if names is None:
            selected, digest = self.resources, self.version
        else:
            selected = {n: self.resources[n] for n in sorted(names) if n in self.resources}
            digest = _pairs_hash((n, r.version) for n, r in selected.items())
        made = View(self.type_url, self.version, selected, digest)
        if len(self._views) >= _MAX_VIEWS:
            self._views.clear()
        self._views[names] = made
        return made

    def including(self, extra: Mapping[str, CachedResource]) -> TypeResources:
        """These resources plus those of `extra` not named here, under their own version."""
        merged = dict(extra)
        merged.update(self.resources)
        return TypeResources(self.type_url, merged, self.ttl)


def _type_resources(
    type_url: str, messages: Mapping[str, AnyType], interner: Interner, ttl: float | None
) -> TypeResources:
    return TypeResources(
        type_url, {n: interner.intern(type_url, m) for n, m in messages.items()}, ttl
    )


def _checked_ttls(ttls: Mapping[str, float] | None) -> dict[str, float]:
    checked = dict(ttls or {})
    for type_url, seconds in checked.items():
        if type_url not in type_urls.TTL_TYPES:
            raise ValueError(f"no TTL for {type_urls.short_name(type_url)}: only EDS, RDS, SDS")
        if not seconds > 0:
            raise ValueError(f"TTL for {type_urls.short_name(type_url)} must be > 0: {seconds}")
    return checked


class Snapshot:
    """What one scope of proxies should hold, per type URL. Immutable."""

    def __init__(self, types: Mapping[str, TypeResources]) -> None:
        self._types = dict(types)
        for type_url in type_urls.PUSH_ORDER:
            self._types.setdefault(type_url, TypeResources(type_url, {}))
        self.version = _pairs_hash((t, self._types[t].version) for t in sorted(self._types))

    @classmethod
    def from_resources(
        cls,
        res: Resources,
        *,
        ttls: Mapping[str, float] | None = None,
        interner: Interner = SHARED_INTERNER,
    ) -> Snapshot:
        """Pack, hash and intern every resource of a translation result.

        `ttls` maps a named type URL (EDS, RDS, SDS) to the TTL in seconds its resources
        carry to clients that support it; ValueError for CDS/LDS or a TTL not above zero.
        """
        by_ttl = _checked_ttls(ttls)
        by_type: dict[str, Mapping[str, AnyType]] = {
            type_urls.CLUSTER: res.clusters,
            type_urls.ENDPOINT: res.endpoints,
            type_urls.LISTENER: res.listeners,
            type_urls.ROUTE: res.routes,
            type_urls.SECRET: res.secrets,
        }
        return cls({t: _type_resources(t, m, interner, by_ttl.get(t)) for t, m in by_type.items()})

    def get(self, type_url: str) -> TypeResources:
        """The resources of one type (empty for types this snapshot does not carry)."""
        found = self._types.get(type_url)
        return found if found is not None else TypeResources(type_url, {})

    def ttls(self) -> dict[str, float]:
        """Type URL -> TTL in seconds, for the types that carry one."""
        return {t: tr.ttl for t, tr in self._types.items() if tr.ttl is not None}

    def with_ttls(self, ttls: Mapping[str, float] | None) -> Snapshot:
        """A copy with the same resources and these TTLs (types not named lose theirs)."""
        by_ttl = _checked_ttls(ttls)
        return Snapshot(
            {t: TypeResources(t, tr.resources, by_ttl.get(t)) for t, tr in self._types.items()}
        )

    def type_versions(self) -> dict[str, str]:
        """Short type name -> per-type version."""
        return {type_urls.short_name(t): tr.version for t, tr in self._types.items()}

    def with_endpoints(
        self,
        endpoints: Mapping[str, ClusterLoadAssignment],
        *,
        interner: Interner = SHARED_INTERNER,
    ) -> Snapshot:
        """A copy with only the EDS resources replaced (endpoint-only pushes)."""
        types = dict(self._types)
        types[type_urls.ENDPOINT] = _type_resources(
            type_urls.ENDPOINT, endpoints, interner, self.get(type_urls.ENDPOINT).ttl
        )
        return Snapshot(types)

    def with_changed_endpoints(
        self,
        changed: Mapping[str, ClusterLoadAssignment],
        *,
        interner: Interner = SHARED_INTERNER,
    ) -> Snapshot:
        """A copy whose EDS resources named in `changed` are replaced (or added); every other
        resource, of any type, is kept as it is. For endpoint-only pushes that rebuilt just
        the assignments of the hosts whose endpoints changed."""
        if not changed:
            return self
        current = self.get(type_urls.ENDPOINT)
        merged = dict(current.resources)
        merged.update({n: interner.intern(type_urls.ENDPOINT, m) for n, m in changed.items()})
        types = dict(self._types)
        types[type_urls.ENDPOINT] = TypeResources(type_urls.ENDPOINT, merged, current.ttl)
        return Snapshot(types)

    def consistent(self) -> list[str]:
        """Problems by go-control-plane's rule: EDS names are EDS clusters, RDS names are used."""
        problems = [
            f"{type_urls.short_name(t)} resource keyed {key!r} is named {r.name!r}"
            for t, tr in self._types.items()
            for key, r in tr.resources.items()
            if key != r.name
        ]
        eds_clusters = {
            r.eds_name for r in self.get(type_urls.CLUSTER).resources.values() if r.eds_name
        }
        for name in sorted(self.get(type_urls.ENDPOINT).resources):
            if name not in eds_clusters:
                problems.append(f"endpoints {name!r} belong to no EDS cluster")
        referenced = set()
        for listener in self.get(type_urls.LISTENER).resources.values():
            referenced |= rds_names(listener.message)
        for name in sorted(self.get(type_urls.ROUTE).resources):
            if name not in referenced:
                problems.append(f"route configuration {name!r} is referenced by no listener")
        return problems


_ROUTE_NAMES: weakref.WeakKeyDictionary[CachedResource, frozenset[str]] = (
    weakref.WeakKeyDictionary()
)


def route_names(listener: CachedResource) -> frozenset[str]:
    """The RDS names a cached listener uses; computed once per content, on first need."""
    found = _ROUTE_NAMES.get(listener)
    if found is None:
        found = _ROUTE_NAMES[listener] = frozenset(rds_names(listener.message))
    return found


def rds_names(listener: AnyType) -> set[str]:
    """Route configuration names a listener's HTTP connection managers fetch over RDS."""
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    names: set[str] = set()
    for chain in chains:
        for network_filter in chain.filters:
            typed = network_filter.typed_config
            if typed.type_url != _HCM_TYPE_URL:
                continue
            hcm = hcm_pb2.HttpConnectionManager()
            typed.Unpack(hcm)
            if hcm.HasField("rds"):
                names.add(hcm.rds.route_config_name)
    return names
