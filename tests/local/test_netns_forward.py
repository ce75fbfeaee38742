"""The cross-namespace TCP forwarder on real sockets: in one namespace, then across them."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from collections.abc import AsyncIterator

import pytest
from netns_probes import CAPTURE_PROBE, CLIENT_PROBE, pod_network, processes, python, run

from meshplane.local.iptables import apply_nat_rules
from meshplane.local.netns_forward import Endpoint, TcpForwarder, socket_in_netns, start_forwarder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _digest_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads to EOF, answers with the SHA-256 of what it read followed by 1 MiB of data."""
    digest = hashlib.sha256()
    while data := await reader.read(65536):
        digest.update(data)
    writer.write(digest.hexdigest().encode() + b"\n" + b"x" * (1 << 20))
    await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def _server(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[int]:
    server = await asyncio.start_server(_digest_server, host, port)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _exchange(port: int, payload: bytes, host: str = "127.0.0.1") -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_forwards_both_ways_with_half_close() -> None:
    payload = os.urandom(3 << 20)
    async with _server() as target_port:
        fwd = await start_forwarder(Endpoint("127.0.0.1", 0), Endpoint("127.0.0.1", target_port))
        try:
            answers = await asyncio.gather(*(_exchange(fwd.port, payload) for _ in range(3)))
        finally:
            await fwd.stop()
    expected = hashlib.sha256(payload).hexdigest().encode() + b"\n" + b"x" * (1 << 20)
    assert answers == [expected] * 3


async def test_target_down_refuses_then_recovers() -> None:
    target_port = _free_port()
    fwd = await start_forwarder(Endpoint("127.0.0.1", 0), Endpoint("127.0.0.1", target_port))
    try:
        # Nothing listens: the client's connection is closed without data.
        assert await _exchange(fwd.port, b"anyone?") == b""
        async with _server(port=target_port):
            answer = await _exchange(fwd.port, b"hi")
        assert answer.startswith(hashlib.sha256(b"hi").hexdigest().encode())
    finally:
        await fwd.stop()


async def test_stop_closes_open_connections() -> None:
    upstream_open = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_open.set()
        await reader.read()  # until the forwarder closes its side
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    fwd = TcpForwarder(Endpoint("127.0.0.1", 0), Endpoint(*server.sockets[0].getsockname()))
    try:
        port = await fwd.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"half a request")
        await asyncio.wait_for(upstream_open.wait(), 5)
        await fwd.stop()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
    finally:
        await fwd.stop()
        server.close()
        await server.wait_closed()


async def test_across_namespaces_both_directions() -> None:
    with pod_network() as net, processes() as procs:
        pod = net.add_pod("fwd")
        apply_nat_rules(pod.netns)
        procs.start(net.exec_prefix(pod, uid=1337) + python(CAPTURE_PROBE, "15006"))
        # The browser's direction: root-namespace loopback -> a pod (captured at its 15006).
        inward = await start_forwarder(
            Endpoint("127.0.0.1", 0), Endpoint(pod.ip, 8080, net.node_netns)
        )
        async with _server() as cp_port:
            # The control plane's direction: the bridge IP in the node namespace -> root
            # loopback, reached from the pod by the proxy's uid (not captured outbound).
            outward = await start_forwarder(
                Endpoint(net.bridge_ip, 0, net.node_netns), Endpoint("127.0.0.1", cp_port)
            )
            try:
                answer = await _exchange(inward.port, b"from the browser")
                client = net.exec_prefix(pod, uid=1337) + python(
                    CLIENT_PROBE, net.bridge_ip, str(outward.port), "to the control plane"
                )
                out = await asyncio.to_thread(run, client)
            finally:
                await inward.stop()
                await outward.stop()
    assert answer == f"port=15006 uid=1337 orig={pod.ip}:8080 got=from the browser".encode()
    digest = hashlib.sha256(b"to the control plane").hexdigest()
    assert out.startswith(f"{net.bridge_ip} {digest}\n")


def test_socket_in_netns_lives_there() -> None:
    home = os.readlink("/proc/thread-self/ns/net")
    with pod_network() as net:
        pod = net.add_pod("sock")
        with socket_in_netns(pod.netns) as sock:
            sock.bind((pod.ip, 0))  # the pod's address exists only in its namespace
        with socket.socket() as sock, pytest.raises(OSError):
            sock.bind((pod.ip, 0))
    # The calling thread never left its namespace.
    assert os.readlink("/proc/thread-self/ns/net") == home
