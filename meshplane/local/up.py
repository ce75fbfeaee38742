"""`meshplane up`: a whole mesh on this machine, a sidecar Envoy per workload, no root.

This is INTERCEPTION_MODE NONE (Istio's VM mode): no network namespaces and no iptables,
so each sidecar's listeners bind where its generated Sidecar resource says (see
`meshplane.local.pods`) and each app sends its calls to its sidecar's outbound listener on
the pod loopback. `up` starts `meshplane serve` on the example dir plus a generated dir
(both watched), one app and one sidecar per replica of each Deployment, and an ingress
gateway; every proxy uses the TLS xDS port with its own join token, so the built-in CA
gives it a SPIFFE certificate and traffic between sidecars is mutual TLS. It prints
`mesh ready: URL` once every proxy has acknowledged its config and a page loads, and stops
every process it started (by PID) on Ctrl-C or SIGTERM. REDIRECT mode (namespaces and
iptables, as root) comes later.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from meshplane.bootstrap.build import bootstrap, render_json
from meshplane.bootstrap.options import BootstrapOptions
from meshplane.ca.tokens import TokenSigner
from meshplane.local.demo import Supervisor, http_get, wait_until
from meshplane.local.pods import Pod, generated_config, plan_pods, read_manifests

__all__ = ["UpOptions", "run_up"]

GATEWAY = ("istio-ingressgateway", "istio-system", "istio=ingressgateway,app=istio-ingressgateway")


@dataclass(frozen=True)
class UpOptions:
    example: Path
    gateway_port: int = 8080
    http_address: str = "127.0.0.1:15014"
    workdir: Path | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_private(path: Path, text: str) -> None:
    """The bootstrap holds a join token: owner-only, as `meshplane bootstrap -o` writes it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


class PodSupervisor(Supervisor):
    """The demo's supervisor, also giving a child its pod's environment."""

    def start(
        self, name: str, cmd: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the child
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        self.procs.append((name, proc))
        return proc


class Mesh:
    """The processes of one `up`: control plane, apps, sidecars, gateway."""

    def __init__(self, opts: UpOptions, workdir: Path) -> None:
        self.opts, self.workdir = opts, workdir
        self.sup = PodSupervisor(workdir)
        self.xds_tls = f"127.0.0.1:{free_port()}"
        self.debug = f"http://{opts.http_address}"
        self.state = workdir / "state"
        self.proxies: list[str] = []  # node-id prefixes that must be SYNCED
        bin_dir = Path(sys.executable).parent
        self.meshplane = str(bin_dir / "meshplane")
        self.envoy = shutil.which("envoy", path=str(bin_dir)) or "envoy"

    def start_control_plane(self, generated: Path) -> None:
        cmd = [self.meshplane, "serve", "--config-dir", str(self.opts.example)]
        cmd += ["--config-dir", str(generated), "--state-dir", str(self.state)]
        cmd += ["--xds-address", f"127.0.0.1:{free_port()}", "--xds-tls-address", self.xds_tls]
        cmd += ["--http-address", self.opts.http_address, "--debounce-ms", "50"]
        self.sup.start("meshplane", cmd)
        wait_until("the control plane", lambda: http_get(f"{self.debug}/ready")[0] == 200, self.sup)

    def start_proxy(self, kind: str, name: str, ns: str, sa: str, ip: str, labels: str) -> None:
        """Bootstrap (as `meshplane bootstrap --interception NONE --token ...`) and start."""
        opts = BootstrapOptions(
            workload=name,
            type=kind,
            namespace=ns,
            service_account=sa,
            ip=ip,
            labels=dict(kv.split("=", 1) for kv in labels.split(",") if kv),
            interception="NONE",
            stats_port=0,
            health_port=0,
            admin_port=free_port(),
            xds_address=self.xds_tls,
            token=TokenSigner.load_or_create(self.state).issue(ns, sa),
            ca_cert_pem=(self.state / "root-cert.pem").read_text(),
        )
        path = self.workdir / f"{name}.envoy.json"
        _write_private(path, render_json(bootstrap(opts)))
        cmd = [self.envoy, "-c", str(path), "--use-dynamic-base-id", "--drain-time-s", "1"]
        self.sup.start(f"{name}.envoy", [*cmd, "-l", "warning"])
        self.proxies.append(f"{kind}~{ip}~{name}.{ns}~")

    def start_pod(self, pod: Pod) -> None:
        argv = list(pod.argv)
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable  # the project's interpreter, with meshplane installed
        self.sup.start(pod.name, argv, env={**os.environ, **pod.env})
        labels = ",".join(f"{k}={v}" for k, v in pod.labels.items())
        self.start_proxy("sidecar", pod.name, pod.namespace, pod.service_account, pod.ip, labels)

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


def run_up(opts: UpOptions) -> int:
    """Run the mesh until SIGINT/SIGTERM; 0 on a clean stop (RuntimeError if it fails)."""
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="meshplane-up-"))
    generated = workdir / "generated"
    generated.mkdir(parents=True, exist_ok=True)
    pods = plan_pods(read_manifests(opts.example))
    if not pods:
        raise RuntimeError(f"{opts.example}: no Deployment to run")
    (generated / "pods.yaml").write_text(generated_config(pods))
    mesh = Mesh(opts, workdir)
    stopping = False

    def on_signal(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = time.monotonic()
    print(f"meshplane up: INTERCEPTION_MODE=NONE (no root needed); logs in {workdir}", flush=True)
    try:
        mesh.start_control_plane(generated)
        for pod in pods:
            mesh.start_pod(pod)
        name, ns, labels = GATEWAY
        mesh.start_proxy("router", name, ns, name, "127.0.0.1", labels)
        wait_until("every proxy to acknowledge its config", mesh.synced, mesh.sup)
        url = f"http://127.0.0.1:{opts.gateway_port}/productpage"
        wait_until("a page through the gateway", lambda: http_get(url)[0] == 200, mesh.sup)
        took = time.monotonic() - started
        print(f"mesh ready: {url}", flush=True)
        print(f"  {len(pods)} pods with sidecars, ready in {took:.1f}s", flush=True)
        print(f"  debug API: {mesh.debug}/debug/syncz; Ctrl-C stops everything", flush=True)
        while not stopping:
            mesh.sup.check()
            time.sleep(0.2)
        return 0
    finally:
        mesh.sup.stop()
