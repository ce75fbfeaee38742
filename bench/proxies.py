"""One simulated Envoy's client-side state: identity, subscriptions, what it holds, timings.

Kept apart from the gRPC streams (`adsload`) so the bookkeeping that decides "this proxy has
its full config" or "this change reached it" is plain data, readable and testable on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from bench.xdsinfo import CDS, EDS, LDS, RDS, TYPES, Probe, ResourceInfo


def proxy_node(index: int, namespaces: int) -> base_pb2.Node:
    """Node of the `index`-th load proxy, identified the way Istio sidecars are."""
    ns = f"ns-{index % namespaces}"
    ip = f"10.255.{(index >> 8) & 255}.{index & 255}"
    name = f"load-{index}"
    metadata = struct_pb2.Struct()
    metadata.update(
        {
            "NAMESPACE": ns,
            "SERVICE_ACCOUNT": "load",
            "LABELS": {"app": "load", "version": "v1"},
            "INSTANCE_IPS": ip,
            "WORKLOAD_NAME": name,
            "INTERCEPTION_MODE": "REDIRECT",
        }
    )
    return base_pb2.Node(
        id=f"sidecar~{ip}~{name}.{ns}~{ns}.svc.cluster.local",
        cluster=f"load.{ns}",
        metadata=metadata,
        user_agent_name="envoy",
    )


@dataclass
class Arrival:
    """One response: the version it carried, when it arrived and was ACKed, its size."""

    version: str
    received: float
    acked: float
    size: int
    resources: int


@dataclass
class TypeState:
    """What one proxy holds of one type, and the log of what it was sent."""

    held: dict[str, ResourceInfo] = field(default_factory=dict)
    refs: frozenset[str] | None = None  # names `held` makes a proxy subscribe to; None: stale
    absent: set[str] = field(default_factory=set)  # Delta: subscribed names the server lacks
    subscribed: frozenset[str] = frozenset()
    request_names: list[str] = field(default_factory=list)  # `subscribed`, sorted once
    version: str = ""
    nonce: str = ""
    acks: int = 0
    arrivals: list[Arrival] = field(default_factory=list)
    size: int = 0


class SimulatedProxy:
    """One ADS stream's client side: subscriptions, ACKs and timings, no I/O of its own."""

    def __init__(self, index: int, node: base_pb2.Node) -> None:
        self.index = index
        self.node = node
        self.types = {t: TypeState() for t in TYPES}
        self.connected_at = 0.0
        self.configured_at: float | None = None
        self.probe: Probe | None = None
        self.probe_seen = False
        self.probe_hit_at: float | None = None
        self.error: str | None = None

    def is_configured(self) -> bool:
        """CDS and LDS ACKed, and every EDS and RDS name it subscribes to answered."""
        cds, lds = self.types[CDS], self.types[LDS]
        if not cds.acks or not lds.acks:
            return False
        for t in (EDS, RDS):
            state = self.types[t]
            if state.subscribed - state.held.keys() - state.absent:
                return False
        return True

    def arm(self, probe: Probe) -> bool:
        """Start waiting for `probe`; returns whether this proxy is affected by it."""
        self.probe = probe
        self.probe_seen = probe.sees(self.types[probe.type_url].held)
        self.probe_hit_at = None
        return self.probe_seen

    def wanted(self, type_url: str) -> frozenset[str]:
        """Names to subscribe to for a dependent type, from what its parent type holds."""
        parent = self.types[CDS if type_url == EDS else LDS]
        if parent.refs is None:
            parent.refs = frozenset(ref for info in parent.held.values() for ref in info.refs)
        return parent.refs

    def after_ack(self, type_url: str, infos: Sequence[ResourceInfo], acked: float) -> None:
        """Bookkeeping once the ACK of a response is written: readiness and probe timing."""
        if self.configured_at is None and self.is_configured():
            self.configured_at = acked
        probe = self.probe
        if (
            probe is not None
            and self.probe_hit_at is None
            and probe.type_url == type_url
            and any(probe.arrived(info) for info in infos)
        ):
            self.probe_hit_at = acked
