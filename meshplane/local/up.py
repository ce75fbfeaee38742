"""`meshplane up`: a whole mesh on this machine, a sidecar Envoy per workload.

`up` starts `meshplane serve` on the example dir plus a generated dir (both watched), one
app and one sidecar per replica of each Deployment (see `meshplane.local.pods`), and an
ingress gateway; every proxy uses the TLS xDS port with its own join token, so the built-in
CA gives it a SPIFFE certificate and traffic between sidecars is mutual TLS. How pods are
wired is the interception mode (`meshplane.local.modes`): REDIRECT (root: a network
namespace per pod, iptables as Istio's init container sets it up) or NONE (no root:
listeners bound where a generated Sidecar resource says, as Istio does for VMs). It prints
`mesh ready: URL` once every proxy has acknowledged its config and a page loads, restarts
the control plane if it dies (proxies keep their config meanwhile), and stops every process
it started (by PID), and everything else it made, on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from meshplane.bootstrap.build import bootstrap, render_json
from meshplane.bootstrap.options import BootstrapOptions
from meshplane.ca.tokens import TokenSigner
from meshplane.local.modes import Mode, Workload, make_mode
from meshplane.local.pods import Pod, generated_config, plan_pods, read_manifests
from meshplane.local.supervisor import Supervisor, http_get, wait_until

__all__ = ["CONTROL_PLANE", "UpOptions", "run_up"]

GATEWAY = Workload(
    name="istio-ingressgateway",
    namespace="istio-system",
    service_account="istio-ingressgateway",
    labels={"istio": "ingressgateway", "app": "istio-ingressgateway"},
)
CONTROL_PLANE = "meshplane"  # the supervisor's name for `meshplane serve` (its log file)


@dataclass(frozen=True)
class UpOptions:
    example: Path
    gateway_port: int = 8080
    http_address: str = "127.0.0.1:15014"
    workdir: Path | None = None
    mode: str = "NONE"  # REDIRECT or NONE (the CLI picks; see modes.pick_mode)
    mode_reason: str = ""
    zipkin_port: int = 9411  # the trace collector `up` runs, on the host's loopback


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mesh:
    """The processes of one `up`: control plane, apps, sidecars, gateway."""

    def __init__(self, opts: UpOptions, workdir: Path, mode: Mode) -> None:
        self.opts, self.workdir, self.mode = opts, workdir, mode
        self.sup = Supervisor(workdir)
        self.xds_tls_port = free_port()
        self.debug = f"http://{opts.http_address}"
        self.state = workdir / "state"
        self.proxies: list[str] = []  # node-id prefixes that must be SYNCED
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
        self.proxies.append(f"{kind}~{ip}~{workload.name}.{workload.namespace}~")

    def start_collector(self) -> str:
        """The Zipkin collector the mesh config names; returns its page's URL."""
        address = f"127.0.0.1:{self.opts.zipkin_port}"
        cmd = [sys.executable, "-m", "meshplane.local.zipkin", "--address", address]
        self.sup.start("zipkin", cmd)
        url = f"http://{address}/"
        wait_until("the trace collector", lambda: http_get(url)[0] == 200, self.sup)
        return url

    def start_pod(self, pod: Pod) -> None:
        argv = list(pod.argv)
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable  # the project's interpreter, with meshplane installed
        self.sup.start(pod.name, self.mode.app_argv(pod.name, argv), env={**os.environ, **pod.env})
        workload = Workload(pod.name, pod.namespace, pod.service_account, pod.labels)
        self.start_proxy("sidecar", workload, pod.ip)

    def synced(self) -> bool:
        status, body = http_get(f"{self.debug}/debug/syncz")
        if status != 200:
            return False
        rows = {row["proxy"]: row["types"] for row in json.loads(body)}
        for prefix in self.proxies:
            types = next((t for p, t in rows.items() if p.startswith(prefix)), None)
            if types is None or any(types[t]["status"] != "SYNCED" for t in ("cds", "lds")):
                return False
            if any(v["status"] not in ("SYNCED", "NOT_SENT") for v in types.values()):
                return False
        return True


