"""What the load client needs to know about the xDS resources it receives, decoded once.

A proxy like Envoy reads its Clusters to learn which EDS names to subscribe to and its
Listeners to learn which RDS names its HTTP connection managers use. With hundreds of
simulated proxies receiving the same bytes, decoding each distinct resource once (a cache
keyed by its serialized bytes) keeps the client from competing with the server for the CPU.

Probes answer the two scenario questions: does this proxy see the changed resource at all,
and has the changed content arrived?
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.service.discovery.v3 import discovery_pb2

_PREFIX = "type.googleapis.com/"
CDS = _PREFIX + "envoy.config.cluster.v3.Cluster"
EDS = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LDS = _PREFIX + "envoy.config.listener.v3.Listener"
RDS = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
TYPES = (CDS, EDS, LDS, RDS)
SHORT = {CDS: "cds", EDS: "eds", LDS: "lds", RDS: "rds"}
_HCM = _PREFIX + http_connection_manager_pb2.HttpConnectionManager.DESCRIPTOR.full_name


@dataclass(frozen=True)
class ResourceInfo:
    """One received resource: its name, the names it makes a proxy subscribe to, its bytes."""

    name: str
    refs: tuple[str, ...]
    value: bytes


def _cluster_info(value: bytes) -> ResourceInfo:
    cluster = cluster_pb2.Cluster.FromString(value)
    refs: tuple[str, ...] = ()
    if cluster.HasField("type") and cluster.type == cluster_pb2.Cluster.EDS:
        refs = (cluster.eds_cluster_config.service_name or cluster.name,)
    return ResourceInfo(cluster.name, refs, value)


def _listener_info(value: bytes) -> ResourceInfo:
    listener = listener_pb2.Listener.FromString(value)
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    refs: set[str] = set()
    for chain in chains:
        for net_filter in chain.filters:
            if net_filter.typed_config.type_url != _HCM:
                continue
            hcm = http_connection_manager_pb2.HttpConnectionManager.FromString(
                net_filter.typed_config.value
            )
            if hcm.HasField("rds"):
                refs.add(hcm.rds.route_config_name)
    return ResourceInfo(listener.name, tuple(sorted(refs)), value)


def _route_info(value: bytes) -> ResourceInfo:
    return ResourceInfo(route_pb2.RouteConfiguration.FromString(value).name, (), value)


def _endpoints_info(value: bytes) -> ResourceInfo:
    cla = endpoint_pb2.ClusterLoadAssignment.FromString(value)
    return ResourceInfo(cla.cluster_name, (), value)


_DECODERS: dict[str, Callable[[bytes], ResourceInfo]] = {
    CDS: _cluster_info,
    EDS: _endpoints_info,
    LDS: _listener_info,
    RDS: _route_info,
}


class ResourceDecoder:
    """Decodes each distinct (type, bytes) once; every proxy shares the resulting info."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, bytes], ResourceInfo] = {}

    def decode(self, type_url: str, value: bytes, name: str = "") -> ResourceInfo:
        """The resource's info; `name` (Delta carries it) spares decoding EDS and RDS."""
        key = (type_url, value)
        info = self._cache.get(key)
        if info is None:
            if name and type_url in (EDS, RDS):
                info = ResourceInfo(name, (), value)
            else:
                info = _DECODERS[type_url](value)
            self._cache[key] = info
        return info

    def __len__(self) -> int:
        return len(self._cache)


@dataclass(frozen=True)
class DecodedResponse:
    """The resources of one SotW response, shared by every proxy that receives the same one.

    `by_name` and `refs` are shared too: receivers must replace, never mutate, them.
    """

    infos: tuple[ResourceInfo, ...]
    by_name: dict[str, ResourceInfo]
    refs: frozenset[str]


def _nonce_field(nonce: str) -> bytes:
    """DiscoveryResponse field 5 (nonce) as it is encoded on the wire."""
    data = nonce.encode()
    length, size = b"", len(data)
    while True:
        byte, size = size & 0x7F, size >> 7
        length += bytes([byte | (0x80 if size else 0)])
        if not size:
            return b"\x2a" + length + data


