"""ServiceEntry and WorkloadEntry: services and workloads declared outside Kubernetes."""

from __future__ import annotations

from meshplane.api import formats
from meshplane.api.fields import Fields
from meshplane.api.networking.service_entry import SEPort, ServiceEntrySpec, WorkloadEntrySpec
from meshplane.api.parsers.common import export_to, hosts
from meshplane.api.parsers.gateway import port

RESOLUTIONS = ("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN")
LOCATIONS = ("MESH_EXTERNAL", "MESH_INTERNAL")


def service_entry(f: Fields) -> ServiceEntrySpec:
    f.keys(
        (
            "hosts",
            "addresses",
            "ports",
            "location",
            "resolution",
            "endpoints",
            "workloadSelector",
            "exportTo",
            "subjectAltNames",
        )
    )
    ports = tuple(
        SEPort(p.number, p.protocol, p.name, p.target_port)
        for p in (port(sub) for sub in f.objs("ports", required=True))
        if p is not None
    )
    selector = None
    sel = f.obj("workloadSelector")
    if sel is not None:
        sel.keys(("labels",))
        selector = sel.str_map("labels", labels=True) or {}
    spec = ServiceEntrySpec(
        hosts=hosts(f),
        ports=ports,
        addresses=f.str_list("addresses", check=formats.cidr_problem),
        location=f.enum("location", LOCATIONS) or "MESH_EXTERNAL",
        resolution=f.enum("resolution", RESOLUTIONS) or "NONE",
        endpoints=f.each("endpoints", workload_entry),
        workload_selector=selector,
        export_to=export_to(f),
        subject_alt_names=f.str_list("subjectAltNames"),
    )
    _check_resolution(f, spec)
    return spec


def _check_resolution(f: Fields, spec: ServiceEntrySpec) -> None:
    if f.has("endpoints") and spec.workload_selector is not None:
        f.error("workloadSelector", "cannot be used together with endpoints")
    if spec.resolution == "STATIC" and not f.has("endpoints") and spec.workload_selector is None:
        f.error("endpoints", "resolution STATIC needs endpoints or a workloadSelector")
    if spec.resolution in ("DNS", "DNS_ROUND_ROBIN"):
        for i, host in enumerate(spec.hosts):
            if "*" in host:
                f.problems.error(
                    f"{f.at('hosts')}[{i}]",
                    f"resolution {spec.resolution} needs hosts without wildcards",
                )
        if spec.resolution == "DNS_ROUND_ROBIN" and len(spec.endpoints) > 1:
            f.error("endpoints", "resolution DNS_ROUND_ROBIN allows at most one endpoint")
    if spec.resolution == "STATIC":
        for i, ep in enumerate(spec.endpoints):
            if not (formats.is_ip(ep.address) or ep.address.startswith("unix://")):
                f.problems.error(
                    f"{f.at('endpoints')}[{i}].address", "resolution STATIC needs IP addresses"
                )
    names = [p.name for p in spec.ports]
    for i, p in enumerate(spec.ports):
        if p.name and names.index(p.name) != i:
            f.problems.error(f"{f.at('ports')}[{i}].name", f"duplicate port name {p.name!r}")


def workload_entry(f: Fields) -> WorkloadEntrySpec | None:
    f.keys(
        ("address", "ports", "labels", "network", "locality", "weight", "serviceAccount"),
    )
    address = f.text("address")
    ports: dict[str, int] = {}
    raw = f.obj("ports")
    if raw is not None:
        for name in raw.data:
            number = raw.port(str(name))
            if number is not None:
                ports[str(name)] = number
    if address is None and not f.has("network"):
        f.error("address", "required field is missing")
    return WorkloadEntrySpec(
        address=address or "",
        ports=ports,
        labels=f.str_map("labels", labels=True) or {},
        network=f.text("network") or "",
        locality=f.text("locality") or "",
        weight=f.integer("weight", lo=0) or 0,
        service_account=f.text("serviceAccount") or "",
    )
