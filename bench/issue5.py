"""Issue 5's numbers: what the local mesh (`meshplane up examples/bookinfo`) costs.

    .venv/bin/python -m bench.issue5            # both modes, writes bench/results/ISSUE5.md
    .venv/bin/python -m bench.issue5 --quick    # 1 start-up, 2 s loads, prints only

For each interception mode (REDIRECT, NONE): the wall time from spawning `meshplane up` to
its `mesh ready` line (median of --runs), then, on the last run, wrk load on
GET /productpage (gateway -> productpage -> details, reviews v3 -> ratings; the copy's
VirtualService pins reviews to v3 so ratings is called) at fixed connection counts, the CPU
of every process during each load, and each Envoy's and the control plane's VmRSS after
ready and after the load. The same apps with no mesh at all (`bookinfo_app --direct`) give
the baseline. `up` uses port 8080, so the bench waits while another `up` runs.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from bench.issue5_report import OTHER, ModeRun, Results, Scenario, Settings, render
from bench.server import REPO, http_get
from bench.upmesh import (
    cpu_by_name,
    listen_drops,
    machine_busy_s,
    mesh_processes,
    node_netns_of,
    rss_kib,
    start_no_mesh,
    start_up,
    wait_for_no_other_up,
    wait_for_quiet,
)
from bench.wrkload import run_wrk, wrk_argv, wrk_available
from meshplane.local.pods import REDIRECT_POD_PREFIX

EXAMPLE = REPO / "examples" / "bookinfo"
DEFAULT_OUT = REPO / "bench" / "results" / "ISSUE5.md"
GATEWAY_POD_URL = f"http://{REDIRECT_POD_PREFIX}2:8080/productpage"
WARMUP_S = 2.0


def pin_reviews_to_v3(example: Path) -> None:
    """Rewrite the copy's reviews VirtualService: every request to subset v3."""
    path = example / "virtual-service-reviews.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        if doc.get("kind") == "VirtualService" and doc["metadata"]["name"] == "reviews":
            doc["spec"]["http"] = [
                {"route": [{"destination": {"host": "reviews", "subset": "v3"}}]}
            ]
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def copy_example(dest: Path) -> Path:
    shutil.copytree(EXAMPLE, dest)
    pin_reviews_to_v3(dest)
    return dest


def check_page(url: str, prefix: Sequence[str] = ()) -> None:
    """The page must come from reviews v3 with ratings (red stars): the path under test."""
    if prefix:  # only reachable from inside the node namespace: let wrk prove it in warm-up
        return
    status, body = http_get(url, 5.0)
    text = body.decode(errors="replace")
    if status != 200 or "reviews served by: reviews-v3" not in text or "color:red" not in text:
        raise RuntimeError(f"{url}: not the v3 page with ratings ({status}):\n{text[:500]}")


def rss_all(pids: dict[str, int]) -> dict[str, int]:
    return {name: rss_kib(pid) for name, pid in pids.items()}


def load(scenario: Scenario, pids: dict[str, int], settings: Settings) -> Scenario:
    """Warm up, then one wrk run per connection count, with every process's CPU share."""
    check_page(scenario.url, scenario.prefix)
    warm = run_wrk(scenario.url, max(settings.connections), WARMUP_S, scenario.prefix)
    if warm.requests == 0 or warm.failed == warm.requests:
        raise RuntimeError(f"{scenario.name}: warm-up load got no good response")
    for conns in settings.connections:
        wait_for_quiet()
        drops = listen_drops(pids)
        before, busy, started = cpu_by_name(pids), machine_busy_s(), time.monotonic()
        result = run_wrk(scenario.url, conns, settings.duration_s, scenario.prefix)
        wall = time.monotonic() - started
        after, busy = cpu_by_name(pids), machine_busy_s() - busy
        share = {n: (after[n] - before[n]) / wall * 100 for n in after if n in before}
        share["wrk (client)"] = result.client_cpu_s / wall * 100
        # What else ran on these cores meanwhile (other sessions, kernel threads).
        share[OTHER] = max(0.0, busy / wall * 100 - sum(share.values()))
        scenario.loads.append(result)
        scenario.listen_drops[conns] = listen_drops(pids) - drops
        scenario.cpu_pct[conns] = share
        argv = [*scenario.prefix, *wrk_argv(scenario.url, conns, settings.duration_s)]
        scenario.commands.append(" ".join(argv))
    return scenario


