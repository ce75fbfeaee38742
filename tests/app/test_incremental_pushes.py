"""The control plane pushes only what a change affects, to only the proxies it affects.

Runs `meshplane.app.start` in-process on a watched tmp directory and connects raw SotW ADS
clients that behave like Envoy (wildcard CDS/LDS, EDS and RDS for what those name, ACK
everything), then edits files and records which types each client is sent.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3.base_pb2 import Node
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import ads_pb2_grpc
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest, DiscoveryResponse
from google.protobuf import struct_pb2

from meshplane.app import ControlPlane, start
from meshplane.options import ServeOptions

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
HCM = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)


def service(ns: str, name: str, port: int, ip: str) -> str:
    return f"""\
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  ports: [{{name: http, port: 9080}}]
  selector: {{app: {name}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}-1, namespace: {ns}}}
spec:
  address: {ip}
  ports: {{http: {port}}}
  labels: {{app: {name}}}
"""


def route(ns: str, name: str, timeout: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{name}]
  exportTo: ["."]
  http:
  - route: [{{destination: {{host: {name}}}}}]
    timeout: {timeout}
"""


class EnvoyLikeClient:
    """One SotW ADS stream that follows the protocol the way Envoy does."""

    def __init__(self, channel: grpc.aio.Channel, ns: str, name: str) -> None:
        md = struct_pb2.Struct()
        md.update({"NAMESPACE": ns, "LABELS": {"app": f"client-{name}"}})
        self.node = Node(id=f"sidecar~10.9.9.9~{name}.{ns}~{ns}.svc.cluster.local", metadata=md)
        self.received: list[str] = []
        self.versions: dict[str, str] = {}
        self._out: asyncio.Queue[DiscoveryRequest | None] = asyncio.Queue()
        self._first = True
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        self.call = stub.StreamAggregatedResources(self._requests())
        self.task = asyncio.create_task(self._run())
        self.send(CDS, [])
        self.send(LDS, [])

    async def _requests(self) -> AsyncIterator[DiscoveryRequest]:
        while (req := await self._out.get()) is not None:
            yield req

    def send(self, type_url: str, names: list[str], resp: DiscoveryResponse | None = None) -> None:
        req = DiscoveryRequest(type_url=type_url, resource_names=names)
        if resp is not None:
            req.version_info, req.response_nonce = resp.version_info, resp.nonce
        if self._first:
            req.node.CopyFrom(self.node)
            self._first = False
        self._out.put_nowait(req)

    async def _run(self) -> None:
        names: dict[str, list[str]] = {CDS: [], LDS: [], EDS: [], RDS: []}
        async for resp in self.call:
            self.received.append(resp.type_url)
            self.versions[resp.type_url] = resp.version_info
            if resp.type_url == CDS:
                eds = sorted(c.name for c in map(_unpack(Cluster), resp.resources) if c.type == 3)
                if eds != names[EDS]:
                    names[EDS] = eds
                    self.send(EDS, eds)
            elif resp.type_url == LDS:
                rds = sorted(
                    {n for lis in map(_unpack(Listener), resp.resources) for n in _rds_names(lis)}
                )
                if rds != names[RDS]:
                    names[RDS] = rds
                    self.send(RDS, rds)
            self.send(resp.type_url, names[resp.type_url], resp)

    async def close(self) -> None:
        self._out.put_nowait(None)
        self.call.cancel()
        with pytest.raises((asyncio.CancelledError, grpc.RpcError)):
            await self.task


def _unpack(cls: type) -> object:
    def unpack(any_msg: object) -> object:
        msg = cls()
        any_msg.Unpack(msg)  # type: ignore[attr-defined]
        return msg

    return unpack


def _rds_names(lis: Listener) -> list[str]:
    out = []
    for chain in [*lis.filter_chains, lis.default_filter_chain]:
        for f in chain.filters:
            if f.typed_config.type_url == HCM:
                hcm = hcm_pb2.HttpConnectionManager()
                f.typed_config.Unpack(hcm)
                if hcm.HasField("rds"):
                    out.append(hcm.rds.route_config_name)
    return out


async def settle(cp: ControlPlane, clients: list[EnvoyLikeClient], quiet: float = 0.6) -> None:
    """Wait until nothing has been received for `quiet` seconds (bounded)."""
    counts = [-1]
    for _ in range(100):
        await asyncio.sleep(quiet)
        now = sum(len(c.received) for c in clients)
        if now == counts[-1]:
            return
        counts.append(now)
    raise AssertionError("pushes never settled")


def write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[tuple[ControlPlane, Path]]:
    for ns in ("alpha", "beta"):
        write(tmp_path / f"{ns}-svc.yaml", service(ns, f"svc-{ns}", 8001, "10.1.0.1"))
        write(tmp_path / f"{ns}-vs.yaml", route(ns, f"svc-{ns}", "5s"))
    options = ServeOptions(
        config_dirs=(str(tmp_path),),
        xds_address="127.0.0.1:0",
        xds_tls_address="",  # no TLS port: no CA written anywhere
        http_address="127.0.0.1:0",
        debounce_ms=20,
        debounce_max_ms=1000,
    )
    cp = await start(options)
    try:
        yield cp, tmp_path
    finally:
        await cp.stop()


async def test_endpoint_change_pushes_eds_only_to_proxies_that_see_it(
    mesh: tuple[ControlPlane, Path],
) -> None:
    cp, config = mesh
    async with grpc.aio.insecure_channel(f"127.0.0.1:{cp.xds_port}") as channel:
        # exportTo "." on the VirtualServices makes the two namespaces' views differ.
        a = EnvoyLikeClient(channel, "alpha", "a")
        b = EnvoyLikeClient(channel, "beta", "b")
        await settle(cp, [a, b])
        assert {CDS, EDS, LDS, RDS} <= set(a.received)
        a.received.clear()
        b.received.clear()

        # Services are exported everywhere, so both proxies see svc-alpha's endpoints.
        write(config / "alpha-svc.yaml", service("alpha", "svc-alpha", 8002, "10.1.0.1"))
        await settle(cp, [a, b])
        assert a.received == [EDS]
        assert b.received == [EDS]

        # A VirtualService exported only to its namespace changes alpha's routes only.
        a.received.clear()
        b.received.clear()
        write(config / "alpha-vs.yaml", route("alpha", "svc-alpha", "7s"))
        await settle(cp, [a, b])
        assert a.received == [RDS]
        assert b.received == []

        # Rewriting a file with identical content is not a change at all.
        write(config / "beta-vs.yaml", route("beta", "svc-beta", "5s"))
        await settle(cp, [a, b])
        assert a.received == [RDS] and b.received == []
        await a.close()
        await b.close()
