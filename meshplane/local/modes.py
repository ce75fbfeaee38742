"""How `meshplane up` wires pods to their sidecars: the interception mode.

A mode decides where a pod's processes run (a network namespace or the host), how the
proxies reach the control plane, and what it must clean up. `pick_mode` chooses REDIRECT
when this process can create network namespaces and iptables rules (root, `ip` and
`iptables` present), else NONE; `INTERCEPTION_MODE` in the environment overrides.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from meshplane.local.pods import Pod

__all__ = ["MODES", "Mode", "NoneMode", "Workload", "make_mode", "pick_mode", "write_private"]

MODES = ("REDIRECT", "NONE")


@dataclass(frozen=True)
class Workload:
    """Who a proxy is: its name, namespace, service account and labels."""

    name: str
    namespace: str
    service_account: str
    labels: Mapping[str, str]


def write_private(path: Path, text: str, uid: int | None = None) -> None:
    """Write a file only its owner reads (a bootstrap holds a join token)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    if uid is not None:
        os.chown(path, uid, uid)


class Mode(Protocol):
    """What differs between REDIRECT and NONE."""

    name: str
    gateway_ip: str
    stats_port: int
    health_port: int

    def describe(self) -> str: ...
    def prepare(
        self, pods: Sequence[Pod], manifests: Sequence[Any], host_ports: Sequence[int]
    ) -> None: ...
    def refresh(self, manifests: Sequence[Any]) -> list[str]: ...
    def add_pod(self, pod: Pod) -> None: ...
    def remove_pod(self, name: str) -> None: ...
    def control_plane_sans(self) -> list[str]: ...
    def host_address(self, port: int) -> tuple[str, int]: ...
    def admin_port(self) -> int | None: ...
    def bootstrap_path(self, workdir: Path, workload: str) -> Path: ...
    def write_bootstrap(self, path: Path, text: str) -> None: ...
    def envoy_argv(self, workload: str, argv: list[str]) -> list[str]: ...
    def app_argv(self, pod: str, argv: list[str]) -> list[str]: ...
    def close(self) -> None: ...


class NoneMode:
    """INTERCEPTION_MODE=NONE: everything on the host's loopback, no root needed."""

    name = "NONE"
    gateway_ip = "127.0.0.1"
    # Stats and health listeners bind the proxy's own IP (127.0.10.N), so pods do not clash.
    stats_port = 15090
    health_port = 15021

    def __init__(self, reason: str = "") -> None:
        self.reason = reason

    def describe(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"INTERCEPTION_MODE=NONE (no network namespaces, no iptables{why})"

    def prepare(
        self, pods: Sequence[Pod], manifests: Sequence[Any], host_ports: Sequence[int]
    ) -> None:
        return None

    def refresh(self, manifests: Sequence[Any]) -> list[str]:
        """Nothing to redo: NONE-mode apps are told their sidecar's address, not names."""
        return []

    def add_pod(self, pod: Pod) -> None:
        return None  # loopback addresses need no set-up

    def remove_pod(self, name: str) -> None:
        return None

    def control_plane_sans(self) -> list[str]:
        return []

    def host_address(self, port: int) -> tuple[str, int]:
        """Where a proxy reaches a service on the host's loopback `port`."""
        return "127.0.0.1", port

    def admin_port(self) -> int | None:
        return None  # a free port each

    def bootstrap_path(self, workdir: Path, workload: str) -> Path:
        return workdir / f"{workload}.envoy.json"

    def write_bootstrap(self, path: Path, text: str) -> None:
        write_private(path, text)

    def envoy_argv(self, workload: str, argv: list[str]) -> list[str]:
        return argv

    def app_argv(self, pod: str, argv: list[str]) -> list[str]:
        return argv

    def close(self) -> None:
        return None


def pick_mode(env: Mapping[str, str]) -> tuple[str, str]:
    """(mode, why): INTERCEPTION_MODE if set, else REDIRECT when it can work here."""
    asked = env.get("INTERCEPTION_MODE", "").strip().upper()
    if asked:
        if asked not in MODES:
            raise ValueError(f"INTERCEPTION_MODE={asked}: must be REDIRECT or NONE")
        return asked, "INTERCEPTION_MODE set"
    if os.geteuid() != 0:
        return "NONE", "not root"
    missing = [tool for tool in ("ip", "iptables", "setpriv") if shutil.which(tool) is None]
    if missing:
        return "NONE", f"{', '.join(missing)} not installed"
    return "REDIRECT", "root, with ip and iptables"


def make_mode(name: str, workdir: Path, gateway_port: int, reason: str = "") -> Mode:
    """The mode object for `name` (REDIRECT needs root)."""
    if name == "NONE":
        return NoneMode(reason)
    # Imported here: redirect_mode builds on this module's Mode and write_private.
    from meshplane.local.redirect_mode import RedirectMode

    return RedirectMode(workdir, gateway_port)
