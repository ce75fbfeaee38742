"""Pods as Linux network namespaces, for `meshplane up` in REDIRECT mode (root only).

Istio's sidecar works because each pod has its own network stack: its own IP, its own
loopback and its own iptables rules. `PodNetwork` gives each local workload that: one
network namespace per pod, joined by a veth pair to a bridge that lives in a "node"
namespace of its own, so the root namespace's interfaces, routes and firewall are never
touched. Every namespace is named after a run tag (`meshplane-<id>-...`) and the owner's pid
is written under /run before the first one exists, so `teardown` removes exactly this run's
pieces and `sweep` those of a run that died without cleaning up.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_SUBNET",
    "NetnsError",
    "PodNet",
    "PodNetwork",
    "netns_unsupported_reason",
    "sweep",
]

DEFAULT_PREFIX = "meshplane-"
DEFAULT_SUBNET = "10.88.0.0/16"
DEFAULT_STATE_DIR = Path("/run/meshplane/netns")
# Where iproute2 keeps named namespaces and the per-namespace /etc overlay of `ip netns exec`.
NETNS_RUN_DIR = Path("/run/netns")
NETNS_ETC_DIR = Path("/etc/netns")
BRIDGE = "mpbr0"
POD_INTERFACE = "eth0"
NODE_SUFFIX = "node"
_RUN_ID = re.compile(r"[a-z0-9]{1,16}")
_POD_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]{0,50}[a-z0-9])?")
# Nothing listens on 53 in a pod: a name not in its hosts file fails at once, on the box.
RESOLV_CONF = "# written by meshplane: names come from /etc/hosts only\nnameserver 127.0.0.1\n"
RESOLV_CONF += "options timeout:1 attempts:1\n"


class NetnsError(RuntimeError):
    """A command failed; the message names the command and carries its stderr."""


@dataclass(frozen=True)
class PodNet:
    """One pod's network: its name, its namespace and its IP on the bridge."""

    name: str
    netns: str
    ip: str
    interface: str = POD_INTERFACE


