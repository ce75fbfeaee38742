"""The TLS xDS port over real gRPC TLS: who gets in, with which status, and which secrets.

Runs `meshplane.app.start` in-process (CA created in a tmp state dir) and talks to it with
raw grpc.aio ADS streams over TLS, trusting the CA's root-cert.pem as a proxy would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from envoy.config.core.v3.base_pb2 import Node
from envoy.extensions.transport_sockets.tls.v3.secret_pb2 import Secret
from envoy.service.discovery.v3 import ads_pb2_grpc
from envoy.service.discovery.v3.discovery_pb2 import (
    DeltaDiscoveryRequest,
    DiscoveryRequest,
)

from meshplane.app import ControlPlane, start
from meshplane.ca.tokens import TokenSigner
from meshplane.options import ServeOptions

SDS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
QUIET_S = 0.6  # how long "nothing comes" is watched for; bounded, not a speed claim

MESH = """\
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  ports: [{name: http, port: 8000}]
  selector: {app: cart}
"""


@pytest.fixture
async def cp(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    config = tmp_path / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(MESH)
    options = ServeOptions(
        config_dirs=(str(config),),
        xds_address="127.0.0.1:0",
        xds_tls_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        state_dir=str(tmp_path / "state"),
        tls_sans=("cp.example",),
    )
    plane = await start(options)
    try:
        yield plane
    finally:
        await plane.stop()


def node(ns: str, sa: str, name: str = "pod") -> Node:
    n = Node(id=f"sidecar~127.0.0.1~{name}.{ns}~{ns}.svc.cluster.local")
    n.metadata.update({"NAMESPACE": ns, "SERVICE_ACCOUNT": sa})
    return n


def token(cp: ControlPlane, ns: str, sa: str, kind: str = "sidecar") -> str:
    return TokenSigner.load_or_create(cp.options.state_dir).issue(ns, sa, proxy_type=kind)


@contextlib.asynccontextmanager
async def tls_channel(cp: ControlPlane) -> AsyncIterator[grpc.aio.Channel]:
    root_pem = (Path(cp.options.state_dir) / "root-cert.pem").read_bytes()
    creds = grpc.ssl_channel_credentials(root_certificates=root_pem)
    async with grpc.aio.secure_channel(f"127.0.0.1:{cp.xds_tls_port}", creds) as channel:
        yield channel


@dataclass
class Stream:
    """One ADS stream: requests go in through a queue; a reader task queues responses (a
    timed-out `call.read()` would cancel the whole call)."""

    call: Any
    queue: asyncio.Queue[Any]
    responses: asyncio.Queue[Any]

    async def next(self, timeout: float = 5.0) -> Any:
        item = await asyncio.wait_for(self.responses.get(), timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    async def nothing_for(self, seconds: float = QUIET_S) -> bool:
        try:
            await self.next(seconds)
        except TimeoutError:
            return True
        return False


@contextlib.asynccontextmanager
async def ads(
    channel: grpc.aio.Channel, bearer: str | None, *, delta: bool = False
) -> AsyncIterator[Stream]:
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def requests() -> AsyncIterator[Any]:
        while True:
            item = await queue.get()
            if item is None:
                return
            yield item

    metadata = () if bearer is None else (("authorization", f"Bearer {bearer}"),)
    method = stub.DeltaAggregatedResources if delta else stub.StreamAggregatedResources
    call = method(requests(), metadata=metadata)
    responses: asyncio.Queue[Any] = asyncio.Queue()

    async def read() -> None:
        try:
            async for resp in call:
                responses.put_nowait(resp)
        except grpc.aio.AioRpcError as err:
            responses.put_nowait(err)

    reader = asyncio.create_task(read())
    try:
        yield Stream(call, queue, responses)
    finally:
        queue.put_nowait(None)
        call.cancel()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


def secrets_of(resp: Any) -> dict[str, Secret]:
    out = {}
    for res in resp.resources:
        packed = res.resource if hasattr(res, "resource") and res.HasField("resource") else res
        secret = Secret()
        packed.Unpack(secret)
        out[secret.name] = secret
    return out


def leaf_uri(secret: Secret) -> str:
    chain = x509.load_pem_x509_certificates(secret.tls_certificate.certificate_chain.inline_bytes)
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    assert len(uris) == 1
    return str(uris[0])


def key_matches_cert(secret: Secret) -> bool:
    key = serialization.load_pem_private_key(
        secret.tls_certificate.private_key.inline_bytes, password=None
    )
    chain = x509.load_pem_x509_certificates(secret.tls_certificate.certificate_chain.inline_bytes)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bool(key.public_key().public_bytes(*spki) == chain[0].public_key().public_bytes(*spki))


A_URI = "spiffe://cluster.local/ns/shop/sa/cart"
B_URI = "spiffe://cluster.local/ns/bank/sa/vault"


async def refused_code(cp: ControlPlane, bearer: str | None, n: Node) -> grpc.StatusCode:
    async with tls_channel(cp) as channel, ads(channel, bearer) as stream:
        stream.queue.put_nowait(DiscoveryRequest(node=n, type_url=SDS, resource_names=["default"]))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream.next()
        return err.value.code()


async def test_missing_invalid_or_expired_token_is_unauthenticated(
    cp: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "meshplane")
    me = node("shop", "cart")
    signer = TokenSigner.load_or_create(cp.options.state_dir)
    expired = signer.issue("shop", "cart", now=0)
    good = token(cp, "shop", "cart")
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    for bearer in (None, "not-a-token", expired, tampered):
        assert await refused_code(cp, bearer, me) == grpc.StatusCode.UNAUTHENTICATED, bearer
    logged = caplog.text
    assert logged.count("xds TLS stream refused (UNAUTHENTICATED)") == 4
    assert me.id in logged
    assert "token expired" in logged
    for secret_text in (expired, good, tampered):
        assert secret_text not in logged
        assert secret_text.split(".")[2] not in logged


async def test_valid_token_for_another_identity_is_permission_denied(
    cp: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "meshplane")
    bank_token = token(cp, "bank", "vault")
    for claimed in (node("shop", "cart"), node("bank", "teller"), node("shop", "vault")):
        code = await refused_code(cp, bank_token, claimed)
        assert code == grpc.StatusCode.PERMISSION_DENIED, claimed.id
    assert caplog.text.count("xds TLS stream refused (PERMISSION_DENIED)") == 3
    assert bank_token not in caplog.text


async def test_a_proxy_gets_its_own_default_and_rootca(cp: ControlPlane) -> None:
    async with tls_channel(cp) as channel, ads(channel, token(cp, "shop", "cart")) as stream:
        stream.queue.put_nowait(
            DiscoveryRequest(node=node("shop", "cart"), type_url=SDS, resource_names=["default"])
        )
        resp = await stream.next()
        got = secrets_of(resp)
        assert set(got) == {"default"}
        assert leaf_uri(got["default"]) == A_URI
        assert key_matches_cert(got["default"])
        stream.queue.put_nowait(
            DiscoveryRequest(
                type_url=SDS,
                resource_names=["default", "ROOTCA"],
                version_info=resp.version_info,
                response_nonce=resp.nonce,
            )
        )
        got = secrets_of(await stream.next())
        root_pem = (Path(cp.options.state_dir) / "root-cert.pem").read_bytes()
        assert got["ROOTCA"].validation_context.trusted_ca.inline_bytes == root_pem


async def test_no_request_shape_gets_another_identitys_secret(cp: ControlPlane) -> None:
    """B is connected (its certificate exists); A asks every way it can and gets only A's."""
    async with (
        tls_channel(cp) as channel,
        ads(channel, token(cp, "bank", "vault")) as b,
        ads(channel, token(cp, "shop", "cart")) as sotw,
        ads(channel, token(cp, "shop", "cart"), delta=True) as delta,
    ):
        b.queue.put_nowait(
            DiscoveryRequest(node=node("bank", "vault"), type_url=SDS, resource_names=["default"])
        )
        assert leaf_uri(secrets_of(await b.next())["default"]) == B_URI

        # SotW: names that are not ours first (nothing comes), then wildcard, then ours.
        seen: dict[str, Secret] = {}
        sotw.queue.put_nowait(
            DiscoveryRequest(
                node=node("shop", "cart"),
                type_url=SDS,
                resource_names=[B_URI, "bank/vault", "default/bank/vault", "kubernetes://vault"],
            )
        )
        assert await sotw.nothing_for()
        sotw.queue.put_nowait(DiscoveryRequest(type_url=SDS, resource_names=["*"]))
        resp = await sotw.next()
        seen.update(secrets_of(resp))
        assert set(seen) == {"default", "ROOTCA"}

        # Delta: wildcard plus explicit names, including B's.
        delta.queue.put_nowait(
            DeltaDiscoveryRequest(
                node=node("shop", "cart", "pod2"),
                type_url=SDS,
                resource_names_subscribe=["*", "default", "ROOTCA", B_URI, "bank"],
            )
        )
        dresp = await delta.next()
        got = secrets_of(dresp)
        assert set(got) == {"default", "ROOTCA"}
        assert set(dresp.removed_resources) <= {B_URI, "bank"}
        seen["delta-default"] = got["default"]
        for secret in (seen["default"], seen["delta-default"]):
            assert leaf_uri(secret) == A_URI
            assert key_matches_cert(secret)

        # And a stream that lies about its node in a later request is still served as itself.
        sotw.queue.put_nowait(
            DiscoveryRequest(
                node=node("bank", "vault"),
                type_url=SDS,
                resource_names=["default"],
                version_info=resp.version_info,
                response_nonce=resp.nonce,
            )
        )
        assert await sotw.nothing_for()


