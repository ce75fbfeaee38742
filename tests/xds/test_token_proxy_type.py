"""The join token binds the proxy type, over real gRPC TLS: the node id's claimed type must be
the token's (PERMISSION_DENIED and a log line otherwise), so a sidecar's token cannot pose
as a gateway to collect its namespace's gateway credentials, and a sidecar naming such a
credential gets nothing; a token minted before the claim existed admits a sidecar only."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest
from test_credential_access import ALPHA, ASKED, DR, proxy_node, secret_yaml, sotw_secrets
from test_tls_port import SDS, ads, refused_code, secrets_of, tls_channel, token

from meshplane.app import ControlPlane, start
from meshplane.ca.tokens import TOKEN_KEY, TokenIdentity, TokenSigner
from meshplane.options import ServeOptions


@pytest.fixture
async def cp(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    config = tmp_path / "config"
    config.mkdir()
    (config / "alpha.yaml").write_text(secret_yaml("alpha", "gw-cred", ALPHA))
    (config / "dr.yaml").write_text(DR)
    options = ServeOptions(
        config_dirs=(str(config),),
        xds_address="127.0.0.1:0",
        xds_tls_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        state_dir=str(tmp_path / "state"),
        debounce_ms=20,
    )
    plane = await start(options)
    try:
        yield plane
    finally:
        await plane.stop()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def legacy_token(state_dir: str, ns: str, sa: str) -> str:
    """A token as issued before the proxy_type claim existed, signed with serve's key."""
    key = serialization.load_pem_private_key((Path(state_dir) / TOKEN_KEY).read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    now = int(time.time())
    claims = {
        "iss": "meshplane",
        "aud": "meshplane",
        "sub": f"system:serviceaccount:{ns}:{sa}",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    }
    head = _b64(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
    signing_input = f"{head}.{_b64(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


async def test_node_type_must_be_the_tokens(
    cp: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "meshplane")
    sidecar_token = token(cp, "alpha", "ingress")  # the default type
    router_token = token(cp, "alpha", "ingress", "router")
    posing_as_gateway = proxy_node("router", "alpha", "ingress")
    posing_as_sidecar = proxy_node("sidecar", "alpha", "ingress")
    denied = grpc.StatusCode.PERMISSION_DENIED
    assert await refused_code(cp, sidecar_token, posing_as_gateway) == denied
    assert await refused_code(cp, router_token, posing_as_sidecar) == denied
    logged = caplog.text
    assert "token is for a sidecar, node is a router" in logged
    assert "token is for a router, node is a sidecar" in logged
    assert posing_as_gateway.id in logged
    assert sidecar_token not in logged and router_token not in logged


async def test_only_a_router_token_gets_the_gateway_credential(cp: ControlPlane) -> None:
    router = await sotw_secrets(cp, "router", "alpha", "ingress")
    assert "kubernetes://gw-cred" in router
    sidecar = await sotw_secrets(cp, "sidecar", "alpha", "ingress")
    assert "kubernetes://gw-cred" in ASKED
    assert set(sidecar) == {"default"}  # its own certificate, never a gateway's


async def test_token_without_the_claim_is_a_sidecars(cp: ControlPlane) -> None:
    state = cp.options.state_dir
    old = legacy_token(state, "alpha", "ingress")
    assert TokenSigner.load_or_create(state).verify(old) == TokenIdentity(
        "alpha", "ingress", "sidecar"
    )
    gateway = proxy_node("router", "alpha", "ingress")
    assert await refused_code(cp, old, gateway) == grpc.StatusCode.PERMISSION_DENIED
    async with tls_channel(cp) as channel, ads(channel, old) as stream:
        node = proxy_node("sidecar", "alpha", "ingress")
        stream.queue.put_nowait(DiscoveryRequest(node=node, type_url=SDS, resource_names=ASKED))
        got = secrets_of(await stream.next())
    assert "default" in got and "kubernetes://gw-cred" not in got


def test_token_command_binds_the_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from meshplane.cli import main

    state = str(tmp_path / "state")
    argv = ["token", "--namespace", "shop", "--service-account", "gw", "--state-dir", state]
    signer = TokenSigner.load_or_create(state)
    assert main([*argv, "--type", "router"]) == 0
    assert signer.verify(capsys.readouterr().out.strip()).proxy_type == "router"
    assert main(argv) == 0
    assert signer.verify(capsys.readouterr().out.strip()).proxy_type == "sidecar"
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--type", "gateway"])
    assert exit_info.value.code == 2
    with pytest.raises(ValueError, match="proxy type"):
        signer.issue("shop", "gw", proxy_type="waypoint")
