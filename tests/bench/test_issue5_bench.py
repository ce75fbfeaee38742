"""bench/issue5.py's pieces, without `meshplane up` (tests/e2e/test_up.py runs that, on port
8080, which two sessions cannot share): wrk's report is parsed, the example copy is pinned
to reviews v3, the no-mesh baseline serves the v3 page with ratings (and takes load when
wrk is installed), and the report has every table. No timing is asserted.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import yaml

from bench.issue5 import check_page, copy_example, load
from bench.issue5_report import ENVOY_PASSES, OTHER, ModeRun, Results, Scenario, Settings, render
from bench.upmesh import start_no_mesh
from bench.wrkload import LoadResult, parse_wrk, wrk_available

WRK_REPORT = """Running 2s test @ http://127.0.0.1:8080/productpage
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    31.13ms   18.72ms   1.02s    68.88%
    Req/Sec   132.22     30.39   212.00     62.00%
  Latency Distribution
     50%  812.00us
     75%   41.65ms
     90%   60.32ms
     99%    1.02s
  1321 requests in 2.01s, 1.58MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:    657.21
Transfer/sec:    322.49KB
"""


def test_wrk_report_is_parsed_in_milliseconds() -> None:
    r = parse_wrk(WRK_REPORT, connections=8, client_cpu_s=0.5)
    assert (r.requests, r.rps, r.duration_s) == (1321, 657.21, 2.01)
    assert (r.p50_ms, r.p75_ms, r.p90_ms, r.p99_ms) == (0.812, 41.65, 60.32, 1020.0)
    assert (r.non_2xx, r.socket_errors, r.failed) == (4, 3, 7)


def test_a_report_without_latency_distribution_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_wrk(WRK_REPORT.replace("     99%    1.02s\n", ""), connections=8)


def test_the_example_copy_sends_all_reviews_traffic_to_v3(tmp_path: Path) -> None:
    example = copy_example(tmp_path / "bookinfo")
    docs = list(yaml.safe_load_all((example / "virtual-service-reviews.yaml").read_text()))
    reviews = next(d for d in docs if d["metadata"]["name"] == "reviews")
    assert reviews["spec"]["http"] == [
        {"route": [{"destination": {"host": "reviews", "subset": "v3"}}]}
    ]
    assert {d["metadata"]["name"] for d in docs} == {"reviews", "details", "ratings"}
    assert (example / "deployments.yaml").is_file()


@pytest.mark.slow
def test_the_no_mesh_baseline_serves_the_v3_page(tmp_path: Path) -> None:
    apps = start_no_mesh(tmp_path)
    try:
        check_page(apps.url)  # raises unless it is reviews v3 with ratings
        if not wrk_available():
            return
        settings = Settings(modes=(), runs=1, connections=(2,), duration_s=1.0)
        scenario = load(Scenario("no mesh", apps.url), apps.pids(), settings)
    finally:
        apps.stop()
    assert all(p.poll() is not None for p in apps.procs.values())
    [result] = scenario.loads
    assert result.requests > 0 and result.failed == 0
    assert set(scenario.cpu_pct[2]) >= {"app productpage-v1", "app ratings-v1", OTHER}


def _load(conns: int, p50: float) -> LoadResult:
    return LoadResult(conns, 100, 1.0, 100.0, p50, p50, p50, p50 * 2, 0, 0)


def test_the_report_has_every_table() -> None:
    base = Scenario("no mesh", "u", loads=[_load(1, 2.0)], cpu_pct={1: {"app productpage-v1": 20}})
    mesh = Scenario("NONE, client", "u", loads=[_load(1, 10.0)])
    mesh.cpu_pct = {1: {"envoy productpage-v1-0": 10, "app productpage-v1": 15, OTHER: 3}}
    mode = ModeRun("NONE", [1.5, 1.7, 1.6], [1.2, 1.4, 1.3], [0.5, 0.5, 0.6], [0, 0, 0])
    mode.rss_ready = {"envoy productpage-v1-0": 70_000, "control plane": 80_000}
    mode.rss_loaded = {"envoy productpage-v1-0": 71_000, "control plane": 80_000}
    mode.scenarios = [mesh]
    results = Results(Settings(modes=("NONE",), connections=(1,)), base, [mode], {"a": 1024})
    text = render(results, datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), "cmd")
    assert "| NONE | 1.50, 1.70, 1.60 | 1.60 | 1.3 |" in text
    per_pass = (10.0 - 2.0) / ENVOY_PASSES
    assert (
        f"| NONE, client | 1 | 100 | 100 | 10.00 | 10.00 | 20.00 | 0 | 8.00 | {per_pass:.3f} |"
        in text
    )
    assert "| envoy productpage-v1-0 | 68.4 | 69.3 |" in text
    assert "| **mesh: Envoys + control plane** | 146.5 | 147.5 |" in text
    assert "No-mesh baseline apps (1): 1.0 MiB." in text
