"""The processes of one `meshplane up`: control plane, trace collector, pods, proxies.

`Mesh` starts each (through the interception mode, which decides where a process runs and
how its proxy reaches the control plane), remembers which proxies must acknowledge their
config, and stops a pod's processes when the pod goes away.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from meshplane.bootstrap.build import bootstrap, render_json
from meshplane.bootstrap.options import BootstrapOptions
from meshplane.ca.tokens import TokenSigner
from meshplane.local.modes import Mode, Workload
from meshplane.local.pods import Pod
from meshplane.local.supervisor import Supervisor, http_get, wait_until

__all__ = ["CONTROL_PLANE", "Mesh", "MeshOptions", "free_port"]

CONTROL_PLANE = "meshplane"  # the supervisor's name for `meshplane serve` (its log file)


@dataclass(frozen=True)
class MeshOptions:
    """What `Mesh` needs of up's options."""

    example: Path
    http_address: str
    zipkin_port: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mesh:
    """The processes of one `up`: control plane, apps, sidecars, gateway."""

    def __init__(self, opts: MeshOptions, workdir: Path, mode: Mode) -> None:
        self.opts, self.workdir, self.mode = opts, workdir, mode
        self.sup = Supervisor(workdir)
        self.xds_tls_port = free_port()
        self.debug = f"http://{opts.http_address}"
        self.state = workdir / "state"
        self.proxies: dict[str, str] = {}  # workload -> node-id prefix that must be SYNCED
        self.pods: dict[str, Pod] = {}  # the running pods by name
        bin_dir = Path(sys.executable).parent
        self.meshplane = str(bin_dir / "meshplane")
        self.envoy = shutil.which("envoy", path=str(bin_dir)) or "envoy"

    def start_control_plane(self, generated: Path) -> None:
        cmd = [self.meshplane, "serve", "--config-dir", str(self.opts.example)]
        cmd += ["--config-dir", str(generated), "--state-dir", str(self.state)]
        cmd += ["--xds-address", f"127.0.0.1:{free_port()}"]
        cmd += ["--xds-tls-address", f"127.0.0.1:{self.xds_tls_port}"]
        cmd += ["--http-address", self.opts.http_address, "--debounce-ms", "50"]
        for san in self.mode.control_plane_sans():
            cmd += ["--tls-san", san]
        self.sup.start(CONTROL_PLANE, cmd, restart=True)
        wait_until("the control plane", lambda: http_get(f"{self.debug}/ready")[0] == 200, self.sup)

    def start_proxy(self, kind: str, workload: Workload, ip: str) -> None:
        """Bootstrap (as `meshplane bootstrap ... --token ...` would) and start an Envoy."""
        host, port = self.mode.host_address(self.xds_tls_port)
        opts = BootstrapOptions(
            workload=workload.name,
            type=kind,
            namespace=workload.namespace,
            service_account=workload.service_account,
            ip=ip,
            labels=dict(workload.labels),
            interception=self.mode.name if kind == "sidecar" else "NONE",
            stats_port=self.mode.stats_port,
            health_port=self.mode.health_port,
            admin_port=self.mode.admin_port() or free_port(),
            xds_address=f"{host}:{port}",
            token=TokenSigner.load_or_create(self.state).issue(
                workload.namespace, workload.service_account, proxy_type=kind
            ),
            ca_cert_pem=(self.state / "root-cert.pem").read_text(),
        )
        path = self.mode.bootstrap_path(self.workdir, workload.name)
        self.mode.write_bootstrap(path, render_json(bootstrap(opts)))
        cmd = [self.envoy, "-c", str(path), "--use-dynamic-base-id", "--drain-time-s", "1"]
        cmd += ["--file-flush-interval-msec", "1000"]  # access logs within a second, not 10
        argv = self.mode.envoy_argv(workload.name, [*cmd, "-l", "warning"])
        self.sup.start(f"{workload.name}.envoy", argv)
        self.proxies[workload.name] = f"{kind}~{ip}~{workload.name}.{workload.namespace}~"

    def start_collector(self) -> str:
        """The Zipkin collector the mesh config names; returns its page's URL."""
        address = f"127.0.0.1:{self.opts.zipkin_port}"
        cmd = [sys.executable, "-m", "meshplane.local.zipkin", "--address", address]
        self.sup.start("zipkin", cmd)
        url = f"http://{address}/"
        wait_until("the trace collector", lambda: http_get(url)[0] == 200, self.sup)
        return url

    def start_pod(self, pod: Pod) -> None:
        """The pod's app and its sidecar (its network must exist: `mode.add_pod`)."""
        self.pods[pod.name] = pod
        argv = list(pod.argv)
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable  # the project's interpreter, with meshplane installed
        self.sup.start(pod.name, self.mode.app_argv(pod.name, argv), env={**os.environ, **pod.env})
        workload = Workload(pod.name, pod.namespace, pod.service_account, pod.labels)
        self.start_proxy("sidecar", workload, pod.ip)

    def stop_pod(self, name: str) -> None:
        """Stop the pod's sidecar and app (by PID) and forget them."""
        self.sup.stop_child(f"{name}.envoy")
        self.sup.stop_child(name)
        self.proxies.pop(name, None)
        self.pods.pop(name, None)

    def synced(self) -> bool:
        status, body = http_get(f"{self.debug}/debug/syncz")
        if status != 200:
            return False
        rows = {row["proxy"]: row["types"] for row in json.loads(body)}
        for prefix in self.proxies.values():
            types = next((t for p, t in rows.items() if p.startswith(prefix)), None)
            if types is None or any(types[t]["status"] != "SYNCED" for t in ("cds", "lds")):
                return False
            if any(v["status"] not in ("SYNCED", "NOT_SENT") for v in types.values()):
                return False
        return True
