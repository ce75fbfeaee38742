"""What SotW and Delta streams share: per-type progress, request kinds, outgoing responses.

Sync status, metrics and the ADS servicer read these fields, whichever protocol the
stream speaks, so both state machines keep them with the same meaning. `Handover` plans
make-before-break pushes (rule 35) from them, the same way for both protocols.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from meshplane.xds import type_urls
from meshplane.xds.snapshot import CachedResource, Snapshot, TypeResources, route_names


class RequestKind(enum.Enum):
    """How a request relates to what was sent for its type."""

    INITIAL = "initial"
    """No response for this type yet on this stream."""
    ACK = "ack"
    NACK = "nack"
    STALE = "stale"
    """Its nonce is not the latest sent for the type (SotW: ignored; Delta: subscriptions only)."""


@dataclass
class RequestOutcome:
    """The result of feeding one request to a stream's state."""

    type_url: str
    kind: RequestKind
    error: str | None = None
    acked_version: str = ""


@dataclass
class TypeProgress:
    """Per stream, per type: what was requested, sent, acknowledged or rejected."""

    type_url: str
    requested: bool = False
    nonce: str = ""
    """Nonce of the last response sent for this type ("" before the first)."""
    pending: bool = False
    """A response is out and its ACK/NACK has not arrived (rule 17: at most one)."""
    sent_version: str = ""
    acked_version: str = ""
    error: str | None = None
    """Envoy's message from the last NACK, cleared by a later ACK."""
    held: Mapping[str, CachedResource] = field(default_factory=dict)
    """Name -> resource this client was sent and still subscribes to."""
    drops_absent: bool = False
    """Whether a resource left out of a response is deleted by the client (SotW LDS/CDS
    full state, every Delta type through removed_resources)."""
    ttl_sent: float | None = None
    """The TTL the held resources carry (rules 42/43; None: none, or a client without TTLs)."""
    refreshed_at: float = 0.0
    """Monotonic time the TTL of everything held was last refreshed (full send or heartbeat)."""
    heartbeat_out: bool = False
    """The response in flight is a heartbeat: nothing the client holds is changing."""

    def selected(self, resources: TypeResources) -> Mapping[str, CachedResource]:
        """The resources of `resources` this client subscribes to."""
        raise NotImplementedError

    def covers(self, names: Iterable[str]) -> bool:
        """Whether this client subscribes to every one of `names`."""
        raise NotImplementedError

    def settled(self, resources: TypeResources) -> bool:
        """Whether the client acknowledged the current content of all it subscribes to."""
        if (self.pending and not self.heartbeat_out) or self.error is not None:
            return False
        for name, resource in self.selected(resources).items():
            had = self.held.get(name)
            if had is None or had.version != resource.version:
                return False
        return True

    def record_reply(self, error: str | None, acked_version: str) -> RequestKind:
        """An ACK or NACK of the response with the latest nonce."""
        self.pending = False
        self.heartbeat_out = False
        if error is not None:
            self.error = error
            return RequestKind.NACK
        self.acked_version = acked_version
        self.error = None
        return RequestKind.ACK


@dataclass(frozen=True)
class Outgoing:
    """One response ready to write: encoded bytes (with nonce) and what it carried."""

    type_url: str
    version: str
    nonce: str
    data: bytes
    resources: Sequence[CachedResource] = ()
    removed: Sequence[str] = ()
    heartbeat: bool = False
    """Only refreshes TTLs (rule 43): no resource in it changes anything."""


class Handover:
    """Rule 35 for one stream: new clusters before the routes, stale clusters removed last.

    When a snapshot drops clusters the client holds while its listeners or routes change,
    cutting them at once breaks the routes still in use until the new routes arrive (503
    "no cluster", istio#23956). So CDS first carries the new clusters plus the stale ones
    (its own version, the hash of that union), and a client that drops what a response
    leaves out keeps the stale clusters' endpoints too. The stale ones go once LDS and RDS
    have been ACKed at the snapshot's content, covering every route name its listeners
    use. A later snapshot simply joins the union. Listeners are left alone: Envoy drains a
    removed listener itself. While a CDS response that added clusters is unanswered, LDS
    and RDS wait: Envoy holds that ACK until the new clusters are warm (its
    ClusterManagerImpl::updateClusterCounts is meant for exactly this), so routes never
    point at a cluster that is still warming. EDS never waits on it (rule 37).
    """

    def __init__(self) -> None:
        self.retaining = False
        """The last plan kept stale resources."""
        self._routes_wait = False
        self._memo: dict[str, tuple[TypeResources, frozenset[object], TypeResources]] = {}

    def plan(
        self, states: Mapping[str, TypeProgress], snapshot: Snapshot
    ) -> dict[str, TypeResources]:
        """Type URL -> what to serve this stream now, in place of the snapshot's own."""
        plan = {t: snapshot.get(t) for t in type_urls.PUSH_ORDER}
        self.retaining = False
        cds = states.get(type_urls.CLUSTER)
        if cds is None or not cds.drops_absent:
            return plan
        clusters = plan[type_urls.CLUSTER]
        if cds.held is clusters.resources:
            return plan  # a SotW wildcard client holding exactly this snapshot's clusters
        stale = {n: r for n, r in cds.held.items() if n not in clusters.resources}
        if not stale or _routes_settled(states, snapshot):
            return plan
        self.retaining = True
        plan[type_urls.CLUSTER] = self._including(clusters, stale)
        eds = states.get(type_urls.ENDPOINT)
        if eds is not None and eds.drops_absent:
            endpoints = plan[type_urls.ENDPOINT]
            eds_names = {r.eds_name for r in stale.values() if r.eds_name is not None}
            kept = {
                n: eds.held[n]
                for n in sorted(eds_names)
                if n in eds.held and n not in endpoints.resources
            }
            if kept:
                plan[type_urls.ENDPOINT] = self._including(endpoints, kept)
        return plan

    def clusters_sent(self, before: Mapping[str, CachedResource], sent: Outgoing) -> None:
        """Note a CDS response; `before` is what the client held until then."""
        # A stream's first CDS needs no wait: Envoy asks for LDS only once it is warm.
        self._routes_wait = bool(before) and any(r.name not in before for r in sent.resources)

    def routes_wait(self, states: Mapping[str, TypeProgress]) -> bool:
        """Whether LDS/RDS must wait for the client to answer the CDS that added clusters."""
        cds = states.get(type_urls.CLUSTER)
        return self._routes_wait and cds is not None and cds.pending

    def _including(self, base: TypeResources, extra: Mapping[str, CachedResource]) -> TypeResources:
        # Memoized so each wake of an unchanged stream does not rehash the union.
        key = frozenset(extra.items())
        found = self._memo.get(base.type_url)
        if found is not None and found[0] is base and found[1] == key:
            return found[2]
        made = base.including(extra)
        self._memo[base.type_url] = (base, key, made)
        return made


def _routes_settled(states: Mapping[str, TypeProgress], snapshot: Snapshot) -> bool:
    """Whether the client runs the snapshot's listeners and routes (rule 35's last step)."""
    lds = states.get(type_urls.LISTENER)
    used: set[str] = set()
    if lds is not None and lds.requested:
        listeners = snapshot.get(type_urls.LISTENER)
        if not lds.settled(listeners):
            return False
        for listener in lds.selected(listeners).values():
            used |= route_names(listener)
    rds = states.get(type_urls.ROUTE)
    if rds is None or not rds.requested:
        return True
    return rds.covers(used) and rds.settled(snapshot.get(type_urls.ROUTE))
