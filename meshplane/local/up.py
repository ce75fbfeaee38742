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
it started (by PID), and everything else it made, on Ctrl-C or SIGTERM. While it runs it
follows the example dir as Kubernetes' controllers would (`meshplane.local.follow`).
"""

from __future__ import annotations

import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from meshplane.local.follow import example_signature, follow_example
from meshplane.local.modes import Workload, make_mode
from meshplane.local.pods import generated_config, plan_pods, read_manifests
from meshplane.local.processes import CONTROL_PLANE, Mesh, MeshOptions
from meshplane.local.supervisor import http_get, wait_until

__all__ = ["CONTROL_PLANE", "UpOptions", "run_up"]

GATEWAY = Workload(
    name="istio-ingressgateway",
    namespace="istio-system",
    service_account="istio-ingressgateway",
    labels={"istio": "ingressgateway", "app": "istio-ingressgateway"},
)


@dataclass(frozen=True)
class UpOptions:
    example: Path
    gateway_port: int = 8080
    http_address: str = "127.0.0.1:15014"
    workdir: Path | None = None
    mode: str = "NONE"  # REDIRECT or NONE (the CLI picks; see modes.pick_mode)
    mode_reason: str = ""
    zipkin_port: int = 9411  # the trace collector `up` runs, on the host's loopback


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
    mesh = Mesh(MeshOptions(opts.example, opts.http_address, opts.zipkin_port), workdir, mode)
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
            mesh.start_pod(pod)  # their networks: mode.prepare
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
                follow_example(mesh, mode, opts.example, generated)
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut teardown
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        mesh.sup.stop()
        mode.close()