def bench_baseline(settings: Settings, tmp: Path) -> tuple[Scenario, dict[str, int]]:
    logdir = tmp / "no-mesh"
    logdir.mkdir()
    apps = start_no_mesh(logdir)
    try:
        scenario = load(Scenario("no mesh", apps.url), apps.pids(), settings)
        return scenario, rss_all(apps.pids())
    finally:
        apps.stop()


def bench_mode(mode: str, settings: Settings, tmp: Path) -> ModeRun:
    """`settings.runs` start-ups of `mode`; the last one also carries the load."""
    example = copy_example(tmp / f"example-{mode}")
    out = ModeRun(mode)
    for i in range(settings.runs):
        wait_for_no_other_up()
        run = start_up(example, tmp / f"up-{mode}-{i}", mode)
        try:
            run.wait_ready()
            out.ready_s.append(run.ready_s)
            out.reported_s.append(run.reported_s or 0.0)
            if i == settings.runs - 1:
                measure_loaded_mesh(out, run.proc.pid, run.url, settings)
        finally:
            code, took = run.stop()
        out.exit_codes.append(code)
        out.teardown_s.append(took)
    return out


def measure_loaded_mesh(out: ModeRun, up_pid: int, url: str, settings: Settings) -> None:
    pids = mesh_processes(up_pid)
    out.rss_ready = rss_all(pids)
    scenarios = [Scenario(f"{out.mode}, client -> 127.0.0.1:8080", url)]
    if out.mode == "REDIRECT":
        node = node_netns_of(up_pid)
        if node is None:
            raise RuntimeError("REDIRECT `up` has no node namespace")
        prefix = ("ip", "netns", "exec", node)
        scenarios.append(Scenario(f"{out.mode}, client -> gateway pod", GATEWAY_POD_URL, prefix))
    for scenario in scenarios:
        out.scenarios.append(load(scenario, pids, settings))
    out.rss_loaded = rss_all(pids)


def run_bench(settings: Settings) -> Results:
    with tempfile.TemporaryDirectory(prefix="meshplane-issue5-") as tmp_name:
        tmp = Path(tmp_name)
        modes = [bench_mode(mode, settings, tmp) for mode in settings.modes]
        baseline, rss = bench_baseline(settings, tmp)
    return Results(settings, baseline, modes, rss)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.issue5", description=__doc__)
    parser.add_argument("--modes", default="REDIRECT,NONE")
    parser.add_argument("--runs", type=int, default=3, help="start-ups per mode (median)")
    parser.add_argument("--connections", default="1,8,32")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--quick", action="store_true", help="1 run, 2 s loads, 1 and 8 conns")
    parser.add_argument("--out", type=Path, help=f"default {DEFAULT_OUT} (--quick: none)")
    args = parser.parse_args(argv)
    out = args.out or (None if args.quick else DEFAULT_OUT)
    if not wrk_available():
        parser.error("wrk is not installed (apt-get install wrk)")
    settings = Settings(
        modes=tuple(m.strip().upper() for m in args.modes.split(",") if m.strip()),
        runs=1 if args.quick else args.runs,
        connections=(1, 8) if args.quick else tuple(int(c) for c in args.connections.split(",")),
        duration_s=2.0 if args.quick else args.duration,
    )
    started = datetime.datetime.now(datetime.UTC)
    results = run_bench(settings)
    command = " ".join(
        [".venv/bin/python -m bench.issue5", *(sys.argv[1:] if argv is None else argv)]
    )
    text = render(results, started, command)
    if out is not None:
        out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
