"""Run `meshplane up` (or the same apps with no mesh) for bench/issue5.py, and read the
processes' memory and CPU from /proc.

`up` is run as a user runs it: the console script on a copy of the example, its stdout read
for the `mesh ready` line. Its processes are found as its children (the control plane, each
app, each Envoy: `ip netns exec` and `setpriv` exec, so in REDIRECT mode the child's PID is
the Envoy's or the app's) and named from their command lines. The no-mesh baseline runs the
bookinfo apps on loopback ports calling each other directly (`bookinfo_app --direct`).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.server import DEFAULT_MESHPLANE, REPO, cpu_seconds, free_port, http_get
from meshplane.local.netns import DEFAULT_STATE_DIR, NODE_SUFFIX

__all__ = [
    "NoMesh",
    "UpRun",
    "cpu_by_name",
    "listen_drops",
    "machine_busy_s",
    "mesh_processes",
    "node_netns_of",
    "rss_kib",
    "start_no_mesh",
    "start_up",
    "wait_for_no_other_up",
    "wait_for_quiet",
]

_TICKS = os.sysconf("SC_CLK_TCK")
READY = re.compile(r"^mesh ready: (\S+)")
REPORTED = re.compile(r"ready in ([\d.]+)s")


def rss_kib(pid: int) -> int:
    """Resident set size now (VmRSS) of `pid`, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (from /proc/*/stat)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
                kids.append(int(stat.parent.name))
    return sorted(kids)


def process_name(pid: int) -> str:
    """A readable name from the command line: `envoy NAME`, `app SERVICE-VERSION`, ..."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    if any(Path(a).name == "envoy" for a in argv) and "-c" in argv:
        config = Path(argv[argv.index("-c") + 1]).name
        return "envoy " + config.removesuffix(".envoy.json")
    if "meshplane.local.bookinfo_app" in argv:
        service = argv[argv.index("--service") + 1]
        version = argv[argv.index("--version") + 1] if "--version" in argv else "v1"
        return f"app {service}-{version}"
    if "serve" in argv and any(Path(a).name == "meshplane" for a in argv):
        return "control plane"
    if "meshplane.local.zipkin" in argv:
        return "zipkin collector"
    return Path(argv[0]).name


def mesh_processes(up_pid: int) -> dict[str, int]:
    """name -> PID of every process `up` started, plus `up` itself."""
    found = {process_name(pid): pid for pid in children_of(up_pid)}
    found["up"] = up_pid
    return dict(sorted(found.items()))


def cpu_by_name(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process (vanished ones are left out)."""
    out = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            out[name] = cpu_seconds(pid)
    return out


def machine_busy_s() -> float:
    """CPU seconds all cores have spent not idle since boot (/proc/stat), any process's."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICKS


def _listen_drops_in(netstat: Path) -> int:
    lines = netstat.read_text().splitlines()
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            return int(dict(zip(head.split(), values.split(), strict=True))["ListenDrops"])
    return 0


def listen_drops(pids: dict[str, int]) -> int:
    """SYNs dropped because a listen queue was full (TcpExt ListenDrops), summed over this
    process's network namespace and those of `pids` (REDIRECT pods have their own).

    Python's socketserver listens with a backlog of 5; at many connections a new one can
    be dropped and retried by the client a second later, which shows in the tail latency.
    """
    seen = {os.readlink("/proc/self/ns/net")}
    total = _listen_drops_in(Path("/proc/self/net/netstat"))
    for pid in pids.values():
        with contextlib.suppress(OSError):
            netns = os.readlink(f"/proc/{pid}/ns/net")
            if netns not in seen:
                seen.add(netns)
                total += _listen_drops_in(Path(f"/proc/{pid}/net/netstat"))
    return total


def wait_for_quiet(limit_pct: float = 30.0, timeout: float = 20.0) -> float:
    """Wait (bounded) for a second in which the whole machine is under `limit_pct` busy.

    Other test sessions may share these cores; a load run started while they work measures
    them too. Returns the busy share of the last second sampled (% of one core).
    """
    deadline = time.monotonic() + timeout
    while True:
        before, started = machine_busy_s(), time.monotonic()
        time.sleep(1.0)
        busy = (machine_busy_s() - before) / (time.monotonic() - started) * 100
        if busy < limit_pct or time.monotonic() > deadline:
            return busy


def node_netns_of(up_pid: int) -> str | None:
    """The node namespace of a REDIRECT `up` (its run's state dir names the owner PID)."""
    for owner in DEFAULT_STATE_DIR.glob("*/owner"):
        with contextlib.suppress(OSError, ValueError):
            if int(owner.read_text().split()[0]) == up_pid:
                return f"{owner.parent.name}-{NODE_SUFFIX}"
    return None


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_no_other_up(port: int = 8080, timeout: float = 300.0) -> None:
    """Wait (bounded) until no other `meshplane up` runs and `port` is free."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        other = subprocess.run(["pgrep", "-f", "meshplane up"], capture_output=True, text=True)
        if not other.stdout.strip() and _port_free(port):
            return
        time.sleep(2)
    raise RuntimeError(f"another `meshplane up` (or port {port}) is still busy after {timeout}s")


@dataclass
class UpRun:
    """One `meshplane up` process and what it printed."""

    proc: subprocess.Popen[str]
    started: float
    lines: list[str] = field(default_factory=list)
    ready_at: float | None = None
    reported_s: float | None = None
    url: str = ""
    _reader: threading.Thread | None = None

    @property
    def ready_s(self) -> float:
        """Wall seconds from starting the process to its `mesh ready` line."""
        if self.ready_at is None:
            raise RuntimeError("not ready")
        return self.ready_at - self.started

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            now = time.monotonic()
            self.lines.append(line.rstrip("\n"))
            if (match := READY.match(line)) and self.ready_at is None:
                self.ready_at, self.url = now, match.group(1)
            if (match := REPORTED.search(line)) and self.reported_s is None:
                self.reported_s = float(match.group(1))

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until `mesh ready` and up's own `ready in Xs` line were printed (bounded)."""
        deadline = time.monotonic() + timeout
        while self.reported_s is None and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        if self.ready_at is None or self.reported_s is None:
            raise RuntimeError("`meshplane up` did not get ready:\n" + "\n".join(self.lines))

    def stop(self, timeout: float = 60.0) -> tuple[int, float]:
        """SIGTERM `up` (it stops its children and deletes its namespaces) and wait for it.

        Returns (exit code, seconds the teardown took); SIGKILL after `timeout`.
        """
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        return int(self.proc.returncode), time.monotonic() - started


def start_up(example: Path, workdir: Path, mode: str) -> UpRun:
    """Start `meshplane up EXAMPLE` in `mode`; the clock starts just before the spawn."""
    env = {**os.environ, "INTERCEPTION_MODE": mode, "PYTHONUNBUFFERED": "1"}
    argv = [str(DEFAULT_MESHPLANE), "up", str(example), "--workdir", str(workdir)]
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=REPO,
        start_new_session=True,  # a Ctrl-C of the bench must not also signal `up` directly
    )
    run = UpRun(proc, started)
    run._reader = threading.Thread(target=run._read, daemon=True)
    run._reader.start()
    return run


