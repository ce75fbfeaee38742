"""Root rotation driven by `serve` over real gRPC TLS: a root staged in the state dir is
rolled out in Istio's order, each phase waiting for the proxies' SDS ACKs, and the state
dir ends up holding the new CA (0600 keys) with a bridge for old bootstraps."""

from __future__ import annotations

import asyncio
import contextlib
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest
from test_tls_port import MESH, SDS, Stream, ads, leaf_uri, node, secrets_of, token

from meshplane.app import ControlPlane, start
from meshplane.ca.next_root import NEXT_CA_DIR, stage_root
from meshplane.ca.root import CA_KEY, ROOT_BRIDGE, ROOT_CERT, load
from meshplane.options import ServeOptions

HELD_S = 0.4  # how long a phase is watched for not moving on without our ACK (bounded)


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    config = tmp_path / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(MESH)
    options = ServeOptions(
        config_dirs=(str(config),),
        xds_address="127.0.0.1:0",
        xds_tls_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        state_dir=str(tmp_path / "state"),
    )
    cp = await start(options)
    assert cp.tls is not None
    cp.tls.rollout.ack_timeout_s = 20.0
    try:
        yield cp
    finally:
        await cp.stop()


@contextlib.asynccontextmanager
async def channel_trusting(cp: ControlPlane, root_pem: bytes) -> AsyncIterator[grpc.aio.Channel]:
    creds = grpc.ssl_channel_credentials(root_certificates=root_pem)
    async with grpc.aio.secure_channel(f"127.0.0.1:{cp.xds_tls_port}", creds) as channel:
        yield channel


def state(cp: ControlPlane) -> Path:
    return Path(cp.options.state_dir)


def bundle(secrets: dict[str, Any]) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(
        secrets["ROOTCA"].validation_context.trusted_ca.inline_bytes
    )


def leaf_issuer(secrets: dict[str, Any]) -> x509.Name:
    chain = secrets["default"].tls_certificate.certificate_chain.inline_bytes
    return x509.load_pem_x509_certificates(chain)[0].issuer


def ack(stream: Stream, resp: Any) -> None:
    stream.queue.put_nowait(
        DiscoveryRequest(
            type_url=SDS,
            resource_names=["default", "ROOTCA"],
            version_info=resp.version_info,
            response_nonce=resp.nonce,
        )
    )


async def test_rotation_trusts_both_then_reissues_then_drops_the_old_root_on_acks(
    plane: ControlPlane,
) -> None:
    old_root = load(state(plane)).roots[0]
    async with (
        channel_trusting(plane, old_root.public_bytes(serialization.Encoding.PEM)) as channel,
        ads(channel, token(plane, "shop", "cart")) as stream,
    ):
        stream.queue.put_nowait(
            DiscoveryRequest(
                node=node("shop", "cart"), type_url=SDS, resource_names=["default", "ROOTCA"]
            )
        )
        resp = await stream.next()
        held = secrets_of(resp)
        ack(stream, resp)
        assert bundle(held) == [old_root]

        new = stage_root(state(plane), "cluster.local")
        rotation = asyncio.create_task(plane.tls.rollout.check())  # type: ignore[union-attr]
        phases: list[tuple[frozenset[x509.Name], x509.Name]] = []
        while not phases or phases[-1][0] != {new.cert.subject}:
            resp = await stream.next()
            held.update(secrets_of(resp))
            phases.append((frozenset(c.subject for c in bundle(held)), leaf_issuer(held)))
            if len(phases[-1][0]) == 2:  # the last phase needs no ACK to end
                await asyncio.sleep(HELD_S)
                assert not rotation.done(), "the rotation moved on without this proxy's ACK"
            ack(stream, resp)
        assert await asyncio.wait_for(rotation, 10) is True

    both = frozenset((old_root.subject, new.cert.subject))
    assert phases == [
        (both, old_root.subject),  # the new root is trusted before anything is signed by it
        (both, new.cert.subject),  # every certificate re-issued by the new root
        ({new.cert.subject}, new.cert.subject),  # and only then the old root leaves
    ]
    assert leaf_uri(held["default"]) == "spiffe://cluster.local/ns/shop/sa/cart"


async def test_the_state_dir_keeps_the_new_root_with_private_keys_0600(
    plane: ControlPlane,
) -> None:
    new = stage_root(state(plane), "cluster.local")
    assert await plane.tls.rollout.check()  # type: ignore[union-attr]
    kept = load(state(plane))
    assert kept.cert == new.cert and kept.roots == (new.cert,)
    assert not (state(plane) / NEXT_CA_DIR).exists()
    assert stat.S_IMODE((state(plane) / CA_KEY).stat().st_mode) == 0o600
    assert (state(plane) / ROOT_BRIDGE).exists()
    assert (state(plane) / ROOT_CERT).read_bytes() == new.root_pem


async def test_old_and_new_bootstraps_both_verify_the_port_after_rotation(
    plane: ControlPlane,
) -> None:
    old_pem = (state(plane) / ROOT_CERT).read_bytes()
    before = plane.tls.server_cert.serial  # type: ignore[union-attr]
    stage_root(state(plane), "cluster.local")
    assert await plane.tls.rollout.check()  # type: ignore[union-attr]
    assert plane.tls.server_cert.serial != before  # type: ignore[union-attr]
    new_pem = (state(plane) / ROOT_CERT).read_bytes()
    assert new_pem != old_pem
    for root_pem in (old_pem, new_pem):
        async with (
            channel_trusting(plane, root_pem) as channel,
            ads(channel, token(plane, "shop", "cart")) as stream,
        ):
            stream.queue.put_nowait(
                DiscoveryRequest(node=node("shop", "cart"), type_url=SDS, resource_names=["ROOTCA"])
            )
            got = secrets_of(await stream.next())
            assert got["ROOTCA"].validation_context.trusted_ca.inline_bytes == new_pem


async def test_a_staged_directory_that_is_not_a_ca_is_moved_aside(plane: ControlPlane) -> None:
    staged = state(plane) / NEXT_CA_DIR
    staged.mkdir()
    (staged / "ca-cert.pem").write_text("not a certificate")
    before = load(state(plane)).cert
    assert not await plane.tls.rollout.check()  # type: ignore[union-attr]
    assert not staged.exists() and staged.with_name("next-ca.rejected").exists()
    assert load(state(plane)).cert == before
