"""Run `meshplane serve` as a subprocess for a bench run, and read its CPU and memory from /proc.

The bench measures the control plane as a user runs it: the installed console script on a
config directory, on free loopback ports. Its cost is read from the kernel's accounting
(utime+stime in /proc/PID/stat, the peak resident set VmHWM in /proc/PID/status), which
covers every thread, including gRPC's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MESHPLANE = REPO / ".venv" / "bin" / "meshplane"
_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A loopback port nobody listens on right now (bind to 0, then release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # after "pid (comm) ": state is field 3, utime 14 and stime 15 (1-based in proc(5))
    return (int(fields[11]) + int(fields[12])) / _TICKS


def peak_rss_bytes(pid: int) -> int:
    """Peak resident set size (VmHWM) of process `pid`."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Status and body of a GET (error statuses included; connection errors raise OSError)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()


@dataclass
class ServerProcess:
    """A running `meshplane serve` and where to reach it."""

    process: subprocess.Popen[bytes]
    xds_address: str
    http_address: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def peak_rss_bytes(self) -> int:
        return peak_rss_bytes(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def wait_ready(self, timeout: float) -> bool:
        """Poll /ready until it answers 200 (bounded); False if it never did or the process died."""
        deadline = time.monotonic() + timeout
        url = f"http://{self.http_address}/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(OSError):
                status, _ = await asyncio.to_thread(http_get, url)
                if status == 200:
                    return True
            await asyncio.sleep(0.1)
        return False

    async def syncz_summary(self) -> dict[str, Any]:
        """The server's own view from /debug/syncz: proxies, and per type a count per status."""
        try:
            status, body = await asyncio.to_thread(
                http_get, f"http://{self.http_address}/debug/syncz", 10.0
            )
            rows = json.loads(body) if status == 200 else None
        except (OSError, ValueError) as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        if not isinstance(rows, list):
            return {"error": f"/debug/syncz answered {status}"}
        counts: dict[str, dict[str, int]] = {}
        for row in rows:
            for type_name, state in (row.get("types") or {}).items():
                per = counts.setdefault(type_name, {})
                key = str(state.get("status"))
                per[key] = per.get(key, 0) + 1
        return {"proxies": len(rows), "status": counts}

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM by PID, then SIGKILL after `grace` seconds; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(grace)
        return self.process.returncode


def start_server(
    config_dir: Path,
    work_dir: Path,
    meshplane: Path = DEFAULT_MESHPLANE,
    help_text: str = "",
    extra: tuple[str, ...] = (),
) -> ServerProcess:
    """Start `meshplane serve` on `config_dir` with fresh ports; logs go to work_dir/serve.log.

    Options the server's `--help` (`help_text`) does not list are left out, so the bench runs
    on a server that has not grown every option yet.
    """
    xds = f"127.0.0.1:{free_port()}"
    http = f"127.0.0.1:{free_port()}"
    log_path = work_dir / "serve.log"
    command = [str(meshplane), "serve", "--config-dir", str(config_dir)]
    command += ["--xds-address", xds, "--http-address", http]
    if "--xds-tls-address" in help_text:  # its default port may be taken by another session
        command += ["--xds-tls-address", f"127.0.0.1:{free_port()}"]
    if "--state-dir" in help_text:
        command += ["--state-dir", str(work_dir / "state")]
    command += extra
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=work_dir)
    return ServerProcess(process, xds, http, log_path)


def serve_available(meshplane: Path = DEFAULT_MESHPLANE) -> tuple[bool, str]:
    """Whether `meshplane serve --help` runs and names the options the bench needs.

    Returns (True, help text) or (False, why not).
    """
    try:
        result = subprocess.run(
            [str(meshplane), "serve", "--help"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{meshplane} serve --help failed: {exc}"
    text = (result.stdout + result.stderr).decode(errors="replace")
    if result.returncode != 0:
        return False, f"`meshplane serve --help` exited {result.returncode}: {text.strip()[:200]}"
    missing = [o for o in ("--config-dir", "--xds-address", "--http-address") if o not in text]
    if missing:
        return False, f"`meshplane serve` lacks {', '.join(missing)}"
    return True, text
