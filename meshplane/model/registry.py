"""The service registry: Services and their Endpoints from Kubernetes objects and ServiceEntries.

It is incremental because the bench runs a thousand services: each event marks only the
hosts it can affect as dirty, and `endpoints()` recomputes just those. An EndpointSlice
touches its own Service; a Pod touches the hosts whose slices name it and the hosts selected
by label in its namespace; a WorkloadEntry only the latter.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from meshplane.api.core.types import EndpointSliceSpec, PodSpec, ServicePortSpec, ServiceSpec
from meshplane.api.meta import ConfigKey, Object
from meshplane.api.networking.service_entry import ServiceEntrySpec, WorkloadEntrySpec
from meshplane.api.parsers.kubernetes import EXPORT_TO_ANNOTATION
from meshplane.model import workloads
from meshplane.model.changes import NO_CHANGE, Change
from meshplane.model.protocols import normalize, port_protocol
from meshplane.model.services import Endpoint, Service, ServicePort

REGISTRY_KINDS = frozenset(
    {"Service", "EndpointSlice", "Pod", "WorkloadEntry", "ServiceEntry", "Namespace"}
)
NsName = tuple[str, str]


def _with_revision(svc: Service) -> Service:
    shape = repr(
        (svc.hostname, svc.namespace, svc.name, svc.ports, svc.addresses, svc.resolution,
         svc.location, svc.export_to, sorted(svc.labels.items()), svc.source,
         svc.subject_alt_names)
    )  # fmt: skip
    digest = hashlib.sha256(shape.encode()).hexdigest()[:16]
    return Service(**{**svc.__dict__, "revision": digest})


def kubernetes_service(obj: Object[ServiceSpec], domain_suffix: str) -> Service:
    """A Kubernetes Service as Istio sees it: FQDN host, VIP, protocol per port."""
    spec = obj.spec
    ports = tuple(
        ServicePort(
            name=p.name,
            number=p.port,
            protocol=port_protocol(p.name, p.app_protocol, p.protocol),
            target_port=p.target_port if isinstance(p.target_port, int) else None,
        )
        for p in spec.ports
    )
    headless = spec.cluster_ip == "None"
    if spec.type == "ExternalName":
        resolution = "DNS"
    elif headless:
        resolution = "NONE"  # Istio: headless services are passthrough
    else:
        resolution = "STATIC"
    export = obj.meta.annotations.get(EXPORT_TO_ANNOTATION, "")
    return _with_revision(
        Service(
            hostname=f"{obj.name}.{obj.namespace}.{domain_suffix}",
            namespace=obj.namespace,
            name=obj.name,
            ports=ports,
            addresses=(spec.cluster_ip,) if spec.cluster_ip and not headless else (),
            resolution=resolution,
            location="MESH_INTERNAL",
            export_to=tuple(x.strip() for x in export.split(",") if x.strip()),
            labels=dict(obj.meta.labels),
            source="kubernetes",
            selector=tuple(sorted((spec.selector or {}).items())),
        )
    )


def service_entry_services(obj: Object[ServiceEntrySpec]) -> list[Service]:
    """One Service per ServiceEntry host."""
    spec = obj.spec
    ports = tuple(
        ServicePort(p.name, p.number, normalize(p.protocol), p.target_port) for p in spec.ports
    )
    return [
        _with_revision(
            Service(
                hostname=host,
                namespace=obj.namespace,
                name=obj.name,
                ports=ports,
                addresses=spec.addresses,
                resolution=spec.resolution,
                location=spec.location,
                export_to=spec.export_to,
                labels=dict(obj.meta.labels),
                source="serviceentry",
                subject_alt_names=spec.subject_alt_names,
            )
        )
        for host in spec.hosts
    ]


class ServiceRegistry:
    """Mutable builder behind the store; hands out plain mappings for each MeshModel."""

    def __init__(self, domain_suffix: str = "svc.cluster.local") -> None:
        self.domain_suffix = domain_suffix
        self._k8s: dict[NsName, Object[ServiceSpec]] = {}
        self._entries: dict[NsName, Object[ServiceEntrySpec]] = {}
        self._slices: dict[NsName, dict[str, Object[EndpointSliceSpec]]] = defaultdict(dict)
        self._pods: dict[str, dict[str, Object[PodSpec]]] = defaultdict(dict)
        self._wes: dict[str, dict[str, Object[WorkloadEntrySpec]]] = defaultdict(dict)
        # host -> candidate Services, one per declaring object; the first claim wins.
        self._claims: dict[str, dict[ConfigKey, tuple[tuple[int, int], Service]]] = {}
        self._services: dict[str, Service] = {}
        self._endpoints: dict[str, tuple[Endpoint, ...]] = {}
        self._dirty: set[str] = set()
        # Reverse dependencies, to know which hosts a Pod or WorkloadEntry can affect:
        # the slices naming a pod, and the objects selecting workloads by label.
        self._pod_slices: dict[NsName, set[NsName]] = defaultdict(set)
        self._slice_owner: dict[NsName, str] = {}
        self._selectors: dict[str, dict[ConfigKey, Object[Any]]] = defaultdict(dict)
        self.conflicts: dict[str, list[ConfigKey]] = {}

    # -- events -------------------------------------------------------------------------

    def apply(self, old: Object[Any] | None, new: Object[Any] | None) -> Change:
        """Record that `old` became `new` (either may be None) and say what that changed."""
        obj = new or old
        assert obj is not None
        kind, key = obj.kind, (obj.namespace, obj.name)
        if kind == "Service":
            return self._service_changed(key, new, self._k8s)
        if kind == "ServiceEntry":
            return self._service_changed(key, new, self._entries)
        if kind == "EndpointSlice":
            self._slice_changed(old, new)
            hosts = {self._k8s_host(o.namespace, o.spec.service_name) for o in (old, new) if o}
            return self._dirty_endpoints(hosts)
        if kind == "Pod":
            self._store(self._pods[obj.namespace], obj.name, new)
            hosts = {
                self._k8s_host(ns, self._slice_service(ns, name))
                for ns, name in self._pod_slices.get(key, ())
            }
            return self._dirty_endpoints(hosts | self._selected_hosts(old, new))
        if kind == "WorkloadEntry":
            self._store(self._wes[obj.namespace], obj.name, new)
            return self._dirty_endpoints(self._selected_hosts(old, new))
        return Change(configs=frozenset({obj.key}))

    def _slice_changed(self, old: Object[Any] | None, new: Object[Any] | None) -> None:
        for o, add in ((old, False), (new, True)):
            if o is None:
                continue
            ns = o.namespace
            if add:
                self._slices[(ns, o.spec.service_name)][o.name] = o
                self._slice_owner[(ns, o.name)] = o.spec.service_name
            else:
                self._slices[(ns, o.spec.service_name)].pop(o.name, None)
                self._slice_owner.pop((ns, o.name), None)
            for ep in o.spec.endpoints:
                if ep.target_ref is not None and ep.target_ref.kind == "Pod":
                    users = self._pod_slices[(ns, ep.target_ref.name)]
                    (users.add if add else users.discard)((ns, o.name))

    def _slice_service(self, ns: str, slice_name: str) -> str:
        return self._slice_owner.get((ns, slice_name), "")

    def _selected_hosts(self, old: Object[Any] | None, new: Object[Any] | None) -> set[str]:
        """Hosts whose endpoints come from label selection and that select the workload
        before or after the change (Services with EndpointSlices do not select)."""
        obj = new or old
        assert obj is not None
        label_sets = [self._workload_labels(o) for o in (old, new) if o is not None]
        hosts: set[str] = set()
        for owner in self._selectors.get(obj.namespace, {}).values():
            if owner.kind == "Service":
                if self._slices.get((owner.namespace, owner.name)):
                    continue
                selector = owner.spec.selector or {}
            else:
                selector = owner.spec.workload_selector or {}
            if any(workloads.selects(selector, labels) for labels in label_sets):
                hosts.update(s.hostname for s in self._built(owner))
        return hosts

    @staticmethod
    def _workload_labels(o: Object[Any]) -> Mapping[str, str]:
        if o.kind == "WorkloadEntry":
            return workloads.workload_entry_labels(o)
        return o.meta.labels

    @staticmethod
    def _store(table: dict[str, Any], name: str, new: Object[Any] | None) -> None:
        if new is None:
            table.pop(name, None)
        else:
            table[name] = new

    def _k8s_host(self, namespace: str, name: str) -> str:
        return f"{name}.{namespace}.{self.domain_suffix}"

    def _dirty_endpoints(self, hosts: set[str]) -> Change:
        hosts = {h for h in hosts if h in self._services}
        if not hosts:
            return NO_CHANGE
        self._dirty |= hosts
        return Change(endpoint_hosts=frozenset(hosts))

    def _service_changed(
        self, key: NsName, new: Object[Any] | None, table: dict[NsName, Any]
    ) -> Change:
        old = table.pop(key, None)
        if new is not None:
            table[key] = new
        obj = new or old
        assert obj is not None
        config = obj.key
        selectors = self._selectors[obj.namespace]
        selectors.pop(config, None)
        if new is not None and (
            new.spec.selector if new.kind == "Service" else new.spec.workload_selector
        ):
            selectors[config] = new
        hosts: set[str] = set()
        for svc in self._built(old):
            hosts.add(svc.hostname)
            self._claims.get(svc.hostname, {}).pop(config, None)
        for svc in self._built(new):
            hosts.add(svc.hostname)
            order = (0 if svc.source == "kubernetes" else 1, obj.seq)
            self._claims.setdefault(svc.hostname, {})[config] = (order, svc)
        changed = {h for h in hosts if self._elect(h)}
        self._dirty |= hosts
        return Change(
            configs=frozenset({config}),
            endpoint_hosts=frozenset(hosts),
            service_hosts=frozenset(changed),
        )

    def _built(self, obj: Object[Any] | None) -> list[Service]:
        if obj is None:
            return []
        if obj.kind == "Service":
            return [kubernetes_service(obj, self.domain_suffix)]
        return service_entry_services(obj)

    def _elect(self, host: str) -> bool:
        """Pick the Service that owns `host` (Kubernetes first, then the oldest
        ServiceEntry); True when the owner's shape changed."""
        claims = self._claims.get(host) or {}
        if not claims:
            self._claims.pop(host, None)
            self.conflicts.pop(host, None)
            return self._services.pop(host, None) is not None
        ranked = sorted(claims.items(), key=lambda kv: (kv[1][0], kv[0].namespace, kv[0].name))
        winner = ranked[0][1][1]
        if len(ranked) > 1:
            self.conflicts[host] = [k for k, _ in ranked]
        else:
            self.conflicts.pop(host, None)
        before = self._services.get(host)
        self._services[host] = winner
        return before is None or before.revision != winner.revision

    def owner(self, host: str) -> ConfigKey | None:
        claims = self._claims.get(host)
        if not claims:
            return None
        return min(claims.items(), key=lambda kv: (kv[1][0], kv[0].namespace, kv[0].name))[0]

    # -- reads --------------------------------------------------------------------------

    def services(self) -> dict[str, Service]:
        return dict(sorted(self._services.items()))

    def endpoints(self) -> dict[str, tuple[Endpoint, ...]]:
        for host in sorted(self._dirty):
            self._recompute(host)
        self._dirty.clear()
        return dict(sorted(self._endpoints.items()))

    def _recompute(self, host: str) -> None:
        svc = self._services.get(host)
        owner = self.owner(host)
        if svc is None or owner is None:
            self._endpoints.pop(host, None)
            return
        ns_name = (owner.namespace, owner.name)
        if owner.kind == "Service":
            found = self._k8s_endpoints(svc, self._k8s[ns_name])
        else:
            found = self._entry_endpoints(svc, self._entries[ns_name])
        self._endpoints[host] = workloads.sort_endpoints(found)

    def _k8s_endpoints(self, svc: Service, obj: Object[ServiceSpec]) -> list[Endpoint]:
        ns = obj.namespace
        slices = self._slices.get((ns, obj.name))
        if slices:
            found, _ = workloads.from_slices(svc, slices.values(), self._pods.get(ns, {}))
            return found
        if obj.spec.type == "ExternalName" and obj.spec.external_name:
            return workloads.dns_endpoints(svc, obj.spec.external_name)
        selector = obj.spec.selector
        if not selector:
            return []
        pods = self._pods.get(ns, {}).values()
        return workloads.from_pods(svc, obj.spec.ports, selector, pods) + (
            workloads.from_selected_entries(svc, selector, self._wes.get(ns, {}).values())
        )

    def _entry_endpoints(self, svc: Service, obj: Object[ServiceEntrySpec]) -> list[Endpoint]:
        spec = obj.spec
        if spec.endpoints:
            return [
                ep
                for we in spec.endpoints
                for ep in workloads.from_workload_entry(
                    svc, we, namespace=obj.namespace, labels=we.labels
                )
            ]
        if spec.workload_selector is not None:
            ns = obj.namespace
            ports = [_as_k8s_port(p) for p in svc.ports]
            pods = self._pods.get(ns, {}).values()
            selector = spec.workload_selector
            return workloads.from_pods(svc, ports, selector, pods) + (
                workloads.from_selected_entries(svc, selector, self._wes.get(ns, {}).values())
            )
        if spec.resolution in ("DNS", "DNS_ROUND_ROBIN"):
            return workloads.dns_endpoints(svc, svc.hostname)
        return []


def _as_k8s_port(port: ServicePort) -> ServicePortSpec:
    return ServicePortSpec(port.name, port.number, port.target_port)
