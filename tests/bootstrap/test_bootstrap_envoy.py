"""A real Envoy started from `meshplane bootstrap` output connects as the contract says.

A tiny ADS server stands in for the control plane (it answers every subscription with
an empty set, which is enough for Envoy to initialise); the test checks what Envoy
actually sends (node id, metadata, bearer token over TLS) and that the stats and
health listeners answer once Envoy is live.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import json_format

from meshplane.bootstrap import BootstrapOptions, bootstrap, render_json
from meshplane.model.proxy import Proxy

pytestmark = pytest.mark.envoy

ENVOY = str(Path(sys.executable).parent / "envoy")
DEADLINE_S = 60.0


@dataclass
class StubAds(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    """Answers the first request of each type with an empty response; records what it saw."""

    nodes: list[Any] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    types: set[str] = field(default_factory=set)

    def _record(self, node: Any, context: Any) -> None:
        if node.id:
            self.nodes.append(node)
            self.metadata.append({k: str(v) for k, v in context.invocation_metadata()})

    async def StreamAggregatedResources(self, requests: Any, context: Any) -> AsyncIterator[Any]:
        nonce = 0
        async for req in requests:
            self._record(req.node, context)
            if req.response_nonce or req.error_detail.message:
                continue  # an ACK (or NACK): nothing new to send
            nonce += 1
            self.types.add(req.type_url)
            yield discovery_pb2.DiscoveryResponse(
                type_url=req.type_url, version_info="1", nonce=str(nonce)
            )

    async def DeltaAggregatedResources(self, requests: Any, context: Any) -> AsyncIterator[Any]:
        nonce = 0
        async for req in requests:
            self._record(req.node, context)
            if req.response_nonce:
                continue
            nonce += 1
            self.types.add(req.type_url)
            yield discovery_pb2.DeltaDiscoveryResponse(
                type_url=req.type_url, system_version_info="1", nonce=str(nonce)
            )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ca_and_server_cert() -> tuple[str, bytes, bytes]:
    """(root PEM, server cert PEM, server key PEM) with SAN IP 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test root")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meshplane")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
    return ca_pem, cert.public_bytes(serialization.Encoding.PEM), key_pem


@contextlib.asynccontextmanager
async def ads_server(tls: tuple[bytes, bytes] | None) -> AsyncIterator[tuple[StubAds, int]]:
    stub = StubAds()
    server = grpc.aio.server()
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(stub, server)
    if tls:
        port = server.add_secure_port(
            "127.0.0.1:0", grpc.ssl_server_credentials([(tls[1], tls[0])])
        )
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield stub, port
    finally:
        await server.stop(None)


@contextlib.asynccontextmanager
async def envoy(config: Path, log: Path) -> AsyncIterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                ENVOY,
                "-c",
                str(config),
                "--use-dynamic-base-id",
                "-l",
                "info",
                "--drain-time-s",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


async def wait_http_200(url: str, proc: subprocess.Popen[bytes], log: Path) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while loop.time() < deadline:
            assert proc.poll() is None, f"envoy exited:\n{log.read_text()[-3000:]}"
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return await resp.text()
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} never answered 200:\n{log.read_text()[-3000:]}")


@pytest.mark.parametrize("mode", ["sotw", "delta", "tls"])
async def test_envoy_connects_identifies_itself_and_serves_health_and_stats(
    mode: str, tmp_path: Path
) -> None:
    ca_pem, cert_pem, key_pem = _ca_and_server_cert()
    tls = (cert_pem, key_pem) if mode == "tls" else None
    async with ads_server(tls) as (stub, port):
        stats_port, health_port = free_port(), free_port()
        opts = BootstrapOptions(
            workload="productpage-v1",
            namespace="bookinfo",
            service_account="bookinfo-productpage",
            labels={"app": "productpage", "version": "v1"},
            stats_port=stats_port,
            health_port=health_port,
            admin_port=free_port(),
            xds_address=f"127.0.0.1:{port}",
            delta=mode == "delta",
            token="tok-xyz" if mode == "tls" else None,
            ca_cert_pem=ca_pem if mode == "tls" else None,
        )
        config = tmp_path / "bootstrap.json"
        config.write_text(render_json(bootstrap(opts)))
        log = tmp_path / "envoy.log"
        async with envoy(config, log) as proc:
            ready = await wait_http_200(f"http://127.0.0.1:{health_port}/healthz/ready", proc, log)
            stats = await wait_http_200(
                f"http://127.0.0.1:{stats_port}/stats/prometheus", proc, log
            )

    assert ready.strip() == "LIVE"
    assert "envoy_cluster_manager_cds_update_success" in stats
    assert {"type.googleapis.com/envoy.config.cluster.v3.Cluster",
            "type.googleapis.com/envoy.config.listener.v3.Listener"} <= stub.types  # fmt: skip
    node = stub.nodes[0]
    assert node.id == "sidecar~127.0.0.1~productpage-v1.bookinfo~bookinfo.svc.cluster.local"
    assert node.cluster == "productpage-v1.bookinfo"
    # The node goes on the first message of the stream only.
    assert len(stub.nodes) == 1
    proxy = Proxy.from_node(node.id, json_format.MessageToDict(node.metadata))
    assert proxy.service_account == "bookinfo-productpage"
    assert dict(proxy.labels) == {"app": "productpage", "version": "v1"}
    assert proxy.interception_mode == "REDIRECT"
    if mode == "tls":
        assert stub.metadata[0].get("authorization") == "Bearer tok-xyz"
    else:
        assert "authorization" not in stub.metadata[0]