class ResponseDecoder(ResourceDecoder):
    """Also decodes whole responses once: a fleet in one scope gets the same bytes, which differ
    only in their nonce. The nonce (field 5) is encoded after every resource (field 2), so its
    last occurrence is cut out; a stray match only costs a cache miss.
    """

    MAX_RESPONSES = 64  # bounds memory when every proxy gets different bytes

    def __init__(self) -> None:
        super().__init__()
        self._responses: dict[tuple[str, str, bytes], DecodedResponse] = {}
        self.hits = self.misses = 0

    def decode_response(
        self, type_url: str, version: str, nonce: str, raw: bytes, resources: Sequence[Any]
    ) -> DecodedResponse:
        """The resources of a SotW (`Any`) or Delta (`Resource`) response, decoded once."""
        nonce_field = _nonce_field(nonce)
        at = raw.rfind(nonce_field)
        body = raw[:at] + raw[at + len(nonce_field) :] if at >= 0 else raw
        key = (type_url, version, body)
        decoded = self._responses.get(key)
        if decoded is not None and len(decoded.infos) == len(resources):
            self.hits += 1
        else:
            self.misses += 1
            if len(self._responses) >= self.MAX_RESPONSES:
                self._responses.clear()
            infos = tuple(
                self.decode(type_url, r.resource.value, r.name)
                if isinstance(r, discovery_pb2.Resource)
                else self.decode(type_url, r.value)
                for r in resources
            )
            by_name = {info.name: info for info in infos}
            refs = frozenset(ref for info in infos for ref in info.refs)
            decoded = self._responses[key] = DecodedResponse(infos, by_name, refs)
        return decoded


@dataclass
class Probe:
    """A change the bench waits for.

    `sees(held)` tells whether a proxy holding these resources of `type_url` (name -> info)
    is affected at all; `arrived(info)` whether one received resource carries the change.
    """

    type_url: str
    description: str
    sees: Callable[[dict[str, ResourceInfo]], bool]
    arrived: Callable[[ResourceInfo], bool]


def endpoint_probe(cluster: str, address: str) -> Probe:
    """The cluster's endpoints now include `address`."""
    needle = address.encode()

    def sees(held: dict[str, ResourceInfo]) -> bool:
        return cluster in held

    def arrived(info: ResourceInfo) -> bool:
        return info.name == cluster and needle in info.value

    return Probe(EDS, f"EDS {cluster} has {address}", sees, arrived)


def route_weights(info: ResourceInfo, domain: str) -> dict[str, int] | None:
    """Weighted clusters of the first route of the virtual host serving `domain`, if any."""
    config = route_pb2.RouteConfiguration.FromString(info.value)
    for vhost in config.virtual_hosts:
        if not any(d.split(":")[0] == domain for d in vhost.domains):
            continue
        for route in vhost.routes:
            if route.HasField("route") and route.route.HasField("weighted_clusters"):
                return {c.name: c.weight.value for c in route.route.weighted_clusters.clusters}
            if route.HasField("route") and route.route.cluster:
                return {route.route.cluster: 100}
            return {}
    return None


def same_split(a: dict[str, int], b: dict[str, int]) -> bool:
    """Whether two weight maps send the same share to each cluster (zero weights ignored)."""
    total_a, total_b = sum(a.values()), sum(b.values())
    if not total_a or not total_b:
        return False
    share_a = {k: v * total_b for k, v in a.items() if v}
    share_b = {k: v * total_a for k, v in b.items() if v}
    return share_a == share_b


def weights_probe(domain: str, weights: dict[str, int]) -> Probe:
    """The route for `domain` now splits traffic with exactly `weights` (cluster -> weight)."""
    needle = domain.encode()
    verdicts: dict[bytes, bool] = {}  # the same bytes reach every proxy: decide once

    def sees(held: dict[str, ResourceInfo]) -> bool:
        return any(needle in info.value for info in held.values())

    def arrived(info: ResourceInfo) -> bool:
        if needle not in info.value:
            return False
        verdict = verdicts.get(info.value)
        if verdict is None:
            found = route_weights(info, domain)
            verdict = verdicts[info.value] = found is not None and same_split(found, weights)
        return verdict

    split = "/".join(str(w) for _, w in sorted(weights.items()))
    return Probe(RDS, f"RDS route for {domain} splits {split}", sees, arrived)
