"""Processes for end-to-end tests: `meshplane serve`, Envoy, and tiny HTTP upstreams.

Everything binds loopback ports picked at run time and is stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, host: str | None = None, timeout: float = 2.0) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


def wait_for(what: str, ok: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextlib.contextmanager
def upstream(name: str) -> Iterator[int]:
    """An HTTP server answering every GET with its name; yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


class Proc:
    """A child process with its output in a file, stopped by PID."""

    def __init__(self, name: str, cmd: list[str], logdir: Path) -> None:
        self.log = logdir / f"{name}.log"
        self._out = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._out.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class ControlPlane(Proc):
    def __init__(self, config_dir: Path, logdir: Path) -> None:
        self.xds_port, self.http_port = free_port(), free_port()
        super().__init__(
            "meshplane",
            [
                str(BIN / "meshplane"),
                "serve",
                "--config-dir",
                str(config_dir),
                "--xds-address",
                f"127.0.0.1:{self.xds_port}",
                "--http-address",
                f"127.0.0.1:{self.http_port}",
                "--debounce-ms",
                "50",
            ],
            logdir,
        )
        wait_for("meshplane /ready", lambda: self.get("/ready")[0] == 200)

    def get(self, path: str) -> tuple[int, str]:
        return http_get(f"http://127.0.0.1:{self.http_port}{path}")

    def json(self, path: str) -> object:
        status, body = self.get(path)
        assert status == 200, (path, status, body)
        return json.loads(body)


class Envoy(Proc):
    """A real Envoy bootstrapped by `meshplane bootstrap`."""

    def __init__(
        self,
        cp: ControlPlane,
        logdir: Path,
        *,
        kind: str,
        workload: str,
        namespace: str,
        labels: str,
        delta: bool = False,
    ) -> None:
        self.admin_port = free_port()
        boot = logdir / f"{workload}.json"
        cmd = [
            str(BIN / "meshplane"),
            "bootstrap",
            "--type",
            kind,
            "--workload",
            workload,
            "--namespace",
            namespace,
            "--labels",
            labels,
            "--ip",
            "127.0.0.1",
            "--xds-address",
            f"127.0.0.1:{cp.xds_port}",
            "--admin-port",
            str(self.admin_port),
            "--stats-port",
            "0",
            "--health-port",
            "0",
            "-o",
            str(boot),
        ]
        if delta:
            cmd.append("--delta")
        subprocess.run(cmd, check=True)
        env_bin = str(BIN / "envoy")
        super().__init__(
            workload,
            [
                env_bin,
                "-c",
                str(boot),
                "--use-dynamic-base-id",
                "--drain-time-s",
                "1",
                "-l",
                "warning",
            ],
            logdir,
        )
        self.id_prefix = f"{kind}~127.0.0.1~{workload}.{namespace}~"

    def stats(self) -> dict[str, str]:
        status, body = http_get(f"http://127.0.0.1:{self.admin_port}/stats")
        if status != 200:
            return {}
        return dict(line.split(": ", 1) for line in body.splitlines() if ": " in line)

    def synced(self, cp: ControlPlane) -> bool:
        rows = cp.json("/debug/syncz")
        assert isinstance(rows, list)
        for row in rows:
            if row["proxy"].startswith(self.id_prefix):
                kinds = ("cds", "eds", "lds", "rds")
                return all(row["types"][t]["status"] == "SYNCED" for t in kinds)
        return False

    def rejected(self) -> int:
        return sum(int(v) for k, v in self.stats().items() if k.endswith("update_rejected"))


def write_atomically(path: Path, text: str) -> None:
    """Write then rename into place, as editors and deploy tools do."""
    tmp = path.with_suffix(".tmp~")
    tmp.write_text(text)
    os.replace(tmp, path)
