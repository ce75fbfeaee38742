"""Tiny TCP processes for the namespace tests, and the fixture plumbing to run them by PID.

Each probe is Python source passed with `-c` (so a process running as uid 1337 needs no
readable test file), prints `ready` once it listens, and reports what it saw on stdout.
"""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
from collections.abc import Iterator, Sequence

import pytest

from meshplane.local.netns import PodNetwork, netns_unsupported_reason

# Reads SO_ORIGINAL_DST of each accepted connection (what a REDIRECT rule rewrote) and
# answers with it; with a FORWARD address it also connects there and appends the reply.
CAPTURE_PROBE = r"""
import os, socket, struct, sys
port, forward = int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else ""
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port))
srv.listen(8)
print("ready", flush=True)
while True:
    conn, peer = srv.accept()
    raw = conn.getsockopt(socket.SOL_IP, 80, 16)  # SO_ORIGINAL_DST
    dport, dip = struct.unpack("!H", raw[2:4])[0], socket.inet_ntoa(raw[4:8])
    data = conn.recv(1024).decode()
    reply = f"port={port} uid={os.getuid()} orig={dip}:{dport} got={data}"
    if forward:
        host, fport = forward.rsplit(":", 1)
        with socket.create_connection((host, int(fport)), timeout=5) as up:
            up.sendall(data.encode())
            reply += " | " + up.recv(1024).decode()
    conn.sendall(reply.encode())
    conn.close()
"""

# Resolves a name as any process in the pod would (/etc/hosts through `ip netns exec`),
# connects, sends a message and prints the address used and the answer.
CLIENT_PROBE = r"""
import socket, sys
name, port, msg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ip = socket.gethostbyname(name)
with socket.create_connection((ip, port), timeout=5) as s:
    s.sendall(msg.encode())
    s.shutdown(socket.SHUT_WR)
    chunks = []
    while data := s.recv(4096):
        chunks.append(data)
print(ip, b"".join(chunks).decode())
"""


def require_netns() -> None:
    """Skip the calling test unless namespaces and iptables can be used here."""
    reason = netns_unsupported_reason()
    if reason is not None:
        pytest.skip(f"needs root with ip/iptables/setpriv: {reason}")


@contextlib.contextmanager
def pod_network() -> Iterator[PodNetwork]:
    """A created PodNetwork, torn down afterwards whatever happens."""
    require_netns()
    net = PodNetwork()
    try:
        net.create()
        yield net
    finally:
        net.teardown()


class Processes:
    """Processes started by a test, each stopped by its PID at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, argv: Sequence[str], timeout: float = 10.0) -> subprocess.Popen[str]:
        """Start a probe and wait until it prints `ready`."""
        proc = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            proc.kill()
            _, err = proc.communicate(timeout=5)
            raise AssertionError(f"{argv} did not start: {line!r} {err}")
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=5)


@contextlib.contextmanager
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop_all()


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def run(argv: Sequence[str], timeout: float = 10.0) -> str:
    """Run a command to completion; its stdout, or an assertion naming its stderr."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{argv} exited {done.returncode}: {done.stderr}"
    return done.stdout
