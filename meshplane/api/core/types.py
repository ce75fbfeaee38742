"""Typed specs for Kubernetes Service, EndpointSlice, Pod and Namespace (what the mesh reads)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServicePortSpec:
    name: str
    port: int
    target_port: int | str | None = None
    protocol: str = "TCP"
    app_protocol: str | None = None


@dataclass(frozen=True)
class ServiceSpec:
    """Kubernetes Service: ports and selector; `cluster_ip` is the VIP ("None" = headless)."""

    ports: tuple[ServicePortSpec, ...]
    selector: Mapping[str, str] | None = None
    cluster_ip: str | None = None
    type: str = "ClusterIP"
    external_name: str | None = None


@dataclass(frozen=True)
class TargetRef:
    kind: str
    name: str
    namespace: str = ""


@dataclass(frozen=True)
class EndpointSpec:
    addresses: tuple[str, ...]
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    hostname: str | None = None
    node_name: str | None = None
    zone: str | None = None
    target_ref: TargetRef | None = None


@dataclass(frozen=True)
class EndpointPortSpec:
    name: str
    port: int
    protocol: str = "TCP"
    app_protocol: str | None = None


@dataclass(frozen=True)
class EndpointSliceSpec:
    """discovery.k8s.io/v1 EndpointSlice; `service_name` from label kubernetes.io/service-name."""

    service_name: str
    address_type: str
    endpoints: tuple[EndpointSpec, ...]
    ports: tuple[EndpointPortSpec, ...]


@dataclass(frozen=True)
class PodSpec:
    """What a Pod contributes to an endpoint: identity, labels live in ObjectMeta."""

    service_account: str = "default"
    ip: str | None = None
    node_name: str | None = None
    phase: str = "Running"
    container_ports: tuple[int, ...] = ()
    # containerPort by port name, to resolve a Service's named targetPort.
    named_ports: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class NamespaceSpec:
    labels: Mapping[str, str] = field(default_factory=dict)
