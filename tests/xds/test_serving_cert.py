"""The TLS xDS port's own certificate is renewed at half life: new handshakes get the new
one, a stream opened before keeps working (real grpc.aio TLS, a short TTL)."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from cryptography import x509

from meshplane.ca.root import CertificateAuthority, self_signed_root
from meshplane.xds.serving_cert import ServingCert

TTL = datetime.timedelta(seconds=3)  # renewed after about 1.5 s
SERVICE = "test.Echo"


def peer_serial(port: int, root_pem: bytes) -> int:
    """Serial of the certificate a fresh TLS handshake with the port is answered with."""
    ctx = ssl.create_default_context(cadata=root_pem.decode())
    ctx.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return int(x509.load_der_x509_certificate(der).serial_number)


@pytest.fixture
async def served() -> AsyncIterator[tuple[ServingCert, int, CertificateAuthority]]:
    ca = self_signed_root("cluster.local")
    serving = ServingCert(lambda: ca, ["localhost", "127.0.0.1"], TTL)

    async def echo(request: bytes, context: Any) -> bytes:
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
            )
        ]
    )
    port = server.add_secure_port("127.0.0.1:0", serving.credentials())
    await server.start()
    task = asyncio.create_task(serving.run())
    try:
        yield serving, port, ca
    finally:
        task.cancel()
        await server.stop(None)


async def wait_until(what: str, ok: Callable[[], Awaitable[bool]], timeout: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await ok():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_the_port_certificate_is_renewed_at_half_life_and_open_channels_stay(
    served: tuple[ServingCert, int, CertificateAuthority],
) -> None:
    serving, port, ca = served
    first = serving.current
    assert await asyncio.to_thread(peer_serial, port, ca.root_pem) == first.serial
    creds = grpc.ssl_channel_credentials(root_certificates=ca.root_pem)
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        call = channel.unary_unary(f"/{SERVICE}/Echo")
        assert await call(b"before") == b"before"

        async def renewed() -> bool:
            serial = await asyncio.to_thread(peer_serial, port, ca.root_pem)
            return serial != first.serial and serial == serving.current.serial

        await wait_until("a renewed certificate on new handshakes", renewed)
        assert serving.current.not_after > first.not_after
        assert await call(b"after") == b"after"  # the channel opened before still works


async def test_an_outside_renewal_reaches_the_next_handshake(
    served: tuple[ServingCert, int, CertificateAuthority],
) -> None:
    serving, port, ca = served
    cert = serving.renew()
    assert await asyncio.to_thread(peer_serial, port, ca.root_pem) == cert.serial
