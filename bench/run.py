"""`make bench`: measure meshplane serving a synthetic mesh to many simulated proxies.

For each protocol (SotW, Delta) and each proxy count P, a fresh `meshplane serve` is started
on a generated mesh of S services; P load-client proxies connect at once (first config), then
one endpoint moves and one VirtualService changes weights. Server CPU seconds, peak RSS and
bytes sent are read for the run. Results go to bench/results/RESULTS.md and RESULTS.json
(`--quick`: small numbers, written as QUICK.md/QUICK.json so real results stay).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.adsload import PROTOCOLS, LoadClient
from bench.meshgen import MeshSpec, generate
from bench.scenarios import (
    endpoint_change,
    first_config,
    settle,
    virtual_service_change,
)
from bench.server import DEFAULT_MESHPLANE, REPO, ServerProcess, serve_available, start_server

_FULL: dict[str, Any] = {
    "services": 1000,
    "proxies": "100,500,1000",
    "ready_timeout": 300.0,
    "config_timeout": 600.0,
    "change_timeout": 120.0,
}
_QUICK: dict[str, Any] = {
    "services": 50,
    "proxies": "5,20",
    "ready_timeout": 60.0,
    "config_timeout": 60.0,
    "change_timeout": 30.0,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--services", type=int, help="S (default 1000; --quick 50)")
    parser.add_argument("--versions", type=int, default=2)
    parser.add_argument("--endpoints", type=int, default=3, help="endpoints per version")
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument(
        "--sidecar-scope", action="store_true", help="a Sidecar per namespace importing ./*"
    )
    parser.add_argument("--proxies", help="comma-separated P values (default 100,500,1000)")
    parser.add_argument("--protocol", choices=[*PROTOCOLS, "both"], default="both")
    parser.add_argument("--streams-per-channel", type=int, default=50)
    parser.add_argument("--ready-timeout", type=float, help="seconds (default 300)")
    parser.add_argument("--config-timeout", type=float, help="first config (default 600)")
    parser.add_argument("--change-timeout", type=float, help="seconds (default 120)")
    parser.add_argument("--meshplane", type=Path, default=DEFAULT_MESHPLANE)
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument(
        "--quick", action="store_true", help="small defaults: S=50, P=5,20, 60/60/30 s timeouts"
    )
    args = parser.parse_args(argv)
    defaults = _QUICK if args.quick else _FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.proxy_counts = [int(p) for p in args.proxies.split(",") if p.strip()]
    args.protocols = list(PROTOCOLS) if args.protocol == "both" else [args.protocol]
    return args


async def _scenarios(
    server: ServerProcess,
    client: LoadClient,
    mesh_dir: Path,
    spec: MeshSpec,
    serial: int,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    phases = [await first_config(client, server, args.config_timeout)]
    if not phases[0].converged:
        return [p.as_dict() for p in phases]
    await settle(client)
    # a different service per run, so every edit is a real change of the files on disk
    index = (spec.services // 2 + 2 * serial) % spec.services
    phases.append(
        await endpoint_change(client, server, mesh_dir, spec, index, serial, args.change_timeout)
    )
    await settle(client)
    phases.append(
        await virtual_service_change(
            client, server, mesh_dir, spec, (index + 1) % spec.services, args.change_timeout
        )
    )
    await settle(client)
    return [p.as_dict() for p in phases]


async def run_one(
    mesh_dir: Path, spec: MeshSpec, protocol: str, proxies: int, serial: int, args: Any
) -> dict[str, Any]:
    """One fresh server, one client of `proxies` streams, the three scenarios."""
    result: dict[str, Any] = {"protocol": protocol, "proxies": proxies, "phases": []}
    with tempfile.TemporaryDirectory(prefix="meshplane-bench-") as work:
        server = start_server(mesh_dir, Path(work), args.meshplane, args.help_text)
        try:
            started = time.monotonic()
            if not await server.wait_ready(args.ready_timeout):
                result["error"] = "server never became ready"
                result["log_tail"] = server.log_tail()
                return result
            result["ready_s"] = round(time.monotonic() - started, 3)
            result["server_cpu_at_ready_s"] = round(server.cpu_seconds(), 3)
            client = LoadClient(
                server.xds_address,
                proxies,
                protocol,
                namespaces=spec.namespaces,
                streams_per_channel=args.streams_per_channel,
            )
            try:
                result["phases"] = await _scenarios(server, client, mesh_dir, spec, serial, args)
                result["stream_errors"] = client.errors()[:10]
                decoder = client.decoder
                result["client_responses_decoded"] = {"shared": decoder.hits, "own": decoder.misses}
                result["syncz"] = await server.syncz_summary()
            finally:
                await client.stop()
            result["server_cpu_s"] = round(server.cpu_seconds(), 3)
            result["server_peak_rss_bytes"] = server.peak_rss_bytes()
        finally:
            result["exit_code"] = server.stop()
    return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    spec = MeshSpec(
        args.services, args.versions, args.endpoints, args.namespaces, args.sidecar_scope
    )
    runs = []
    with tempfile.TemporaryDirectory(prefix="meshplane-bench-mesh-") as tmp:
        mesh_dir = Path(tmp) / "mesh"
        files = generate(spec, mesh_dir)
        serial = 0
        for protocol in args.protocols:
            for proxies in args.proxy_counts:
                serial += 1
                print(f"bench: {protocol} P={proxies} S={spec.services} ...", flush=True)
                run = await run_one(mesh_dir, spec, protocol, proxies, serial, args)
                print(f"bench:   {_brief(run)}", flush=True)
                runs.append(run)
    return {
        "client_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": report.machine(),
        "mesh": {
            "services": spec.services,
            "versions": spec.versions,
            "endpoints": spec.endpoints,
            "namespaces": spec.namespaces,
            "sidecar_scope": spec.sidecar_scope,
            "files": files,
        },
        "streams_per_channel": args.streams_per_channel,
        "runs": runs,
    }


def _brief(run: dict[str, Any]) -> str:
    if run.get("error"):
        return f"error: {run['error']}"
    parts = [f"ready {run['ready_s']}s"]
    for p in run["phases"]:
        done = (
            f"{p['last_s']}s" if p["converged"] else f"NOT converged {p['reached']}/{p['affected']}"
        )
        parts.append(f"{p['name']} {done}")
    parts.append(f"cpu {run.get('server_cpu_s')}s")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ok, help_text = serve_available(args.meshplane)
    if not ok:
        print(f"bench: cannot run: {help_text}", file=sys.stderr)
        return 2
    args.help_text = help_text
    results = asyncio.run(main_async(args))
    md, js = report.write(results, args.results_dir, "QUICK" if args.quick else "RESULTS")
    print(f"bench: wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
