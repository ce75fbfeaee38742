"""A minimal in-test ADS server (SotW and Delta) for exercising the bench's load client.

Not part of meshplane: it exists so the load client can be tested on a real gRPC server even
when `meshplane serve` is not available. It serves the Istio-shaped resources of a synthetic
mesh (an EDS cluster per subset, a CLA per cluster, listener 0.0.0.0_8080 with RDS "8080")
and pushes a new snapshot to every open stream on `update()`. Protocol handling is the bare
minimum a well-behaved client needs (no flow control, no NACK handling).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2, message

from bench.meshgen import MeshSpec, default_weights, host, pod_address, subset_cluster
from bench.xdsinfo import CDS, EDS, LDS, RDS

Resources = dict[str, dict[str, message.Message]]


def mesh_resources(
    spec: MeshSpec,
    moved: dict[tuple[int, int, int], str] | None = None,
    weights: dict[int, Sequence[int]] | None = None,
) -> Resources:
    """Envoy resources for `spec`, with endpoint addresses and route weights overridden."""
    moved, weights = moved or {}, weights or {}
    ads = config_source_pb2.ConfigSource(ads=config_source_pb2.AggregatedConfigSource())
    out: Resources = {CDS: {}, EDS: {}, LDS: {}, RDS: {}}
    route = route_pb2.RouteConfiguration(name="8080")
    for i in range(spec.services):
        split = route_components_pb2.WeightedCluster()
        for v, w in enumerate(weights.get(i, default_weights(spec.versions))):
            name = subset_cluster(spec, i, v)
            out[CDS][name] = cluster_pb2.Cluster(
                name=name,
                type=cluster_pb2.Cluster.EDS,
                eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=ads),
            )
            cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
            group = cla.endpoints.add()
            for e in range(spec.endpoints):
                address = moved.get((i, v, e)) or pod_address(spec, i, v, e)
                lb = endpoint_components_pb2.LbEndpoint()
                lb.endpoint.address.socket_address.CopyFrom(
                    address_pb2.SocketAddress(address=address, port_value=8080)
                )
                group.lb_endpoints.append(lb)
            out[EDS][name] = cla
            wc = split.clusters.add(name=name)
            wc.weight.value = w
        vhost = route.virtual_hosts.add(name=f"{host(spec, i)}:8080", domains=[host(spec, i)])
        vhost.routes.add(
            match=route_components_pb2.RouteMatch(prefix="/")
        ).route.weighted_clusters.CopyFrom(split)
    out[RDS]["8080"] = route
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix="outbound_0.0.0.0_8080",
        rds=hcm_pb2.Rds(config_source=ads, route_config_name="8080"),
    )
    typed = any_pb2.Any()
    typed.Pack(hcm)
    chain = listener_components_pb2.FilterChain()
    chain.filters.add(name="envoy.filters.network.http_connection_manager").typed_config.CopyFrom(
        typed
    )
    listener = listener_pb2.Listener(name="0.0.0.0_8080", filter_chains=[chain])
    listener.address.socket_address.CopyFrom(
        address_pb2.SocketAddress(address="0.0.0.0", port_value=8080)
    )
    out[LDS]["0.0.0.0_8080"] = listener
    return out


def _pack(resource: message.Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(resource)
    return packed


def _version(resources: dict[str, message.Message]) -> str:
    digest = hashlib.sha256()
    for name in sorted(resources):
        digest.update(name.encode() + resources[name].SerializeToString(deterministic=True))
    return digest.hexdigest()[:12]


class StaticAds(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    """Answers every request with the current snapshot; `update()` pushes to every stream."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self._wakeups: set[asyncio.Event] = set()

    def update(self, resources: Resources) -> None:
        self.resources = resources
        for event in self._wakeups:
            event.set()

    def _sotw(self, type_url: str, names: set[str], nonce: int) -> discovery_pb2.DiscoveryResponse:
        by_name = self.resources[type_url]
        chosen = sorted(by_name) if type_url in (CDS, LDS) else sorted(names & set(by_name))
        return discovery_pb2.DiscoveryResponse(
            type_url=type_url,
            version_info=_version(by_name),
            nonce=str(nonce),
            resources=[_pack(by_name[n]) for n in chosen],
        )

    async def StreamAggregatedResources(
        self, requests: AsyncIterator[discovery_pb2.DiscoveryRequest], context: object
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        wake, queue = asyncio.Event(), asyncio.Queue[discovery_pb2.DiscoveryRequest | None]()
        self._wakeups.add(wake)
        subs: dict[str, set[str]] = {}
        sent: dict[str, str] = {}
        nonce = 0

        async def pump() -> None:
            async for request in requests:
                await queue.put(request)
            await queue.put(None)

        reader = asyncio.create_task(pump())
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                waker = asyncio.ensure_future(wake.wait())
                await asyncio.wait({getter, waker}, return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
                changed: list[str] = []
                if getter.done():
                    request = getter.result()
                    if request is None:
                        return
                    names = set(request.resource_names)
                    if subs.get(request.type_url) != names or request.type_url not in sent:
                        changed.append(request.type_url)
                    subs[request.type_url] = names
                else:
                    getter.cancel()
                    wake.clear()
                for type_url in list(subs):
                    if sent.get(type_url) != _version(self.resources[type_url]):
                        changed.append(type_url)
                for type_url in dict.fromkeys(changed):
                    nonce += 1
                    response = self._sotw(type_url, subs[type_url], nonce)
                    sent[type_url] = response.version_info
                    yield response
        finally:
            reader.cancel()
            self._wakeups.discard(wake)

    def _delta(
        self, t: str, names: set[str], have: dict[str, str], fresh: bool
    ) -> discovery_pb2.DeltaDiscoveryResponse | None:
        """What changed for a client holding `have` (name -> version); updates `have`."""
        by_name = self.resources[t]
        want = set(by_name) if "*" in names else names & set(by_name)
        versions = {n: _version({n: by_name[n]}) for n in want}
        changed = sorted(n for n in want if have.get(n) != versions[n])
        removed = sorted(set(have) - want)
        if not changed and not removed and not fresh:
            return None
        for n in removed:
            del have[n]
        have.update((n, versions[n]) for n in changed)
        return discovery_pb2.DeltaDiscoveryResponse(
            type_url=t,
            system_version_info=_version(by_name),
            resources=[
                discovery_pb2.Resource(name=n, version=versions[n], resource=_pack(by_name[n]))
                for n in changed
            ],
            removed_resources=removed,
        )

    async def DeltaAggregatedResources(
        self, requests: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest], context: object
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        wake, queue = asyncio.Event(), asyncio.Queue[discovery_pb2.DeltaDiscoveryRequest | None]()
        self._wakeups.add(wake)
        subs: dict[str, set[str]] = {}
        held: dict[str, dict[str, str]] = {}  # type -> name -> version the client has
        nonce = 0

        async def pump() -> None:
            async for request in requests:
                await queue.put(request)
            await queue.put(None)

        reader = asyncio.create_task(pump())
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                waker = asyncio.ensure_future(wake.wait())
                await asyncio.wait({getter, waker}, return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
                fresh: set[str] = set()
                if getter.done():
                    request = getter.result()
                    if request is None:
                        return
                    t = request.type_url
                    if t not in subs:
                        subs[t] = {"*"} if t in (CDS, LDS) else set()
                        fresh.add(t)
                    subs[t] |= set(request.resource_names_subscribe)
                    subs[t] -= set(request.resource_names_unsubscribe)
                    if request.resource_names_subscribe:
                        fresh.add(t)
                else:
                    getter.cancel()
                    wake.clear()
                for t, names in subs.items():
                    response = self._delta(t, names, held.setdefault(t, {}), t in fresh)
                    if response is not None:
                        nonce += 1
                        response.nonce = str(nonce)
                        yield response
        finally:
            reader.cancel()
            self._wakeups.discard(wake)


async def start_static_ads(resources: Resources) -> tuple[grpc.aio.Server, StaticAds, int]:
    """Start the server on a free loopback port; returns (server, servicer, port)."""
    server = grpc.aio.server(
        options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    )
    servicer = StaticAds(resources)
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, servicer, port
