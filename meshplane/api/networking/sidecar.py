"""Sidecar: what a proxy sees (egress hosts) and where it listens (ingress, captureMode NONE)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class SidecarPort:
    number: int
    protocol: str
    name: str


@dataclass(frozen=True)
class IstioEgressListener:
    hosts: tuple[str, ...]  # "ns/dnsName", "./*", "*/*", "~/*"
    port: SidecarPort | None = None
    bind: str | None = None
    capture_mode: str = "DEFAULT"  # DEFAULT | IPTABLES | NONE


@dataclass(frozen=True)
class IstioIngressListener:
    port: SidecarPort
    bind: str | None = None
    capture_mode: str = "DEFAULT"
    default_endpoint: str | None = None  # "127.0.0.1:8080" or "unix://..."


@dataclass(frozen=True)
class SidecarSpec:
    workload_selector: Mapping[str, str] | None = None
    ingress: tuple[IstioIngressListener, ...] = ()
    egress: tuple[IstioEgressListener, ...] = ()
    outbound_traffic_policy: str | None = None  # ALLOW_ANY | REGISTRY_ONLY
