"""TCP forwarding across network namespaces, for `meshplane up` in REDIRECT mode.

Pods live in their own network namespaces while the control plane, the Zipkin collector and
the user's browser stay in the root one. Nothing may route between them (the root namespace
is never touched), so `up` bridges the few ports that must cross: the browser's
127.0.0.1:8080 to the ingress gateway pod, and the node namespace's bridge IP (15012, 15014,
9411) to the control plane on root-namespace loopback. A socket belongs to the namespace it
was created in, whatever thread uses it later; so a short-lived thread enters the namespace
(libc `setns`, which Python 3.11 lacks) only to create the socket, and asyncio carries the
bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Endpoint", "TcpForwarder", "socket_in_netns", "start_forwarder"]

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = Path("/run/netns")
CHUNK = 64 * 1024
CONNECT_TIMEOUT_S = 5.0
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Endpoint:
    """An address in a network namespace (`netns`: a name under /run/netns, a path, or None
    for the namespace this process runs in)."""

    host: str
    port: int
    netns: str | None = None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}@{self.netns or 'self'}"


def _netns_path(netns: str) -> str:
    return netns if "/" in netns else str(NETNS_RUN_DIR / netns)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _tcp_socket(family: int) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP (and
    # accepted sockets inherit the listener's), and without it Nagle meets delayed ACKs -
    # 40 ms stalls on every small write of a kept-alive connection.
    return socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)


def _create_in(netns: str, family: int, result: list[socket.socket | BaseException]) -> None:
    """Thread body: enter `netns`, create a TCP socket, go back; the thread then ends, so it
    never runs anything else in the wrong namespace even if going back failed."""
    try:
        with open("/proc/thread-self/ns/net", "rb") as home, open(_netns_path(netns), "rb") as ns:
            _setns(ns.fileno())
            try:
                result.append(_tcp_socket(family))
            finally:
                _setns(home.fileno())
    except BaseException as exc:
        result.append(exc)


def socket_in_netns(netns: str | None, family: int = socket.AF_INET) -> socket.socket:
    """A new TCP socket that lives in `netns` (None: this process's namespace)."""
    if netns is None:
        return _tcp_socket(family)
    result: list[socket.socket | BaseException] = []
    worker = threading.Thread(target=_create_in, args=(netns, family, result), daemon=True)
    worker.start()
    worker.join()
    # Going back failed after the socket was made: the socket is still good.
    sock = next((r for r in result if isinstance(r, socket.socket)), None)
    if sock is not None:
        return sock
    errors = [r for r in result if isinstance(r, BaseException)]
    error = errors[0] if errors else RuntimeError("socket thread ended without a result")
    raise OSError(f"cannot create a socket in network namespace {netns}: {error}") from error


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until EOF, then half-close; `drain` bounds what is buffered."""
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof() and not writer.is_closing():
        writer.write_eof()


class TcpForwarder:
    """Listens on one Endpoint and forwards every connection to another."""

    def __init__(self, listen: Endpoint, target: Endpoint) -> None:
        self.listen = listen
        self.target = target
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = listen.port

    async def start(self) -> int:
        """Bind and listen; returns the port (useful when `listen.port` is 0)."""
        sock = socket_in_netns(self.listen.netns)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.listen.host, self.listen.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise OSError(f"forwarder cannot listen on {self.listen}: {exc}") from exc
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._accepted, sock=sock, limit=CHUNK)
        host, port = sock.getsockname()[:2]
        log.info("forwarding %s -> %s", Endpoint(host, port, self.listen.netns), self.target)
        return self.port

    async def stop(self) -> None:
        """Stop listening and close every open connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _connect_target(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = socket_in_netns(self.target.netns)
        try:
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            addr = (self.target.host, self.target.port)
            await asyncio.wait_for(loop.sock_connect(sock, addr), CONNECT_TIMEOUT_S)
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock, limit=CHUNK)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            # Also when cancelled (stop) before the target answered: the client is closed.
            await _close(writer)
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await self._connect_target()
        except (OSError, TimeoutError) as exc:
            # The target is down: refuse this client; the next connection tries again.
            log.warning("forwarder %s: %s", self, exc)
            return
        pumps = [
            asyncio.create_task(_pump(reader, up_writer)),
            asyncio.create_task(_pump(up_reader, writer)),
        ]
        try:
            # Each direction ends on its own (half-close); an error in one ends both.
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    log.debug("forwarder %s: connection ended: %s", self, task.exception())
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            await _close(up_writer)

    def __str__(self) -> str:
        return f"{self.listen} -> {self.target}"


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def start_forwarder(listen: Endpoint, target: Endpoint) -> TcpForwarder:
    """A started TcpForwarder from `listen` to `target` (stop it with `await fwd.stop()`)."""
    forwarder = TcpForwarder(listen, target)
    await forwarder.start()
    return forwarder
