"""Config distribution status with real Envoys: `meshplane serve`, two NONE-mode sidecars
in two namespaces, and /debug/config_status plus `meshplane config-status` saying which of
the proxies in an object's scope run its current version.

A VirtualService exported everywhere reaches both sidecars; one exported to its own
namespace reaches one (1/1). Both Envoys are paused (SIGSTOP) before an edit, so the status
is seen PENDING for both, honestly, then ACKED for both once they resume and acknowledge.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from mesh_harness import BIN, ControlPlane, NoneModeSidecar, wait_for, write_atomically

pytestmark = [pytest.mark.envoy]

SERVICES = """\
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: default}
spec: {clusterIP: 10.96.0.11, ports: [{name: http, port: 8080}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: local, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  exportTo: ["."]
  http: [{route: [{destination: {host: echo.default.svc.cluster.local}}]}]
"""

SHARED = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shared, namespace: default}}
spec:
  hosts: [other.default.svc.cluster.local]
  http:
  - timeout: {timeout}
    route: [{{destination: {{host: other.default.svc.cluster.local}}}}]
"""


@pytest.fixture
def mesh(tmp_path: Path, logdir: Path) -> Iterator[tuple[ControlPlane, Path, list[Any]]]:
    config = tmp_path / "config"
    config.mkdir()
    (config / "services.yaml").write_text(SERVICES)
    (config / "shared.yaml").write_text(SHARED.format(timeout="5s"))
    with ExitStack() as stack:
        cp = ControlPlane(config, logdir)
        stack.callback(cp.stop)
        proxies = []
        for workload, ns in (("a", "default"), ("b", "apps")):
            envoy = NoneModeSidecar(cp, logdir, workload=workload, namespace=ns, labels="app=x")
            stack.callback(envoy.stop)
            proxies.append(envoy)
        yield cp, config, proxies


def status(cp: ControlPlane, name: str) -> dict[str, Any]:
    entries = cp.json(f"/debug/config_status?kind=VirtualService&namespace=default&name={name}")
    assert isinstance(entries, list) and len(entries) == 1, entries
    entry: dict[str, Any] = entries[0]
    return entry


def statuses(entry: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["status"] for p in entry["proxies"]}


def test_an_edit_goes_pending_then_acked_on_every_proxy_in_scope(
    mesh: tuple[ControlPlane, Path, list[Any]],
) -> None:
    cp, config, proxies = mesh
    both = {"a.default": "ACKED", "b.apps": "ACKED"}
    wait_for("both sidecars applied VS shared", lambda: statuses(status(cp, "shared")) == both)
    local = status(cp, "local")
    assert (local["in_scope"], local["acked"], statuses(local)) == (1, 1, {"a.default": "ACKED"})
    before = status(cp, "shared")["version"]

    for envoy in proxies:
        os.kill(envoy.p.pid, signal.SIGSTOP)
    try:
        write_atomically(config / "shared.yaml", SHARED.format(timeout="7s"))
        wait_for("the edit is accepted", lambda: status(cp, "shared")["version"] > before)
        pending = status(cp, "shared")
        assert (pending["in_scope"], pending["acked"], pending["pending"]) == (2, 0, 2)
        assert statuses(pending) == {"a.default": "PENDING", "b.apps": "PENDING"}
        # An object the edit did not touch stays applied where it was.
        assert status(cp, "local")["acked"] == 1
    finally:
        for envoy in proxies:
            os.kill(envoy.p.pid, signal.SIGCONT)
    wait_for("both sidecars applied the edit", lambda: statuses(status(cp, "shared")) == both)

    done = subprocess.run(
        [
            *(str(BIN / "meshplane"), "config-status", "VirtualService/default/shared"),
            *("--meshplane-address", f"127.0.0.1:{cp.http_port}"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "VirtualService/default/shared" in done.stdout
    assert "applied by 2/2 proxies" in done.stdout
