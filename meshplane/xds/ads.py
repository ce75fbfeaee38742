"""The ADS gRPC servicer: wires SotW and Delta stream state to real grpc.aio streams.

Each stream runs two coroutines: a reader that feeds requests to the stream's session
(sotw.py / delta.py) and wakes the writer, and the writer, which waits for its wake event
(set by a request, by `SnapshotCache.set` or by `assign`) and then answers every type from
the newest snapshot in ADS order CDS -> EDS -> LDS -> RDS -> SDS (rule 35), as the
stream's `Handover` plans it: stale clusters are removed only after the new routes are
ACKed, and routes wait for the client to warm the clusters they need (progress.py).
Responses are pre-encoded bytes (see encoding.py); the method handlers serialize with
the identity. A stream whose client serves TTLs also wakes when a heartbeat is due (ttl.py);
any other stream has no timer.
Rule numbers refer to shared/reference/xds-protocol.md section 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import grpc
from envoy.config.core.v3.base_pb2 import Node
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest, DiscoveryRequest
from google.protobuf import json_format  # type: ignore[import-untyped]

from meshplane.model.proxy import WORKLOAD_CERTS_METADATA, BadNode, Proxy
from meshplane.xds import ttl, type_urls
from meshplane.xds.cache import Connection, SnapshotCache, next_connection_id
from meshplane.xds.delta import DeltaSession
from meshplane.xds.metrics import XdsMetrics
from meshplane.xds.progress import (
    Handover,
    Outgoing,
    RequestKind,
    RequestOutcome,
    TypeProgress,
)
from meshplane.xds.snapshot import CachedResource, Snapshot, TypeResources
from meshplane.xds.sotw import SotwSession
from meshplane.xds.sync_status import SyncStatus

log = logging.getLogger("meshplane.xds")

Resolver = Callable[[Node], Awaitable[str]]
"""Maps a stream's node to its scope key; raises ValueError to refuse the proxy."""
Authorizer = Callable[[Node, Mapping[str, str]], Awaitable[object]]
"""Checks a stream's node against its gRPC metadata and returns the stream's verified
identity (opaque here; handed to the SecretSource); raises PermissionError (or
StreamRefused, to pick the status) to refuse."""

_HEARTBEAT_RETRY_S = 0.05
_ROUTING = frozenset({type_urls.LISTENER, type_urls.ROUTE})
ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
# Rule 1: the per-type services, for bootstraps that do not use ADS.
PER_TYPE_SERVICES: dict[str, tuple[str, str, str]] = {
    type_urls.CLUSTER: ("envoy.service.cluster.v3.ClusterDiscoveryService", "Clusters", ""),
    type_urls.ENDPOINT: ("envoy.service.endpoint.v3.EndpointDiscoveryService", "Endpoints", ""),
    type_urls.LISTENER: ("envoy.service.listener.v3.ListenerDiscoveryService", "Listeners", ""),
    type_urls.ROUTE: ("envoy.service.route.v3.RouteDiscoveryService", "Routes", ""),
    type_urls.SECRET: ("envoy.service.secret.v3.SecretDiscoveryService", "Secrets", ""),
}


class Session(Protocol):
    """What sotw.SotwSession and delta.DeltaSession have in common."""

    protocol: str

    @property
    def states(self) -> Mapping[str, TypeProgress]: ...

    def handle(self, req: Any) -> RequestOutcome: ...

    def next_response(self, resources: TypeResources) -> Outgoing | None: ...

    def enable_ttl(self) -> None: ...

    def next_heartbeat_at(self) -> float | None: ...

    def clusters_sent(
        self, sent: Outgoing, before: Mapping[str, CachedResource] | None = None
    ) -> None: ...


