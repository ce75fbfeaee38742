"""The service registry's values: services and their endpoints, whatever source declared them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServicePort:
    """A service port. `protocol` is Istio's (HTTP, HTTP2, GRPC, HTTPS, TCP, TLS, ...),
    derived from the port name prefix or appProtocol for Kubernetes services."""

    name: str
    number: int
    protocol: str
    target_port: int | None = None


@dataclass(frozen=True)
class Service:
    """A host the mesh can route to (Kubernetes Service or one ServiceEntry host).

    `hostname` is the FQDN (``reviews.default.svc.cluster.local``). `resolution`
    follows ServiceEntry: STATIC (EDS), DNS, DNS_ROUND_ROBIN or NONE (passthrough).
    `revision` changes iff anything a translator reads from it changes (endpoints
    excluded: they change on their own path).
    """

    hostname: str
    namespace: str
    name: str
    ports: tuple[ServicePort, ...]
    addresses: tuple[str, ...] = ()
    resolution: str = "STATIC"
    location: str = "MESH_INTERNAL"
    export_to: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    source: str = "kubernetes"  # kubernetes | serviceentry
    revision: str = ""
    subject_alt_names: tuple[str, ...] = ()
    """A ServiceEntry's `subjectAltNames`: identities its endpoints may present, checked
    with those of its workloads' service accounts by mesh mTLS clients (Istio)."""
    selector: tuple[tuple[str, str], ...] = ()
    """A Kubernetes Service's pod selector, sorted (none: selects nothing). Only views read
    it (which Services select a gateway proxy), so it is not part of `revision`."""

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.number == number), None)


@dataclass(frozen=True)
class Endpoint:
    """One workload instance behind one service port.

    `service_port` is the service's port number; `port` is where the workload
    listens. `labels` are the workload's (pod or WorkloadEntry) labels, used to
    select DestinationRule subsets.
    """

    hostname: str
    service_port: int
    address: str
    port: int
    labels: Mapping[str, str] = field(default_factory=dict)
    namespace: str = ""
    service_account: str = ""
    locality: str = ""
    weight: int = 1
    healthy: bool = True
    workload: str = ""  # pod or WorkloadEntry name, for debugging
