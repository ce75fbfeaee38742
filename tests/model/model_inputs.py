"""Small manifest builders shared by the model tests (plain dicts, as YAML would give)."""

from __future__ import annotations

from typing import Any

from meshplane.sources.events import Event, Op, Origin

NET = "networking.istio.io/v1"


def obj(kind: str, name: str, ns: str = "default", spec: Any = None, api: str = NET,
        labels: dict[str, str] | None = None, **top: Any) -> dict[str, Any]:  # fmt: skip
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    m: dict[str, Any] = {"apiVersion": api, "kind": kind, "metadata": meta, **top}
    if spec is not None:
        m["spec"] = spec
    return m


def up(manifest: dict[str, Any], path: str = "a.yaml", doc: int = 0) -> Event:
    return Event(Op.UPSERT, manifest, Origin(path, doc, doc * 10 + 1))


def down(manifest: dict[str, Any], path: str = "a.yaml") -> Event:
    return Event(Op.DELETE, manifest, Origin(path))


def service(name: str, ns: str = "default", ports: Any = None, selector: Any = None,
            **kw: Any) -> dict[str, Any]:  # fmt: skip
    spec = {"ports": ports or [{"name": "http", "port": 9080}], "clusterIP": "10.0.0.1", **kw}
    if selector:
        spec["selector"] = selector
    return obj("Service", name, ns, spec, api="v1")


def pod(
    name: str, ip: str, labels: dict[str, str], ns: str = "default", sa: str = "sa"
) -> dict[str, Any]:
    return obj("Pod", name, ns, {"serviceAccountName": sa}, api="v1", labels=labels,
               status={"podIP": ip, "phase": "Running"})  # fmt: skip


def endpoint_slice(name: str, svc: str, addrs: list[tuple[str, str]], ns: str = "default",
                   port: int = 9080, port_name: str = "http") -> dict[str, Any]:  # fmt: skip
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True},
                       "targetRef": {"kind": "Pod", "name": pod_name, "namespace": ns}}
                      for ip, pod_name in addrs],
        "ports": [{"name": port_name, "port": port}],
    }  # fmt: skip


def dr(
    name: str, host: str, ns: str = "default", subsets: tuple[str, ...] = (), **spec: Any
) -> dict[str, Any]:
    body = {"host": host, **spec}
    if subsets:
        body["subsets"] = [{"name": s, "labels": {"version": s}} for s in subsets]
    return obj("DestinationRule", name, ns, body)


def vs(name: str, hosts: list[str], dest: str, ns: str = "default", **spec: Any) -> dict[str, Any]:
    body = {"hosts": hosts, "http": [{"route": [{"destination": {"host": dest}}]}], **spec}
    return obj("VirtualService", name, ns, body)