class SecretSource(Protocol):
    """Per-identity secrets (xds/secret_store.py): a stream's SDS answers come from here,
    never from the scope snapshot, which proxies of different identities share."""

    async def attach(self, identity: Any, wake: asyncio.Event) -> None:
        """Make `identity`'s secrets ready; set `wake` whenever they change."""

    def detach(self, identity: Any, wake: asyncio.Event) -> None:
        """The stream that passed `wake` ended."""

    def resources(self, identity: Any) -> TypeResources:
        """The secrets `identity` may hold (and nothing else)."""


class StreamRefused(Exception):
    """The stream must end with this gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _identity(data: bytes) -> bytes:
    return data


def _proxy_of(node: Node) -> Proxy | None:
    try:
        return Proxy.from_node(node.id, json_format.MessageToDict(node.metadata))
    except BadNode:
        return None


class AdsServicer:
    """Serves ADS (SotW and Delta) and the per-type xDS services from a SnapshotCache."""

    def __init__(
        self,
        cache: SnapshotCache,
        resolver: Resolver,
        sync_status: SyncStatus,
        metrics: XdsMetrics,
        *,
        serve_secrets: bool,
        control_plane_id: str = "meshplane",
        authorize: Authorizer | None = None,
        sotw_ttl: bool = False,
        secrets: SecretSource | None = None,
    ) -> None:
        self.cache = cache
        self.resolver = resolver
        self.sync_status = sync_status
        self.metrics = metrics
        self.serve_secrets = serve_secrets
        self.control_plane_id = control_plane_id
        self.authorize = authorize
        self.sotw_ttl = sotw_ttl
        """Serve TTLs to SotW clients that advertise them. Off: Envoy 1.40 crashes
        (SIGSEGV) when a SotW resource's TTL expires, and its SotW client drops heartbeats
        before refreshing TTLs, so a SotW Envoy would crash one TTL after its first
        response. Delta clients get TTLs whenever they advertise them (ttl.py)."""
        self.secrets = secrets
        """With serve_secrets: SDS answers per verified identity, not from the snapshot."""

    def generic_handlers(self) -> list[grpc.GenericRpcHandler]:
        """Handlers for ADS and the five per-type services, to add to a grpc.aio server."""
        handlers = [
            self._service(ADS_SERVICE, "StreamAggregatedResources", "DeltaAggregatedResources", "")
        ]
        for type_url, (service, noun, _) in PER_TYPE_SERVICES.items():
            handlers.append(self._service(service, f"Stream{noun}", f"Delta{noun}", type_url))
        return handlers

    def _service(self, service: str, sotw: str, delta: str, fixed: str) -> grpc.GenericRpcHandler:
        async def serve_sotw(requests: AsyncIterator[Any], context: Any) -> None:
            session = SotwSession(self.control_plane_id)
            await XdsStream(self, session, context, fixed).run(requests)

        async def serve_delta(requests: AsyncIterator[Any], context: Any) -> None:
            session = DeltaSession(self.control_plane_id)
            await XdsStream(self, session, context, fixed).run(requests)

        return grpc.method_handlers_generic_handler(
            service,
            {
                sotw: grpc.stream_stream_rpc_method_handler(
                    serve_sotw,
                    request_deserializer=DiscoveryRequest.FromString,
                    response_serializer=_identity,
                ),
                delta: grpc.stream_stream_rpc_method_handler(
                    serve_delta,
                    request_deserializer=DeltaDiscoveryRequest.FromString,
                    response_serializer=_identity,
                ),
            },
        )


class XdsStream:
    """One open stream: handshake, reader task, writer loop, teardown."""

    def __init__(self, servicer: AdsServicer, session: Session, context: Any, fixed: str) -> None:
        self.servicer = servicer
        self.session = session
        self.context = context
        self.fixed_type = fixed
        self.conn: Connection | None = None
        self.failure: StreamRefused | None = None
        self.closed = False
        self.secrets_withheld_logged = False
        self.handover = Handover()
        self.identity: object = None
        """What the authorizer verified this stream speaks for (None: not authorized)."""

    async def run(self, requests: AsyncIterator[Any]) -> None:
        """Serve the stream until the client goes away or breaks the protocol."""
        iterator = aiter(requests)
        try:
            first = await anext(iterator, None)
            if first is None:
                return
            self._check_type(first)
            conn = await self._open(first.node)
            await self._attach_secrets(conn)
        except StreamRefused as refused:
            await self.context.abort(refused.code, str(refused))
            return
        srv = self.servicer
        protocol = self.session.protocol
        if ttl.client_supports_ttl(conn.node.client_features, protocol) and (
            protocol != "sotw" or srv.sotw_ttl
        ):
            self.session.enable_ttl()
        self._handle(first)
        srv.cache.register(conn)
        srv.sync_status.track(conn, self.session.states)
        srv.metrics.connected.inc()
        log.info("xds stream opened: %s (%s, key %s)", conn.id, conn.protocol, conn.key)
        reader = asyncio.create_task(self._read(iterator))
        try:
            await self._write_loop(conn)
        except asyncio.CancelledError:
            # The client went away or the server is stopping: the stream is over either
            # way, and grpc would log a traceback per stream for a re-raised cancel.
            self.closed = True
        finally:
            reader.cancel()
            if srv.secrets is not None and self.identity is not None:
                srv.secrets.detach(self.identity, conn.wake)
            srv.cache.unregister(conn.id)
            srv.sync_status.untrack(conn.id)
            srv.metrics.connected.dec()
            log.info("xds stream closed: %s", conn.id)
        if self.failure is not None:
            await self.context.abort(self.failure.code, str(self.failure))

    async def _open(self, node: Node) -> Connection:
        srv = self.servicer
        if srv.authorize is not None:
            try:
                self.identity = await srv.authorize(
                    node, dict(self.context.invocation_metadata() or ())
                )
            except PermissionError as err:
                raise StreamRefused(grpc.StatusCode.UNAUTHENTICATED, str(err)) from err
        # Whether the proxy gets its certificates is the server's word, never the proxy's:
        # translators configure mTLS (SDS references) only for proxies served secrets.
        certs = srv.serve_secrets and self.identity is not None
        node.metadata.fields[WORKLOAD_CERTS_METADATA].bool_value = certs
        try:
            key = await srv.resolver(node)
        except ValueError as err:
            raise StreamRefused(
                grpc.StatusCode.INVALID_ARGUMENT, f"node {node.id!r} refused: {err}"
            ) from err
        conn = Connection(
            id=next_connection_id(node.id or "anonymous"),
            node=node,
            proxy=_proxy_of(node),
            key=key,
            protocol=self.session.protocol,
        )
        self.conn = conn
        return conn

    async def _attach_secrets(self, conn: Connection) -> None:
        srv = self.servicer
        if srv.secrets is None or not srv.serve_secrets or self.identity is None:
            return
        try:
            await srv.secrets.attach(self.identity, conn.wake)
        except Exception as err:
            log.exception("cannot make secrets for %s", conn.id)
            raise StreamRefused(grpc.StatusCode.UNAVAILABLE, "secrets unavailable") from err

    def _own_secrets(self) -> TypeResources:
        secrets = self.servicer.secrets
        if secrets is None or self.identity is None:
            return TypeResources(type_urls.SECRET, {})
        return secrets.resources(self.identity)

    def _check_type(self, req: Any) -> None:
        # Rule 2: ADS needs a type URL on every request; a per-type service implies one.
        if not req.type_url:
            if not self.fixed_type:
                raise StreamRefused(
                    grpc.StatusCode.INVALID_ARGUMENT, "type URL is required for ADS"
                )
            req.type_url = self.fixed_type
        elif self.fixed_type and req.type_url != self.fixed_type:
            raise StreamRefused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"type URL {req.type_url} on the {type_urls.short_name(self.fixed_type)} service",
            )

    async def _read(self, iterator: AsyncIterator[Any]) -> None:
        try:
            async for req in iterator:
                # Rule 3: only the first request must carry the node; later ones are
                # served under the node cached at the handshake whatever they carry.
                self._check_type(req)
                self._handle(req)
        except StreamRefused as refused:
            self.failure = refused
        except (asyncio.CancelledError, grpc.RpcError):
            pass
        finally:
            self.closed = True
            if self.conn is not None:
                self.conn.wake.set()

    def _handle(self, req: Any) -> None:
        outcome = self.session.handle(req)
        conn = self.conn
        assert conn is not None
        short = type_urls.short_name(outcome.type_url)
        if outcome.kind is RequestKind.STALE:
            self.servicer.metrics.expired_nonce.inc(short)
        elif outcome.kind is RequestKind.NACK:
            self.servicer.metrics.reject(short)
            log.warning(
                "xds NACK from %s for %s: %s", conn.node.id, short, outcome.error or "(no message)"
            )
        conn.wake.set()

    async def _write_loop(self, conn: Connection) -> None:
        cache = self.servicer.cache
        while True:
            await self._wait(conn)
            conn.wake.clear()
            if self.closed or self.failure is not None:
                return
            snapshot = cache.get(conn.key)
            if snapshot is None:
                continue  # rule 34: hold the stream until config exists
            await self._push(conn, snapshot)

    async def _wait(self, conn: Connection) -> None:
        """Until woken, or until a heartbeat is due (rule 43)."""
        due = self.session.next_heartbeat_at()
        if due is None or self.servicer.cache.get(conn.key) is None:
            await conn.wake.wait()
            return
        # A due heartbeat can be held back (routes waiting on CDS): retry soon, not in a spin.
        delay = max(_HEARTBEAT_RETRY_S, due - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.wake.wait(), delay)

    async def _push(self, conn: Connection, snapshot: Snapshot) -> None:
        srv = self.servicer
        states = self.session.states
        plan = self.handover.plan(states, snapshot)
        if srv.secrets is not None:
            plan[type_urls.SECRET] = self._own_secrets()
        sent = False
        for type_url in type_urls.PUSH_ORDER:
            if type_url == type_urls.SECRET and not srv.serve_secrets:
                self._withhold_secrets(conn)
                continue
            if type_url in _ROUTING and self.handover.routes_wait(states):
                continue  # rule 35: routes only to clusters the client has warmed
            before = states[type_url].held if type_url in states else {}
            out = self.session.next_response(plan[type_url])
            if out is None:
                continue
            if out.heartbeat:
                await self.context.write(out.data)
                continue
            if type_url == type_urls.CLUSTER:
                self.session.clusters_sent(out, before)
                self.handover.clusters_sent(before, out)
            conn.held[type_url] = states[type_url].held
            short = type_urls.short_name(type_url)
            srv.metrics.pushes.inc(short)
            srv.metrics.config_size.labels(short).observe(len(out.data))
            sent = True
            await self.context.write(out.data)
        if sent:
            conn.sent = snapshot
        self._note_convergence(conn, snapshot, sent)

    def _withhold_secrets(self, conn: Connection) -> None:
        state = self.session.states.get(type_urls.SECRET)
        if state is None or not state.requested or self.secrets_withheld_logged:
            return
        self.secrets_withheld_logged = True
        log.warning("xds stream %s asks for secrets on a port that serves none", conn.id)

    def _note_convergence(self, conn: Connection, snapshot: Snapshot, sent: bool) -> None:
        quiet = (
            not sent
            and not self.handover.retaining
            and all(
                (not st.pending or st.heartbeat_out) and st.error is None
                for url, st in self.session.states.items()
                if url in type_urls.SHORT_NAMES
            )
        )
        if not quiet:
            conn.converged_on = None
        else:
            conn.acked = snapshot
        if quiet and conn.converged_on is not snapshot:
            conn.converged_on = snapshot
            set_at = self.servicer.cache.set_at(conn.key)
            if set_at is not None:
                self.servicer.metrics.convergence.observe(time.monotonic() - set_at)
        self.servicer.sync_status.notify()