async def test_the_plaintext_port_serves_no_secrets(cp: ControlPlane) -> None:
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{cp.xds_port}") as channel,
        ads(channel, token(cp, "shop", "cart")) as stream,
    ):
        stream.queue.put_nowait(
            DiscoveryRequest(
                node=node("shop", "cart"), type_url=SDS, resource_names=["default", "ROOTCA"]
            )
        )
        assert await stream.nothing_for()
        stream.queue.put_nowait(DiscoveryRequest(type_url=CDS))
        resp = await stream.next()
        assert resp.type_url == CDS  # the port works; it just has no secrets


async def test_keys_never_reach_logs_or_the_debug_api(
    cp: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    state = Path(cp.options.state_dir)
    ca_key = b"".join((state / "ca-key.pem").read_bytes().splitlines()[1:-1]).decode()
    token_key = b"".join((state / "token-key.pem").read_bytes().splitlines()[1:-1]).decode()
    async with tls_channel(cp) as channel, ads(channel, token(cp, "shop", "cart")) as stream:
        n = node("shop", "cart")
        stream.queue.put_nowait(
            DiscoveryRequest(node=n, type_url=SDS, resource_names=["default", "ROOTCA"])
        )
        got = secrets_of(await stream.next())
        workload_key = got["default"].tls_certificate.private_key.inline_bytes
        workload_key_body = b"".join(workload_key.splitlines()[1:-1]).decode()
        base = f"http://127.0.0.1:{cp.http_port}"
        bodies = []
        async with aiohttp.ClientSession() as http:
            for path in (
                f"/debug/config_dump?proxyID={n.id}",
                "/debug/syncz",
                "/debug/configz",
                "/debug/registryz",
                "/metrics",
            ):
                async with http.get(base + path) as res:
                    assert res.status == 200, path
                    bodies.append(await res.text())
        dump = bodies[0]
        # Envoy's admin redaction: bytes become base64("[redacted]").
        assert base64.b64encode(b"[redacted]").decode() in dump and "ROOTCA" in dump
        assert base64.b64encode(workload_key).decode()[:40] not in dump
        metrics = bodies[-1]
        assert "citadel_server_success_cert_issuance_count 1.0" in metrics
        for text in [*bodies, caplog.text]:
            for secret in (ca_key, token_key, workload_key_body):
                # PEM bodies are wrapped at 64 columns: look for any line of them.
                assert not any(line in text for line in (secret[i : i + 64] for i in (0, 64)))


async def test_the_port_certificate_names_the_contract_sans_and_tls_sans(
    cp: ControlPlane,
) -> None:
    assert cp.tls is not None
    leaf = x509.load_pem_x509_certificates(cp.tls.server_cert.chain_pem)[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [
        "localhost",
        "meshplane.istio-system.svc",
        "cp.example",
    ]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    # A client that checks the name `cp.example` against the served certificate gets in.
    root_pem = (Path(cp.options.state_dir) / "root-cert.pem").read_bytes()
    creds = grpc.ssl_channel_credentials(root_certificates=root_pem)
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{cp.xds_tls_port}",
        creds,
        options=[("grpc.ssl_target_name_override", "cp.example")],
    ) as channel:
        await asyncio.wait_for(channel.channel_ready(), 5)
