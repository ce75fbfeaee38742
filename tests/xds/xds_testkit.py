"""Test kit for the xDS tests: resource builders, a running server, raw ADS clients.

Imported as a plain module (pytest puts this folder on sys.path: tests/xds has no
__init__.py). The clients are real grpc.aio streams using the xds-protos stubs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3.address_pb2 import Address, SocketAddress
from envoy.config.core.v3.base_pb2 import Node
from envoy.config.core.v3.config_source_pb2 import AggregatedConfigSource, ConfigSource
from envoy.config.endpoint.v3.endpoint_components_pb2 import (
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.config.listener.v3.listener_components_pb2 import Filter, FilterChain
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_components_pb2 import Route, RouteAction, RouteMatch, VirtualHost
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3.common_pb2 import CertificateValidationContext
from envoy.extensions.transport_sockets.tls.v3.secret_pb2 import Secret
from envoy.service.discovery.v3 import ads_pb2_grpc
from envoy.service.discovery.v3.discovery_pb2 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
)
from google.protobuf import any_pb2
from google.rpc.status_pb2 import Status
from prometheus_client import CollectorRegistry

from meshplane.translators.resources import Resources
from meshplane.xds import type_urls
from meshplane.xds.ads import AdsServicer
from meshplane.xds.cache import SnapshotCache
from meshplane.xds.metrics import XdsMetrics
from meshplane.xds.server import start_xds_server
from meshplane.xds.snapshot import Snapshot
from meshplane.xds.sync_status import SyncStatus

CDS, EDS, LDS, RDS, SDS = (
    type_urls.CLUSTER,
    type_urls.ENDPOINT,
    type_urls.LISTENER,
    type_urls.ROUTE,
    type_urls.SECRET,
)
TIMEOUT = 10.0
SILENCE = 0.3


def _ads() -> ConfigSource:
    return ConfigSource(ads=AggregatedConfigSource(), resource_api_version=2)


def cluster(name: str, *, eds: bool = True, timeout_s: int = 1) -> Cluster:
    c = Cluster(name=name)
    c.connect_timeout.seconds = timeout_s
    if eds:
        c.type = Cluster.EDS
        c.eds_cluster_config.eds_config.CopyFrom(_ads())
    else:
        c.type = Cluster.STATIC
    return c


def cla(name: str, port: int = 18080, host: str = "127.0.0.1") -> ClusterLoadAssignment:
    ep = LbEndpoint(
        endpoint=Endpoint(
            address=Address(socket_address=SocketAddress(address=host, port_value=port))
        )
    )
    return ClusterLoadAssignment(
        cluster_name=name, endpoints=[LocalityLbEndpoints(lb_endpoints=[ep])]
    )


def route(name: str, cluster_name: str) -> RouteConfiguration:
    r = Route(match=RouteMatch(prefix="/"), route=RouteAction(cluster=cluster_name))
    return RouteConfiguration(
        name=name, virtual_hosts=[VirtualHost(name="all", domains=["*"], routes=[r])]
    )


def listener(name: str, port: int, route_name: str) -> Listener:
    router = hcm_pb2.HttpFilter(name="envoy.filters.http.router")
    router.typed_config.Pack(router_pb2.Router())
    hcm = hcm_pb2.HttpConnectionManager(stat_prefix=name, http_filters=[router])
    hcm.rds.route_config_name = route_name
    hcm.rds.config_source.CopyFrom(_ads())
    typed = any_pb2.Any()
    typed.Pack(hcm)
    net = Filter(name="envoy.filters.network.http_connection_manager", typed_config=typed)
    return Listener(
        name=name,
        address=Address(socket_address=SocketAddress(address="127.0.0.1", port_value=port)),
        filter_chains=[FilterChain(filters=[net])],
    )


def secret(name: str) -> Secret:
    return Secret(
        name=name,
        validation_context=CertificateValidationContext(trusted_ca={"inline_string": "x"}),
    )


def resources(
    clusters: Iterable[Any] = (),
    endpoints: Iterable[Any] = (),
    listeners: Iterable[Any] = (),
    routes: Iterable[Any] = (),
    secrets: Iterable[Any] = (),
) -> Resources:
    def by_name(items: Iterable[Any]) -> dict[str, Any]:
        return {m.name if hasattr(m, "name") and m.name else m.cluster_name: m for m in items}

    return Resources(
        clusters=by_name(clusters),
        endpoints={m.cluster_name: m for m in endpoints},
        listeners=by_name(listeners),
        routes=by_name(routes),
        secrets=by_name(secrets),
    )


def snap(**kwargs: Iterable[Any]) -> Snapshot:
    return Snapshot.from_resources(resources(**kwargs))


def names(resp: DiscoveryResponse | DeltaDiscoveryResponse) -> list[str]:
    """Names of the resources in a response, in order."""
    out = []
    for item in resp.resources:
        if isinstance(resp, DeltaDiscoveryResponse):
            out.append(item.name)
            continue
        msg = _message_for(item.type_url)
        item.Unpack(msg)
        out.append(msg.name if hasattr(msg, "name") and msg.name else msg.cluster_name)
    return out


def _message_for(type_url: str) -> Any:
    classes = {CDS: Cluster, EDS: ClusterLoadAssignment, LDS: Listener, RDS: RouteConfiguration}
    return classes.get(type_url, Secret)()


def node(node_id: str = "test-id", scope: str = "default") -> Node:
    return Node(id=node_id, cluster=scope)


async def resolve_by_cluster(n: Node) -> str:
    """Scope key = node.cluster; node id "refuse-me" is refused."""
    if n.id == "refuse-me":
        raise ValueError("this node is not welcome")
    return n.cluster or "default"


@dataclass
class Server:
    cache: SnapshotCache
    sync: SyncStatus
    metrics: XdsMetrics
    registry: CollectorRegistry
    servicer: AdsServicer
    server: grpc.aio.Server
    port: int
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def channel(self) -> grpc.aio.Channel:
        ch = grpc.aio.insecure_channel(self.address)
        self.channels.append(ch)
        return ch

    async def sotw(self, n: Node | None = None) -> SotwClient:
        return SotwClient(self.channel(), n or node())

    async def delta(self, n: Node | None = None) -> DeltaClient:
        return DeltaClient(self.channel(), n or node())


@contextlib.asynccontextmanager
async def running_server(
    *, serve_secrets: bool = True, sotw_ttl: bool = False
) -> AsyncIterator[Server]:
    cache = SnapshotCache()
    sync = SyncStatus(cache)
    registry = CollectorRegistry()
    metrics = XdsMetrics(registry)
    servicer = AdsServicer(
        cache, resolve_by_cluster, sync, metrics, serve_secrets=serve_secrets, sotw_ttl=sotw_ttl
    )
    server, port = await start_xds_server("127.0.0.1:0", servicer)
    srv = Server(cache, sync, metrics, registry, servicer, server, port)
    try:
        yield srv
    finally:
        for ch in srv.channels:
            await ch.close()
        await server.stop(None)


class _Client:
    """A raw ADS stream: requests go in through a queue, responses come out of one."""

    def __init__(self, n: Node) -> None:
        self.node = n
        self._requests: asyncio.Queue[Any] = asyncio.Queue()
        self.responses: asyncio.Queue[Any] = asyncio.Queue()
        self.first = True
        self.error: grpc.RpcError | None = None
        self.ended = asyncio.Event()

    async def _outgoing(self) -> AsyncIterator[Any]:
        while True:
            req = await self._requests.get()
            if req is None:
                return
            yield req

    def _start(self, call: Any) -> None:
        self.call = call
        self._task = asyncio.get_running_loop().create_task(self._collect())

    async def _collect(self) -> None:
        try:
            async for resp in self.call:
                await self.responses.put(resp)
        except grpc.RpcError as err:
            self.error = err
        finally:
            self.ended.set()

    def _put(self, req: Any) -> None:
        if self.first:
            req.node.CopyFrom(self.node)
            self.first = False
        self._requests.put_nowait(req)

    async def recv(self, timeout: float = TIMEOUT) -> Any:
        return await asyncio.wait_for(self.responses.get(), timeout)

    async def recv_type(self, type_url: str, timeout: float = TIMEOUT) -> Any:
        """The next response, which must be of `type_url`."""
        resp = await self.recv(timeout)
        assert resp.type_url == type_url, f"expected {type_url}, got {resp.type_url}"
        return resp

    async def silent(self, within: float = SILENCE) -> bool:
        """True if no response arrives within `within` seconds."""
        try:
            resp = await asyncio.wait_for(self.responses.get(), within)
        except TimeoutError:
            return True
        await self.responses.put(resp)
        return False

    async def close(self) -> None:
        self._requests.put_nowait(None)
        self.call.cancel()
        await self.ended.wait()


class SotwClient(_Client):
    def __init__(self, channel: grpc.aio.Channel, n: Node) -> None:
        super().__init__(n)
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        self._start(stub.StreamAggregatedResources(self._outgoing()))

    def request(
        self,
        type_url: str,
        resource_names: Iterable[str] = (),
        *,
        version: str = "",
        nonce: str = "",
        error: str | None = None,
    ) -> None:
        req = DiscoveryRequest(
            type_url=type_url,
            resource_names=list(resource_names),
            version_info=version,
            response_nonce=nonce,
        )
        if error is not None:
            req.error_detail.CopyFrom(Status(code=3, message=error))
        self._put(req)

    def ack(self, resp: DiscoveryResponse, resource_names: Iterable[str] = ()) -> None:
        self.request(resp.type_url, resource_names, version=resp.version_info, nonce=resp.nonce)

    def nack(
        self,
        resp: DiscoveryResponse,
        message: str,
        prev_version: str = "",
        resource_names: Iterable[str] = (),
    ) -> None:
        self.request(
            resp.type_url, resource_names, version=prev_version, nonce=resp.nonce, error=message
        )


class DeltaClient(_Client):
    def __init__(self, channel: grpc.aio.Channel, n: Node) -> None:
        super().__init__(n)
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        self._start(stub.DeltaAggregatedResources(self._outgoing()))

    def request(
        self,
        type_url: str,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
        *,
        nonce: str = "",
        error: str | None = None,
        initial: dict[str, str] | None = None,
    ) -> None:
        req = DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            response_nonce=nonce,
            initial_resource_versions=initial or {},
        )
        if error is not None:
            req.error_detail.CopyFrom(Status(code=3, message=error))
        self._put(req)

    def ack(self, resp: DeltaDiscoveryResponse, resource_names: Iterable[str] = ()) -> None:
        """ACK; `resource_names` is unused (Delta does not repeat subscriptions)."""
        self.request(resp.type_url, nonce=resp.nonce)

    def nack(self, resp: DeltaDiscoveryResponse, message: str) -> None:
        self.request(resp.type_url, nonce=resp.nonce, error=message)


def base_snapshot(*, b_port: int = 18081, route_to: str = "a") -> Snapshot:
    """Clusters a, b (EDS) with endpoints, listener l1 -> route r1 -> `route_to`."""
    return snap(
        clusters=[cluster("a"), cluster("b")],
        endpoints=[cla("a"), cla("b", b_port)],
        listeners=[listener("l1", 15001, "r1")],
        routes=[route("r1", route_to)],
    )


async def eventually(predicate: Any, timeout: float = TIMEOUT) -> None:
    """Poll `predicate` (server-side state the client cannot observe) until true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition never became true")
        await asyncio.sleep(0.01)


async def open_client(srv: Server, protocol: str, n: Node | None = None) -> Any:
    """A SotW or Delta client, for tests of rules that hold for both."""
    if protocol == "sotw":
        return await srv.sotw(n)
    return await srv.delta(n)
