"""The three measured scenarios: full first config, one endpoint move, one traffic shift.

Each scenario starts its clock, acts, waits (bounded) for every affected simulated proxy to
ACK the result, and records per-proxy latencies together with what the phase cost: server
and client CPU seconds and the bytes and responses the server sent. A wait that times out
is recorded as not converged, with how many proxies did get there, instead of hanging.
"""

from __future__ import annotations

import asyncio
import math
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.adsload import LoadClient
from bench.meshgen import (
    MeshSpec,
    default_weights,
    edit_address,
    host,
    move_endpoint,
    shift_weights,
    subset_cluster,
)
from bench.proxies import SimulatedProxy
from bench.server import ServerProcess
from bench.xdsinfo import SHORT, Probe, endpoint_probe, weights_probe


def client_cpu_seconds() -> float:
    """CPU seconds of this process (the load client and the runner, all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return round(ordered[rank], 4)


@dataclass
class Phase:
    """The outcome and cost of one scenario."""

    name: str
    converged: bool
    affected: int
    reached: int
    last_s: float | None
    p50_s: float | None
    p90_s: float | None
    server_cpu_s: float
    client_cpu_s: float
    bytes: dict[str, int] = field(default_factory=dict)
    responses: dict[str, int] = field(default_factory=dict)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Meter:
    """Counts what a phase cost, between `__init__` and `finish`."""

    def __init__(self, client: LoadClient, server: ServerProcess) -> None:
        self.client, self.server = client, server
        self.server_cpu = server.cpu_seconds()
        self.client_cpu = client_cpu_seconds()
        self.bytes = dict(client.bytes_by_type)
        self.responses = dict(client.responses_by_type)

    def finish(self, name: str, converged: bool, latencies: list[float], affected: int) -> Phase:
        client = self.client
        return Phase(
            name=name,
            converged=converged,
            affected=affected,
            reached=len(latencies),
            last_s=round(max(latencies), 4) if latencies else None,
            p50_s=percentile(latencies, 50),
            p90_s=percentile(latencies, 90),
            server_cpu_s=round(self.server.cpu_seconds() - self.server_cpu, 3),
            client_cpu_s=round(client_cpu_seconds() - self.client_cpu, 3),
            bytes={SHORT[t]: n - self.bytes[t] for t, n in client.bytes_by_type.items()},
            responses={
                SHORT[t]: n - self.responses[t] for t, n in client.responses_by_type.items()
            },
        )


async def first_config(client: LoadClient, server: ServerProcess, timeout: float) -> Phase:
    """Connect every proxy at once; time until each has ACKed its complete config."""
    meter = Meter(client, server)
    await client.start()
    converged = await client.wait_configured(timeout)
    latencies = [
        p.configured_at - client.started_at for p in client.proxies if p.configured_at is not None
    ]
    phase = meter.finish("first_config", converged, latencies, len(client.proxies))
    if not converged:
        phase.note = _first_missing(client)
    return phase


def _first_missing(client: LoadClient) -> str:
    for proxy in client.proxies:
        if proxy.configured_at is None:
            if proxy.error:
                return f"load-{proxy.index}: {proxy.error}"
            acks = {SHORT[t]: s.acks for t, s in proxy.types.items()}
            waiting = {
                SHORT[t]: sorted(s.subscribed - set(s.held) - s.absent)[:3]
                for t, s in proxy.types.items()
            }
            return f"load-{proxy.index} not configured: acks {acks}, waiting for {waiting}"
    return ""


async def settle(client: LoadClient, quiet: float = 1.0, timeout: float = 15.0) -> bool:
    """Wait until no response has arrived for `quiet` seconds (bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    last, since = sum(client.responses_by_type.values()), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now = sum(client.responses_by_type.values())
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return True
    return False


async def _change(
    name: str,
    client: LoadClient,
    server: ServerProcess,
    probe: Probe,
    edit: Any,
    timeout: float,
) -> Phase:
    affected: list[SimulatedProxy] = client.arm(probe)
    meter = Meter(client, server)
    started = time.monotonic()
    edit()
    converged = bool(affected) and await client.wait_probe(affected, timeout)
    if not affected:  # still let the server react, so the cost of the edit is measured
        await settle(client, timeout=min(timeout, 10.0))
    latencies = [p.probe_hit_at - started for p in affected if p.probe_hit_at is not None]
    phase = meter.finish(name, converged, latencies, len(affected))
    phase.note = probe.description if affected else f"no proxy holds it: {probe.description}"
    return phase


async def endpoint_change(
    client: LoadClient,
    server: ServerProcess,
    mesh_dir: Path,
    spec: MeshSpec,
    index: int,
    serial: int,
    timeout: float,
) -> Phase:
    """Move one endpoint of service `index`; time until every proxy that has its cluster ACKed
    the EDS update carrying the new address."""
    address = edit_address(serial)
    probe = endpoint_probe(subset_cluster(spec, index, 0), address)

    def edit() -> None:
        move_endpoint(mesh_dir, spec, index, address)

    return await _change("endpoint_change", client, server, probe, edit, timeout)


def shifted_weights(versions: int) -> list[int]:
    """A split different from the generated one: most traffic to the last version."""
    if versions == 1:
        return [100]
    weights = [10] * (versions - 1) + [100 - 10 * (versions - 1)]
    return weights if weights != default_weights(versions) else list(reversed(weights))


async def virtual_service_change(
    client: LoadClient,
    server: ServerProcess,
    mesh_dir: Path,
    spec: MeshSpec,
    index: int,
    timeout: float,
) -> Phase:
    """Change the weights of service `index`'s VirtualService; time until every proxy whose
    routes serve that host ACKed the RDS update carrying the new split."""
    weights = shifted_weights(spec.versions)
    expected = {subset_cluster(spec, index, v): w for v, w in enumerate(weights)}
    probe = weights_probe(host(spec, index), expected)

    def edit() -> None:
        shift_weights(mesh_dir, spec, index, weights)

    return await _change("virtual_service_change", client, server, probe, edit, timeout)
