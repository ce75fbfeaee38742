"""Drive HTTP load with `wrk` and read its report, for bench/issue5.py.

wrk (C, event loop, keep-alive) costs far less CPU per request than a Python client would,
which matters when the client shares two cores with the mesh it measures. Its `--latency`
report gives the percentiles; its own CPU time comes from wait4's rusage, so the report can
say what the client took from the machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LoadResult", "parse_wrk", "run_wrk", "wrk_argv", "wrk_available"]

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_DURATION = re.compile(r"^\s*([\d.]+)(us|ms|s|m)\s*$")
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+(?:us|ms|s|m))\s*$", re.M)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+(?:us|ms|s|m)),", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass(frozen=True)
class LoadResult:
    """One wrk run: throughput, latency percentiles, failures, and the client's CPU."""

    connections: int
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    client_cpu_s: float = 0.0

    @property
    def failed(self) -> int:
        return self.non_2xx + self.socket_errors


def to_ms(text: str) -> float:
    """wrk's `812.00us` / `1.23ms` / `2.01s` as milliseconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_wrk(text: str, connections: int, client_cpu_s: float = 0.0) -> LoadResult:
    """The numbers of a `wrk --latency` report (ValueError if it has none)."""
    percentiles = {int(p): to_ms(v) for p, v in _PERCENTILE.findall(text)}
    requests = _REQUESTS.search(text)
    rps = _RPS.search(text)
    if requests is None or rps is None or set(percentiles) != {50, 75, 90, 99}:
        raise ValueError(f"not a wrk --latency report:\n{text}")
    non_2xx = _NON_2XX.search(text)
    errors = _SOCKET_ERRORS.search(text)
    return LoadResult(
        connections=connections,
        requests=int(requests.group(1)),
        duration_s=to_ms(requests.group(2)) / 1000,
        rps=float(rps.group(1)),
        p50_ms=percentiles[50],
        p75_ms=percentiles[75],
        p90_ms=percentiles[90],
        p99_ms=percentiles[99],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        client_cpu_s=client_cpu_s,
    )


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_argv(url: str, connections: int, duration_s: float) -> list[str]:
    """The wrk command line: one thread per core (at most one per connection)."""
    threads = max(1, min(os.cpu_count() or 1, connections))
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s:g}s",
        "--timeout",
        "10s",
        "--latency",
        url,
    ]


def run_wrk(
    url: str, connections: int, duration_s: float, prefix: Sequence[str] = ()
) -> LoadResult:
    """Run wrk against `url` (under `prefix`, e.g. `ip netns exec NS`) and parse its report.

    wrk stops itself after `duration_s`; the wait below is bounded in case it hangs.
    """
    argv = [*prefix, *wrk_argv(url, connections, duration_s)]
    before = _children_cpu_s()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=duration_s + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"{' '.join(argv)}: did not finish") from None
    # Only wrk is reaped meanwhile (`ip netns exec` execs it): the delta is wrk's CPU.
    client_cpu = _children_cpu_s() - before
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{out}")
    return parse_wrk(out, connections, client_cpu)


def _children_cpu_s() -> float:
    """User + system CPU seconds of every child this process has reaped."""
    times = os.times()
    return times.children_user + times.children_system