def has_mesh_config(manifests: list[dict[str, object]]) -> bool:
    """Whether the example brings Istio's mesh config (ConfigMap istio in istio-system)."""
    return any(
        doc.get("kind") == "ConfigMap"
        and isinstance(meta := doc.get("metadata"), dict)
        and (meta.get("name"), meta.get("namespace")) == ("istio", "istio-system")
        for doc in manifests
    )


def mesh_config(zipkin: str) -> str:
    """Istio's mesh config as `up` runs it: JSON access logs, every request traced."""
    return f"""# Written by `meshplane up`: Istio's mesh config (ConfigMap istio-system/istio).
apiVersion: v1
kind: ConfigMap
metadata:
  name: istio
  namespace: istio-system
data:
  mesh: |-
    accessLogFile: /dev/stdout
    accessLogEncoding: JSON
    enableTracing: true
    defaultConfig:
      tracing:
        sampling: 100
        zipkin:
          address: "{zipkin}"
"""


def example_signature(example: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when a manifest is written, added or removed (names, mtimes, sizes)."""
    found = []
    for path in sorted([*example.glob("*.yaml"), *example.glob("*.yml")]):
        try:
            st = path.stat()
        except OSError:
            continue  # removed between the glob and the stat: the next poll sees it
        found.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(found)


def refresh_names(mode: Mode, example: Path) -> None:
    """After an edit, give pods the Services' names again (a Service added or removed)."""
    try:
        changed = mode.refresh(read_manifests(example))
    except (OSError, ValueError, yaml.YAMLError):
        return  # the control plane reports a bad file; pods keep the names they have
    if changed:
        print(f"  pods' /etc/hosts updated: {', '.join(changed)}", flush=True)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def run_up(opts: UpOptions) -> int:
    """Run the mesh until SIGINT/SIGTERM; 0 on a clean stop (RuntimeError if it fails)."""
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="meshplane-up-"))
    generated = workdir / "generated"
    generated.mkdir(parents=True, exist_ok=True)
    manifests = read_manifests(opts.example)
    pods = plan_pods(manifests, opts.mode)
    if not pods:
        raise RuntimeError(f"{opts.example}: no Deployment to run")
    (generated / "pods.yaml").write_text(generated_config(pods, opts.mode))
    mode = make_mode(opts.mode, workdir, opts.gateway_port, opts.mode_reason)
    mesh = Mesh(opts, workdir, mode)
    if has_mesh_config(manifests):
        print("meshplane up: the example has its own mesh config (ConfigMap istio)", flush=True)
    else:
        zipkin = "{}:{}".format(*mode.host_address(opts.zipkin_port))
        (generated / "mesh-config.yaml").write_text(mesh_config(zipkin))
    # SIGTERM and Ctrl-C stop it, during start-up too; the finally below tears down.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    started = time.monotonic()
    print(f"meshplane up: {mode.describe()}; logs in {workdir}", flush=True)
    try:
        mode.prepare(pods, manifests, [mesh.xds_tls_port, opts.zipkin_port])
        traces = mesh.start_collector()
        mesh.start_control_plane(generated)
        for pod in pods:
            mesh.start_pod(pod)
        mesh.start_proxy("router", GATEWAY, mode.gateway_ip)
        wait_until("every proxy to acknowledge its config", mesh.synced, mesh.sup)
        url = f"http://127.0.0.1:{opts.gateway_port}/productpage"
        wait_until("a page through the gateway", lambda: http_get(url)[0] == 200, mesh.sup)
        took = time.monotonic() - started
        print(f"mesh ready: {url}", flush=True)
        print(f"  {len(pods)} pods with sidecars, ready in {took:.1f}s", flush=True)
        print(f"  traces: {traces}; access logs: {workdir}/*.envoy.log", flush=True)
        print(f"  debug API: {mesh.debug}/debug/syncz; Ctrl-C stops everything", flush=True)
        seen = example_signature(opts.example)
        while True:
            mesh.sup.check()
            if (now := example_signature(opts.example)) != seen:
                seen = now
                refresh_names(mode, opts.example)
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut teardown
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        mesh.sup.stop()
        mode.close()
