"""A connected Envoy as the mesh sees it, parsed from its xDS node id and metadata."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PROXY_TYPES = ("sidecar", "router")
# Node metadata the xDS server itself sets (over whatever the proxy sent): true when the
# stream is authenticated on the TLS port, so the proxy is served its SDS certificates.
WORKLOAD_CERTS_METADATA = "MESHPLANE_WORKLOAD_CERTS"


class BadNode(ValueError):
    """The node id or metadata does not follow Istio's format."""


@dataclass(frozen=True)
class Proxy:
    """Identity and placement of one proxy.

    `id` is Istio's ``TYPE~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local``.
    """

    id: str
    type: str
    ip: str
    name: str
    namespace: str
    dns_domain: str
    service_account: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    instance_ips: tuple[str, ...] = ()
    workload_name: str = ""
    interception_mode: str = "REDIRECT"
    workload_certs: bool = False  # served SDS `default`/`ROOTCA` (see WORKLOAD_CERTS_METADATA)

    @property
    def short_name(self) -> str:
        """``NAME.NAMESPACE``, as istioctl prints it."""
        return f"{self.name}.{self.namespace}"

    @classmethod
    def from_node(cls, node_id: str, metadata: Mapping[str, Any] | None = None) -> Proxy:
        """Parse an Envoy node; metadata keys as Istio's (NAMESPACE, LABELS, ...)."""
        parts = node_id.split("~")
        if len(parts) != 4:
            raise BadNode(f"node id {node_id!r}: want TYPE~IP~NAME.NAMESPACE~DOMAIN")
        ptype, ip, pod, domain = parts
        if ptype not in PROXY_TYPES:
            raise BadNode(f"node id {node_id!r}: type {ptype!r} is not one of {PROXY_TYPES}")
        md = dict(metadata or {})
        name, _, ns_from_id = pod.partition(".")
        namespace = str(md.get("NAMESPACE") or ns_from_id or domain.split(".")[0])
        if not name or not namespace:
            raise BadNode(f"node id {node_id!r}: missing name or namespace")
        raw_labels = md.get("LABELS") or {}
        if not isinstance(raw_labels, Mapping):
            raise BadNode("metadata LABELS must be a map")
        raw_ips = md.get("INSTANCE_IPS") or ip
        ips = raw_ips.split(",") if isinstance(raw_ips, str) else [str(x) for x in raw_ips]
        mode = str(md.get("INTERCEPTION_MODE") or "REDIRECT").upper()
        return cls(
            id=node_id,
            type=ptype,
            ip=ip,
            name=name,
            namespace=namespace,
            dns_domain=domain,
            service_account=str(md.get("SERVICE_ACCOUNT") or "default"),
            labels={str(k): str(v) for k, v in raw_labels.items()},
            instance_ips=tuple(i.strip() for i in ips if i.strip()),
            workload_name=str(md.get("WORKLOAD_NAME") or name),
            interception_mode=mode,
            workload_certs=md.get(WORKLOAD_CERTS_METADATA) is True,
        )