@dataclass
class NoMesh:
    """The bookinfo apps with no proxy anywhere: productpage calls details and reviews v3,
    reviews v3 calls ratings, each straight at the other's loopback port."""

    procs: dict[str, subprocess.Popen[bytes]]
    url: str

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def start_no_mesh(logdir: Path, timeout: float = 20.0) -> NoMesh:
    """Start ratings, details, reviews v3 and productpage on free loopback ports."""
    ports = {s: free_port() for s in ("ratings", "details", "reviews", "productpage")}
    calls = {
        "reviews": f"ratings=127.0.0.1:{ports['ratings']}",
        "productpage": f"details=127.0.0.1:{ports['details']},reviews=127.0.0.1:{ports['reviews']}",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("POD_")}
    apps = NoMesh({}, f"http://127.0.0.1:{ports['productpage']}/productpage")
    try:
        for service, port in ports.items():
            version = "v3" if service == "reviews" else "v1"
            argv = [sys.executable, "-m", "meshplane.local.bookinfo_app", "--service", service]
            argv += ["--version", version, "--port", str(port), "--bind", "127.0.0.1"]
            if service in calls:
                argv += ["--direct", calls[service]]
            with (logdir / f"{service}.log").open("wb") as log:
                apps.procs[f"app {service}-{version}"] = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
                )
        deadline = time.monotonic() + timeout
        for port in ports.values():
            while not _answers(f"http://127.0.0.1:{port}/health"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"a bookinfo app on port {port} did not start")
                time.sleep(0.1)
    except BaseException:
        apps.stop()
        raise
    return apps


def _answers(url: str) -> bool:
    try:
        return http_get(url, 1.0)[0] == 200
    except OSError:
        return False
