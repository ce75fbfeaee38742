"""`make demo`: the control plane, the bookinfo apps and one real Envoy ingress gateway.

This is the one-machine demo of the xDS core: `meshplane serve` on the example directory,
one bookinfo app per WorkloadEntry in it, and an Envoy `router` proxy bootstrapped by
`meshplane bootstrap` that gets all its listeners, routes, clusters and endpoints over ADS.
It prints `mesh ready: URL` once the gateway has acknowledged its config and a request
through it succeeds, and stops every process it started on Ctrl-C or SIGTERM.
(`meshplane up` with a sidecar per workload replaces this later.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from meshplane.model.load import load_paths


@dataclass(frozen=True)
class App:
    """One bookinfo workload to start."""

    name: str
    service: str
    version: str
    port: int


def apps_from(example: str) -> list[App]:
    """The workloads the example declares as WorkloadEntries (app + version labels)."""
    store = load_paths([example])
    apps = []
    for obj in store.objects():
        if obj.kind != "WorkloadEntry":
            continue
        labels = obj.spec.labels
        port = next(iter(obj.spec.ports.values()), 0)
        if "app" in labels and port:
            apps.append(App(obj.name, labels["app"], labels.get("version", "v1"), port))
    return sorted(apps, key=lambda a: a.name)


class Supervisor:
    """Starts processes, remembers their PIDs, and stops all of them (and only them)."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the child
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def check(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}; see {self.logdir}/{name}.log"
                )

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 5
        for _, proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def wait_until(what: str, ok: object, sup: Supervisor, timeout: float = 60.0) -> None:
    """Poll `ok()` every 100 ms until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sup.check()
        if ok():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def gateway_synced(debug: str) -> bool:
    status, body = http_get(f"{debug}/debug/syncz")
    if status != 200:
        return False
    rows = json.loads(body)
    for row in rows:
        if row["proxy"].startswith("router~"):
            types = row["types"]
            return all(types[t]["status"] == "SYNCED" for t in ("cds", "lds", "eds", "rds"))
    return False


def run(example: str, gateway_port: int, workdir: Path) -> int:
    bin_dir = Path(sys.executable).parent
    meshplane, envoy = (
        str(bin_dir / "meshplane"),
        shutil.which("envoy", path=str(bin_dir)) or "envoy",
    )
    sup = Supervisor(workdir)
    debug = "http://127.0.0.1:15014"
    stopping = False

    def on_signal(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sup.start(
            "meshplane",
            [meshplane, "serve", "--config-dir", example, "--state-dir", str(workdir / "state")],
        )
        wait_until(
            "the control plane to be ready", lambda: http_get(f"{debug}/ready")[0] == 200, sup
        )
        for app in apps_from(example):
            sup.start(
                app.name,
                [
                    sys.executable,
                    "-m",
                    "meshplane.local.bookinfo_app",
                    "--service",
                    app.service,
                    "--version",
                    app.version,
                    "--port",
                    str(app.port),
                    "--mesh-address",
                    f"127.0.0.1:{gateway_port}",
                ],
            )
        bootstrap = workdir / "ingressgateway.json"
        subprocess.run(
            [
                meshplane,
                "bootstrap",
                "--type",
                "router",
                "--namespace",
                "istio-system",
                "--workload",
                "istio-ingressgateway",
                "--service-account",
                "istio-ingressgateway",
                "--labels",
                "istio=ingressgateway,app=istio-ingressgateway",
                "--ip",
                "127.0.0.1",
                "--xds-address",
                "127.0.0.1:15010",
                "--admin-port",
                "15000",
                "-o",
                str(bootstrap),
            ],
            check=True,
        )
        sup.start(
            "istio-ingressgateway",
            [
                envoy,
                "-c",
                str(bootstrap),
                "--drain-time-s",
                "1",
                "--use-dynamic-base-id",
                "-l",
                "warning",
            ],
        )
        wait_until("the gateway to acknowledge its config", lambda: gateway_synced(debug), sup)
        url = f"http://127.0.0.1:{gateway_port}/productpage"
        wait_until("a page through the gateway", lambda: http_get(url)[0] == 200, sup)
        print(f"mesh ready: {url}", flush=True)
        print(f"  debug API: {debug}/debug/syncz   logs: {workdir}", flush=True)
        print(
            "  edit examples/bookinfo/virtual-service-reviews.yaml and reload; Ctrl-C stops",
            flush=True,
        )
        while not stopping:
            sup.check()
            time.sleep(0.2)
        return 0
    finally:
        sup.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run the bookinfo demo with one ingress gateway")
    p.add_argument("example", nargs="?", default="examples/bookinfo")
    p.add_argument("--gateway-port", type=int, default=8080)
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="meshplane-demo-"))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        return run(args.example, args.gateway_port, workdir)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
