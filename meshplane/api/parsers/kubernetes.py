"""Kubernetes Service, EndpointSlice, Pod and Namespace: only the fields the mesh reads.

These objects come from the API server or `kubectl get -o yaml` with many fields the mesh
has no use for (status, managedFields, ...), so unknown fields are not errors here, unlike
the Istio kinds: they are not mesh config, and rejecting them would reject real clusters.
"""

from __future__ import annotations

from meshplane.api import formats
from meshplane.api.core.types import (
    EndpointPortSpec,
    EndpointSliceSpec,
    EndpointSpec,
    NamespaceSpec,
    PodSpec,
    ServicePortSpec,
    ServiceSpec,
    TargetRef,
)
from meshplane.api.fields import Fields
from meshplane.api.meta import ObjectMeta

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"


def service(root: Fields, meta: ObjectMeta) -> ServiceSpec:
    if reason := formats.dns1123_label_problem(meta.name):
        root.problems.error("metadata.name", reason.replace("DNS-1123", "DNS-1035"))
    f = root.obj("spec") or Fields({}, "spec", root.problems)
    ports = f.each("ports", _service_port)
    names = [p.name for p in ports]
    if len(ports) > 1:
        for i, p in enumerate(ports):
            if not p.name:
                f.problems.error(
                    f"spec.ports[{i}].name", "required when a Service has several ports"
                )
            elif names.index(p.name) != i:
                f.problems.error(f"spec.ports[{i}].name", f"duplicate port name {p.name!r}")
    selector = f.str_map("selector", labels=True)
    svc_type = f.text("type") or "ClusterIP"
    external = f.text("externalName")
    if svc_type == "ExternalName" and not external:
        f.error("externalName", "required for type ExternalName")
    return ServiceSpec(
        ports=ports,
        selector=selector,
        cluster_ip=f.text("clusterIP"),
        type=svc_type,
        external_name=external,
    )


def _service_port(f: Fields) -> ServicePortSpec | None:
    number = f.port("port", required=True)
    target: int | str | None = None
    raw = f.data.get("targetPort")
    if isinstance(raw, int) and not isinstance(raw, bool):
        target = f.port("targetPort")
    elif isinstance(raw, str):
        target = int(raw) if raw.isdigit() else raw
    elif raw is not None:
        f.error("targetPort", "must be a port number or a port name")
    if number is None:
        return None
    return ServicePortSpec(
        name=f.text("name") or "",
        port=number,
        target_port=target,
        protocol=f.enum("protocol", ("TCP", "UDP", "SCTP")) or "TCP",
        app_protocol=f.text("appProtocol"),
    )


def endpoint_slice(root: Fields, meta: ObjectMeta) -> EndpointSliceSpec:
    service_name = meta.labels.get(SERVICE_NAME_LABEL, "")
    if not service_name:
        root.problems.error(f"metadata.labels.{SERVICE_NAME_LABEL}", "required field is missing")
    address_type = root.enum("addressType", ("IPv4", "IPv6", "FQDN"), required=True)
    return EndpointSliceSpec(
        service_name=service_name,
        address_type=address_type or "IPv4",
        endpoints=root.each("endpoints", _endpoint),
        ports=root.each("ports", _endpoint_port),
    )


def _endpoint(f: Fields) -> EndpointSpec:
    conditions = f.obj("conditions") or Fields({}, f.at("conditions"), f.problems)
    ready = conditions.flag("ready")
    ref = f.obj("targetRef")
    target = None
    if ref is not None:
        target = TargetRef(
            kind=ref.text("kind") or "",
            name=ref.text("name") or "",
            namespace=ref.text("namespace") or "",
        )
    return EndpointSpec(
        addresses=f.str_list("addresses", required=True),
        # Kubernetes: an unknown (absent) ready condition is to be read as ready.
        ready=ready is not False,
        serving=conditions.flag("serving") is not False,
        terminating=bool(conditions.flag("terminating")),
        hostname=f.text("hostname"),
        node_name=f.text("nodeName"),
        zone=f.text("zone"),
        target_ref=target,
    )


def _endpoint_port(f: Fields) -> EndpointPortSpec | None:
    number = f.port("port")
    if number is None:
        return None
    return EndpointPortSpec(
        name=f.text("name") or "",
        port=number,
        protocol=f.text("protocol") or "TCP",
        app_protocol=f.text("appProtocol"),
    )


def pod(root: Fields, meta: ObjectMeta) -> PodSpec:
    spec = root.obj("spec") or Fields({}, "spec", root.problems)
    status = root.obj("status") or Fields({}, "status", root.problems)
    numbers: list[int] = []
    named: dict[str, int] = {}
    for container in spec.objs("containers"):
        for p in container.objs("ports"):
            number = p.port("containerPort", required=True)
            if number is None:
                continue
            numbers.append(number)
            if name := p.text("name"):
                named[name] = number
    ip = status.text("podIP")
    if ip is not None and (reason := formats.ip_problem(ip)):
        status.error("podIP", reason)
        ip = None
    return PodSpec(
        service_account=spec.text("serviceAccountName") or spec.text("serviceAccount") or "default",
        ip=ip,
        node_name=spec.text("nodeName"),
        phase=status.text("phase") or "Running",
        container_ports=tuple(numbers),
        named_ports=named,
    )


def namespace(root: Fields, meta: ObjectMeta) -> NamespaceSpec:
    if reason := formats.dns1123_label_problem(meta.name):
        root.problems.error("metadata.name", reason)
    return NamespaceSpec(labels=dict(meta.labels))
