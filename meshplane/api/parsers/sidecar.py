"""Sidecar: the egress hosts a proxy sees and the listeners it opens (ingress, captureMode)."""

from __future__ import annotations

from meshplane.api import formats
from meshplane.api.fields import Fields
from meshplane.api.networking.sidecar import (
    IstioEgressListener,
    IstioIngressListener,
    SidecarPort,
    SidecarSpec,
)
from meshplane.api.parsers.gateway import port

CAPTURE_MODES = ("DEFAULT", "IPTABLES", "NONE")


def sidecar(f: Fields) -> SidecarSpec:
    f.keys(
        ("workloadSelector", "ingress", "egress", "outboundTrafficPolicy"),
        ignored=("inboundConnectionPool",),
    )
    selector = None
    sel = f.obj("workloadSelector")
    if sel is not None:
        sel.keys(("labels",))
        selector = sel.str_map("labels", labels=True) or {}
    policy = None
    otp = f.obj("outboundTrafficPolicy")
    if otp is not None:
        otp.keys(("mode",), ignored=("egressProxy",))
        policy = otp.enum("mode", ("ALLOW_ANY", "REGISTRY_ONLY"))
    egress = f.each("egress", _egress)
    return SidecarSpec(
        workload_selector=selector,
        ingress=f.each("ingress", _ingress),
        egress=egress,
        outbound_traffic_policy=policy,
    )


def _sidecar_port(f: Fields) -> SidecarPort | None:
    p = port(f, name_required=False)
    return SidecarPort(p.number, p.protocol, p.name) if p is not None else None


def _bind(f: Fields) -> str | None:
    bind = f.text("bind")
    if bind is not None and not bind.startswith("unix://") and (reason := formats.ip_problem(bind)):
        f.error("bind", reason)
        return None
    return bind


def _egress(f: Fields) -> IstioEgressListener:
    f.keys(("hosts", "port", "bind", "captureMode"))
    hosts = f.str_list("hosts", required=True, check=_egress_host_problem)
    return IstioEgressListener(
        hosts=hosts,
        port=f.read("port", _sidecar_port),
        bind=_bind(f),
        capture_mode=f.enum("captureMode", CAPTURE_MODES) or "DEFAULT",
    )


def _egress_host_problem(value: str) -> str:
    if "/" not in value:
        return f"{value!r} must be 'namespace/dnsName' (e.g. './*', 'istio-system/*')"
    return formats.namespaced_host_problem(value)


def _ingress(f: Fields) -> IstioIngressListener | None:
    f.keys(("port", "bind", "captureMode", "defaultEndpoint"), ignored=("tls", "connectionPool"))
    p = f.read("port", _sidecar_port)
    if not f.has("port"):
        f.error("port", "required field is missing")
    endpoint = f.text("defaultEndpoint")
    if endpoint is not None and not _endpoint_ok(endpoint):
        f.error("defaultEndpoint", f"{endpoint!r} must be IP:PORT or unix:///path")
    if p is None:
        return None
    return IstioIngressListener(
        port=p,
        bind=_bind(f),
        capture_mode=f.enum("captureMode", CAPTURE_MODES) or "DEFAULT",
        default_endpoint=endpoint,
    )


def _endpoint_ok(value: str) -> bool:
    if value.startswith("unix://"):
        return len(value) > len("unix://")
    host, _, port_s = value.rpartition(":")
    host = host.strip("[]")
    return (
        (formats.is_ip(host) or host == "0.0.0.0") and port_s.isdigit() and 0 < int(port_s) < 65536
    )
