"""An ADS load client: many simulated Envoys on few gRPC channels, with timing of what arrives.

A control plane's cost is driven by how many proxies hold a stream open and what each must be
sent. This client opens P concurrent ADS streams (SotW or Delta) as distinct sidecars and does
what Envoy does on them: subscribe to CDS and LDS by wildcard, then to EDS for every EDS
cluster and RDS for every route name its HTTP connection managers use, and ACK every response
(never NACK). It records, per proxy and type, when each version arrived and its size, so the
runner can tell when every proxy has its full config and when a change reached the last one.

Responses are received as raw bytes (the stub's method path with no deserializer) so their
exact size on the wire is counted; each distinct resource is decoded once (`xdsinfo`).
The client shares the machine with the server; its CPU time is part of every number.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from bench.proxies import Arrival, SimulatedProxy, proxy_node
from bench.xdsinfo import CDS, EDS, LDS, RDS, SHORT, TYPES, Probe, ResourceInfo, ResponseDecoder

_SERVICE = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
SOTW_METHOD = _SERVICE + "StreamAggregatedResources"
DELTA_METHOD = _SERVICE + "DeltaAggregatedResources"
PROTOCOLS = ("sotw", "delta")
# Which type's resources name the subscriptions of another type (Envoy's dependency order).
_DEPENDENT = {CDS: EDS, LDS: RDS}


def _channel_options(index: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", -1),
        ("grpc.max_send_message_length", -1),
        # one connection per channel, not one shared subchannel for the whole client
        ("grpc.use_local_subchannel_pool", 1),
        ("bench.channel", index),
    ]


class LoadClient:
    """P simulated proxies on ceil(P / streams_per_channel) channels to one ADS server."""

    def __init__(
        self,
        target: str,
        proxies: int,
        protocol: str = "sotw",
        *,
        namespaces: int = 10,
        streams_per_channel: int = 50,
        first_index: int = 0,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}")
        self.target = target
        self.protocol = protocol
        self.proxies = [
            SimulatedProxy(i, proxy_node(i, namespaces))
            for i in range(first_index, first_index + proxies)
        ]
        self.decoder = ResponseDecoder()
        self.bytes_by_type = {t: 0 for t in TYPES}
        self.responses_by_type = {t: 0 for t in TYPES}
        self._streams_per_channel = streams_per_channel
        self._channels: list[grpc.aio.Channel] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.started_at = 0.0

    async def start(self) -> None:
        """Open every channel and stream at once, as a fleet of Envoys starting together."""
        per = self._streams_per_channel
        self.started_at = time.monotonic()
        for c in range((len(self.proxies) + per - 1) // per):
            channel = grpc.aio.insecure_channel(self.target, options=_channel_options(c))
            self._channels.append(channel)
            for proxy in self.proxies[c * per : (c + 1) * per]:
                self._tasks.append(asyncio.create_task(self._run(channel, proxy)))

    async def stop(self) -> None:
        """Cancel every stream and close the channels."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for channel in self._channels:
            await channel.close(grace=None)
        self._tasks.clear()
        self._channels.clear()

    async def wait_until(self, done: Any, timeout: float, poll: float = 0.02) -> bool:
        """Poll `done()` until true or `timeout` seconds pass; False means it did not happen."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(poll)
        return True

    async def wait_configured(self, timeout: float) -> bool:
        """Wait until every proxy has its full first config (bounded)."""
        return await self.wait_until(
            lambda: all(p.configured_at is not None for p in self.proxies), timeout
        )

    def arm(self, probe: Probe) -> list[SimulatedProxy]:
        """Arm `probe` on every proxy; returns those it affects."""
        return [p for p in self.proxies if p.arm(probe)]

    async def wait_probe(self, affected: list[SimulatedProxy], timeout: float) -> bool:
        """Wait until every affected proxy has ACKed the probed change (bounded)."""
        return await self.wait_until(
            lambda: all(p.probe_hit_at is not None for p in affected), timeout
        )

    def errors(self) -> list[str]:
        return [f"load-{p.index}: {p.error}" for p in self.proxies if p.error]

    async def _run(self, channel: grpc.aio.Channel, proxy: SimulatedProxy) -> None:
        proxy.connected_at = time.monotonic()
        try:
            if self.protocol == "sotw":
                await self._run_sotw(channel, proxy)
            else:
                await self._run_delta(channel, proxy)
        except grpc.aio.AioRpcError as exc:
            proxy.error = f"{exc.code().name}: {exc.details()}"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # recorded, reported: one broken stream must not stop the run
            proxy.error = f"{type(exc).__name__}: {exc}"

    def _record(self, type_url: str, size: int) -> None:
        self.bytes_by_type[type_url] += size
        self.responses_by_type[type_url] += 1

    async def _run_sotw(self, channel: grpc.aio.Channel, proxy: SimulatedProxy) -> None:
        await self._run_stream(
            channel, proxy, SOTW_METHOD, discovery_pb2.DiscoveryRequest, self._on_sotw_response
        )

    async def _run_stream(
        self,
        channel: grpc.aio.Channel,
        proxy: SimulatedProxy,
        method: str,
        request_class: Any,
        on_response: Any,
    ) -> None:
        """Open one stream, ask for CDS and LDS as Envoy does (legacy wildcard: no names),
        then hand every raw response to `on_response` until the server closes."""
        call = channel.stream_stream(
            method,
            request_serializer=request_class.SerializeToString,
            response_deserializer=None,
        )()
        try:
            for first, type_url in enumerate((CDS, LDS)):
                request = request_class(type_url=type_url)
                if first == 0:
                    request.node.CopyFrom(proxy.node)
                await call.write(request)
            while True:
                raw = await call.read()
                if raw is grpc.aio.EOF:
                    proxy.error = proxy.error or "server closed the stream"
                    return
                await on_response(call, proxy, raw)
        finally:
            call.cancel()

    async def _on_sotw_response(self, call: Any, proxy: SimulatedProxy, raw: bytes) -> None:
        received = time.monotonic()
        response = discovery_pb2.DiscoveryResponse.FromString(raw)
        type_url = response.type_url
        state = proxy.types.get(type_url)
        if state is None:  # a type this client never asked for: ACK it and move on
            await call.write(self._sotw_request(type_url, response.version_info, response.nonce))
            return
        self._record(type_url, len(raw))
        decoded = self.decoder.decode_response(
            type_url, response.version_info, response.nonce, raw, response.resources
        )
        infos = decoded.infos
        if type_url in (CDS, LDS):  # full state: what is absent was deleted
            state.held, state.refs = decoded.by_name, decoded.refs
        elif state.subscribed >= decoded.by_name.keys():
            state.held = {**state.held, **decoded.by_name}
        else:
            state.held = {
                **state.held,
                **{n: i for n, i in decoded.by_name.items() if n in state.subscribed},
            }
        state.version, state.nonce = response.version_info, response.nonce
        await call.write(
            self._sotw_request(type_url, state.version, state.nonce, state.request_names)
        )
        await self._acked(call, proxy, type_url, received, len(raw), infos, self._resubscribe_sotw)

    async def _acked(
        self,
        call: Any,
        proxy: SimulatedProxy,
        type_url: str,
        received: float,
        size: int,
        infos: Sequence[ResourceInfo],
        resubscribe: Callable[[Any, SimulatedProxy, str], Awaitable[None]],
    ) -> None:
        """After the ACK (SotW and Delta alike): record the arrival, then subscribe to what
        the new resources name (CDS -> EDS, LDS -> RDS)."""
        state = proxy.types[type_url]
        acked = time.monotonic()
        state.acks += 1
        state.size += size
        state.arrivals.append(Arrival(state.version, received, acked, size, len(infos)))
        dependent = _DEPENDENT.get(type_url)
        if dependent is not None:
            await resubscribe(call, proxy, dependent)
        proxy.after_ack(type_url, infos, acked)

    async def _resubscribe_sotw(self, call: Any, proxy: SimulatedProxy, type_url: str) -> None:
        state = proxy.types[type_url]
        wanted = proxy.wanted(type_url)
        if wanted == state.subscribed:
            return
        state.subscribed, state.request_names = wanted, sorted(wanted)
        state.held = {k: v for k, v in state.held.items() if k in wanted}
        await call.write(
            self._sotw_request(type_url, state.version, state.nonce, state.request_names)
        )

    @staticmethod
    def _sotw_request(
        type_url: str, version: str, nonce: str, names: Sequence[str] = ()
    ) -> discovery_pb2.DiscoveryRequest:
        return discovery_pb2.DiscoveryRequest(
            type_url=type_url, version_info=version, response_nonce=nonce, resource_names=names
        )

    async def _run_delta(self, channel: grpc.aio.Channel, proxy: SimulatedProxy) -> None:
        await self._run_stream(
            channel,
            proxy,
            DELTA_METHOD,
            discovery_pb2.DeltaDiscoveryRequest,
            self._on_delta_response,
        )

    async def _on_delta_response(self, call: Any, proxy: SimulatedProxy, raw: bytes) -> None:
        received = time.monotonic()
        response = discovery_pb2.DeltaDiscoveryResponse.FromString(raw)
        type_url = response.type_url
        ack = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, response_nonce=response.nonce)
        state = proxy.types.get(type_url)
        if state is None:
            await call.write(ack)
            return
        self._record(type_url, len(raw))
        decoded = self.decoder.decode_response(
            type_url, response.system_version_info, response.nonce, raw, response.resources
        )
        infos = decoded.infos
        first_fill = not state.held and not response.removed_resources
        state.held.update(decoded.by_name)  # this proxy's own dict: shared `by_name` is copied
        if state.absent:
            state.absent -= decoded.by_name.keys()
        for name in response.removed_resources:
            state.held.pop(name, None)
            state.absent.add(name)
        state.refs = decoded.refs if first_fill else None
        state.version, state.nonce = response.system_version_info, response.nonce
        await call.write(ack)
        await self._acked(call, proxy, type_url, received, len(raw), infos, self._resubscribe_delta)

    async def _resubscribe_delta(self, call: Any, proxy: SimulatedProxy, type_url: str) -> None:
        state = proxy.types[type_url]
        wanted = proxy.wanted(type_url)
        added, gone = wanted - state.subscribed, state.subscribed - wanted
        if not added and not gone:
            return
        state.subscribed = wanted
        for name in gone:
            state.held.pop(name, None)
            state.absent.discard(name)
        await call.write(
            discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url,
                resource_names_subscribe=sorted(added),
                resource_names_unsubscribe=sorted(gone),
            )
        )


def summary(client: LoadClient) -> dict[str, Any]:
    """Counts a human can read: configured proxies, responses and bytes per type."""
    done = [p.configured_at - client.started_at for p in client.proxies if p.configured_at]
    return {
        "proxies": len(client.proxies),
        "configured": len(done),
        "last_configured_s": round(max(done), 3) if done else None,
        "responses": {SHORT[t]: n for t, n in client.responses_by_type.items()},
        "bytes": {SHORT[t]: n for t, n in client.bytes_by_type.items()},
        "held": {SHORT[t]: len(client.proxies[0].types[t].held) for t in TYPES}
        if client.proxies
        else {},
        "errors": client.errors()[:5],
        "decoded": {"hits": client.decoder.hits, "misses": client.decoder.misses},
    }


async def _main_async(args: argparse.Namespace) -> int:
    client = LoadClient(args.target, args.proxies, args.protocol, namespaces=args.namespaces)
    await client.start()
    try:
        ok = await client.wait_configured(args.timeout)
        print(summary(client))
        return 0 if ok else 1
    finally:
        await client.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.adsload", description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:15010")
    parser.add_argument("--proxies", type=int, default=10)
    parser.add_argument("--protocol", choices=PROTOCOLS, default="sotw")
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_main_async(args))
    return 130


if __name__ == "__main__":
    raise SystemExit(main())
