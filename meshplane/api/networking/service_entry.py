"""ServiceEntry and WorkloadEntry: services and workloads declared outside Kubernetes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SEPort:
    number: int
    protocol: str
    name: str
    target_port: int | None = None


@dataclass(frozen=True)
class WorkloadEntrySpec:
    """Also the shape of ServiceEntry.spec.endpoints[]. `ports` maps port name -> port."""

    address: str
    ports: Mapping[str, int] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    network: str = ""
    locality: str = ""
    weight: int = 0
    service_account: str = ""


@dataclass(frozen=True)
class ServiceEntrySpec:
    hosts: tuple[str, ...]
    ports: tuple[SEPort, ...]
    addresses: tuple[str, ...] = ()
    location: str = "MESH_EXTERNAL"  # or MESH_INTERNAL
    resolution: str = "NONE"  # NONE | STATIC | DNS | DNS_ROUND_ROBIN
    endpoints: tuple[WorkloadEntrySpec, ...] = ()
    workload_selector: Mapping[str, str] | None = None
    export_to: tuple[str, ...] = ()
    subject_alt_names: tuple[str, ...] = ()