def run_checked(argv: Sequence[str]) -> str:
    """Run a command; raise NetnsError naming it, with its stderr, if it fails."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"{' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        raise NetnsError(
            f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip() or done.stdout}"
        )
    return done.stdout


def netns_unsupported_reason() -> str | None:
    """Why pods cannot run in namespaces here (not root, a tool missing), or None."""
    if os.geteuid() != 0:
        return "network namespaces and iptables need root"
    for tool in ("ip", "iptables", "iptables-restore", "setpriv"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    return None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its ")".
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_alive(owner_file: Path) -> bool:
    try:
        pid_text, started = owner_file.read_text().split()
        return _start_time(int(pid_text)) == started
    except (OSError, ValueError):
        return False


def _netns_names() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_RUN_DIR.iterdir())
    except FileNotFoundError:
        return []


def _delete_netns(name: str) -> None:
    if (NETNS_RUN_DIR / name).exists():
        run_checked(["ip", "netns", "delete", name])
    shutil.rmtree(NETNS_ETC_DIR / name, ignore_errors=True)


def _remove_tag(tag: str, state_dir: Path) -> list[str]:
    """Delete every namespace and /etc/netns dir named `TAG-*`, node last; then the state."""
    names = {n for n in _netns_names() if n.startswith(tag + "-")}
    if NETNS_ETC_DIR.is_dir():
        names |= {p.name for p in NETNS_ETC_DIR.iterdir() if p.name.startswith(tag + "-")}
    node = f"{tag}-{NODE_SUFFIX}"
    ordered = sorted(names - {node}) + ([node] if node in names else [])
    for name in ordered:
        _delete_netns(name)
    shutil.rmtree(state_dir / tag, ignore_errors=True)
    return ordered


def sweep(prefix: str = DEFAULT_PREFIX, state_dir: Path = DEFAULT_STATE_DIR) -> list[str]:
    """Remove what runs named `PREFIX<id>` left behind when their owner is dead.

    Returns the namespaces removed. A run whose owner process still lives is left alone, so
    two `up`s (or test sessions) can run side by side.
    """
    tags = {_tag_of(n, prefix) for n in _netns_names()}
    if NETNS_ETC_DIR.is_dir():
        tags |= {_tag_of(p.name, prefix) for p in NETNS_ETC_DIR.iterdir()}
    if state_dir.is_dir():
        tags |= {p.name for p in state_dir.iterdir() if p.name.startswith(prefix)}
    removed: list[str] = []
    for tag in sorted(t for t in tags if t):
        if not _owner_alive(state_dir / tag / "owner"):
            removed += _remove_tag(tag, state_dir)
    return removed


def _tag_of(name: str, prefix: str) -> str:
    if not name.startswith(prefix):
        return ""
    run_id = name[len(prefix) :].split("-", 1)[0]
    return prefix + run_id if _RUN_ID.fullmatch(run_id) else ""


def _hosts_file(pod: PodNet, hosts: Iterable[tuple[str, str]]) -> str:
    by_ip: dict[str, list[str]] = {"127.0.0.1": ["localhost"], pod.ip: [pod.name]}
    for name, ip in hosts:
        ipaddress.ip_address(ip)  # a bad address fails here, not in a resolver later
        names = by_ip.setdefault(ip, [])
        if name not in names:
            names.append(name)
    lines = [f"{ip}\t{' '.join(names)}" for ip, names in by_ip.items()]
    return "# written by meshplane\n" + "\n".join(lines) + "\n::1\tlocalhost ip6-localhost\n"


class PodNetwork:
    """This run's node namespace with its bridge, and the pods attached to it."""

    def __init__(
        self,
        run_id: str | None = None,
        *,
        subnet: str = DEFAULT_SUBNET,
        prefix: str = DEFAULT_PREFIX,
        state_dir: Path = DEFAULT_STATE_DIR,
    ) -> None:
        run_id = run_id or secrets.token_hex(4)
        if not _RUN_ID.fullmatch(run_id):
            raise ValueError(f"run id {run_id!r}: use 1-16 lowercase letters or digits")
        self.tag = prefix + run_id
        self.network = ipaddress.ip_network(subnet)
        hosts = self.network.hosts()
        self.bridge_ip = str(next(hosts))
        self._free = hosts
        self._state = state_dir / self.tag
        self.node_netns = f"{self.tag}-{NODE_SUFFIX}"
        self.pods: dict[str, PodNet] = {}
        # Node-side veth names are never reused, even after an add_pod that failed halfway.
        self._veth_ids = itertools.count()

    @property
    def run_dir(self) -> Path:
        """This run's state directory (owner pid): files put here go with teardown/sweep."""
        return self._state

    def create(self) -> None:
        """Make the node namespace and its bridge (BRIDGE_IP/prefix); idempotent."""
        self._state.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        (self._state / "owner").write_text(f"{pid} {_start_time(pid)}\n")
        if (NETNS_RUN_DIR / self.node_netns).exists():
            return
        node = ["ip", "-n", self.node_netns]
        run_checked(["ip", "netns", "add", self.node_netns])
        run_checked([*node, "link", "set", "lo", "up"])
        run_checked([*node, "link", "add", BRIDGE, "type", "bridge"])
        cidr = f"{self.bridge_ip}/{self.network.prefixlen}"
        run_checked([*node, "addr", "add", cidr, "dev", BRIDGE])
        run_checked([*node, "link", "set", BRIDGE, "up"])

    def add_pod(
        self, name: str, *, ip: str | None = None, hosts: Mapping[str, str] | None = None
    ) -> PodNet:
        """A namespace for pod `name` on the bridge, with /etc/hosts from `hosts` (name -> IP).

        The pod gets `ip` (or the next free address), loopback up, a default route via the
        bridge and a resolv.conf that sends no query off the box. Calling it again for the
        same name returns the pod already made.
        """
        if name in self.pods:
            return self.pods[name]
        if not _POD_NAME.fullmatch(name) or name == NODE_SUFFIX:
            raise ValueError(f"pod name {name!r}: use lowercase letters, digits, '-' and '.'")
        pod = PodNet(name=name, netns=f"{self.tag}-{name}", ip=ip or self._next_ip())
        taken = {self.bridge_ip, *(p.ip for p in self.pods.values())}
        if ipaddress.ip_address(pod.ip) not in self.network or pod.ip in taken:
            raise ValueError(f"pod {name}: {pod.ip} is not a free address of {self.network}")
        self.set_hosts(pod, hosts or {})
        veth = f"veth{next(self._veth_ids)}"
        node, inside = ["ip", "-n", self.node_netns], ["ip", "-n", pod.netns]
        run_checked(["ip", "netns", "add", pod.netns])
        peer = ["peer", "name", pod.interface, "netns", pod.netns]
        run_checked([*node, "link", "add", veth, "type", "veth", *peer])
        run_checked([*node, "link", "set", veth, "master", BRIDGE, "up"])
        run_checked([*inside, "link", "set", "lo", "up"])
        cidr = f"{pod.ip}/{self.network.prefixlen}"
        run_checked([*inside, "addr", "add", cidr, "dev", pod.interface])
        run_checked([*inside, "link", "set", pod.interface, "up"])
        run_checked([*inside, "route", "add", "default", "via", self.bridge_ip])
        self.pods[name] = pod
        return pod

    def remove_pod(self, name: str) -> None:
        """Delete pod `name`'s namespace (its veth pair and rules go with it) and /etc/netns
        dir; its processes must be stopped first. Unknown names are fine."""
        pod = self.pods.pop(name, None)
        if pod is not None:
            _delete_netns(pod.netns)

    def set_hosts(self, pod: PodNet, hosts: Mapping[str, str]) -> None:
        """(Re)write the pod's /etc/hosts and resolv.conf as `ip netns exec` shows them.

        Written in place (same inode), so processes already running in the pod, which see
        the file through a bind mount, read the new content too.
        """
        etc = NETNS_ETC_DIR / pod.netns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(_hosts_file(pod, sorted(hosts.items())))
        (etc / "resolv.conf").write_text(RESOLV_CONF)

    def exec_prefix(
        self, pod: PodNet | str, *, uid: int | None = None, gid: int | None = None
    ) -> list[str]:
        """The argv prefix that runs a command in the pod: as root, or as `uid` (and `gid`)."""
        netns = pod.netns if isinstance(pod, PodNet) else self.pods[pod].netns
        argv = ["ip", "netns", "exec", netns]
        if uid is not None:
            group = uid if gid is None else gid
            argv += ["setpriv", f"--reuid={uid}", f"--regid={group}", "--clear-groups", "--"]
        return argv

    def teardown(self) -> list[str]:
        """Delete this run's namespaces, /etc/netns dirs and state; kills nothing. Idempotent."""
        self.pods.clear()
        return _remove_tag(self.tag, self._state.parent)

    def _next_ip(self) -> str:
        used = {p.ip for p in self.pods.values()}
        for candidate in self._free:
            if str(candidate) not in used:
                return str(candidate)
        raise NetnsError(f"no free address left in {self.network}")
