"""Change: what one applied event altered, so the pusher can push EDS alone when it may.

Istio splits pushes into Full (CDS/LDS/RDS recomputed) and incremental EDS; the worst Istio
complaint at scale is full pushes caused by endpoint churn. A Change is `endpoints_only`
exactly when no config object and no service shape changed: EndpointSlices, and Pods or
WorkloadEntries (their addresses, ports, labels, service accounts, health) only feed
endpoints. Services, ServiceEntries (their ports, hosts, resolution) and every Istio config
kind are full changes.

Note for consumers: a proxy's inbound ports are derived from the endpoints at its own
address, so an endpoints-only change can still change one proxy's view key (its own
workload appearing). Compare view keys before pushing EDS only.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshplane.api.meta import ConfigKey

_EMPTY: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Change:
    """`configs`: keys of changed objects that need a full push (endpoint-only kinds are not
    listed); `service_hosts`: hosts whose Service shape changed (or appeared/went);
    `endpoint_hosts`: hosts whose endpoints may have changed."""

    configs: frozenset[ConfigKey] = frozenset()
    endpoint_hosts: frozenset[str] = _EMPTY
    service_hosts: frozenset[str] = _EMPTY

    def merge(self, other: Change) -> Change:
        if other.is_empty:
            return self
        if self.is_empty:
            return other
        return Change(
            self.configs | other.configs,
            self.endpoint_hosts | other.endpoint_hosts,
            self.service_hosts | other.service_hosts,
        )

    @property
    def is_empty(self) -> bool:
        return not (self.configs or self.endpoint_hosts or self.service_hosts)

    @property
    def endpoints_only(self) -> bool:
        return bool(self.endpoint_hosts) and not self.configs and not self.service_hosts


NO_CHANGE = Change()
