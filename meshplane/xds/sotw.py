"""State-of-the-World stream state: subscriptions, nonces, ACK/NACK, when to respond.

Plain classes, no grpc: `SotwSession.handle` takes each DiscoveryRequest, and
`SotwSession.next_response` decides whether this client needs a response for a type from
the given snapshot. Rule numbers refer to shared/reference/xds-protocol.md section 1.

The decision compares the content the subscription selects with what this client was
sent - never with the version the request carries. A NACK therefore parks the type until
the content changes (rule 11): the NACK repeats the previous version, and a cache that
compared versions would resend the rejected config forever (go-control-plane#962).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping

from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest

from meshplane.xds import encoding, type_urls
from meshplane.xds.progress import Outgoing, RequestKind, RequestOutcome, TypeProgress
from meshplane.xds.snapshot import CachedResource, TypeResources, View


class SotwTypeState(TypeProgress):
    """One type on one SotW stream."""

    def __init__(self, type_url: str) -> None:
        super().__init__(type_url)
        self.full_state = type_url in type_urls.FULL_STATE
        self.drops_absent = self.full_state
        self.wildcard = False
        self.names: set[str] = set()
        self.legacy_wildcard_ok = True
        self.sent_digest: str | None = None
        self.ever_sent = False
        self.force = False
        self.initial_version = ""

    def subscription_key(self) -> frozenset[str] | None:
        """None for wildcard (everything), else the subscribed names."""
        return None if self.wildcard else frozenset(self.names)

    def selected(self, resources: TypeResources) -> Mapping[str, CachedResource]:
        """The resources of `resources` this client subscribes to."""
        return resources.view(self.subscription_key()).resources

    def covers(self, names: Iterable[str]) -> bool:
        """Whether this client subscribes to every one of `names`."""
        return self.wildcard or all(n in self.names for n in names)

    def handle(self, req: DiscoveryRequest) -> RequestOutcome:
        """Apply one request for this type."""
        if self.nonce and req.response_nonce != self.nonce:
            # Rule 13: a stale nonce is ignored entirely, subscription included.
            return RequestOutcome(self.type_url, RequestKind.STALE)
        if not self.requested:
            self.requested = True
            self.initial_version = req.version_info
        kind = RequestKind.INITIAL
        error = None
        if req.response_nonce:
            # Rule 10: a NACK is a request with error_detail, nothing else.
            error = req.error_detail.message if req.HasField("error_detail") else None
            kind = self.record_reply(error, req.version_info)
        self._subscribe(list(req.resource_names))
        return RequestOutcome(self.type_url, kind, error, req.version_info)

    def _subscribe(self, names: list[str]) -> None:
        # Rule 18: empty = legacy wildcard only until the first non-empty list; rule 20:
        # only for the types Envoy fetches by wildcard (LDS/CDS).
        if not names:
            wildcard = self.full_state and self.legacy_wildcard_ok
            wanted: set[str] = set()
        else:
            self.legacy_wildcard_ok = False
            wildcard = "*" in names
            wanted = set(names) - {"*"}
        dropped = self.names - wanted
        if self.wildcard and not wildcard:
            dropped = set(self.held) - wanted
        grew = bool(wanted - self.names) or (wildcard and not self.wildcard)
        self.wildcard, self.names = wildcard, wanted
        if dropped and not wildcard:
            # The client forgets what it unsubscribed from, so a resubscription must
            # resend it (rule 23).
            self.held = {n: r for n, r in self.held.items() if n not in dropped}
            self.sent_digest = None
        if grew:
            self.sent_digest = None

    def wants(self, view: View) -> bool:
        """Whether this client needs `view` now."""
        if not self.requested or self.pending:
            return False  # rule 17: one response in flight per type
        if not self.wildcard and not self.names:
            return False  # rule 41: nothing watched, nothing sent
        if self.force:
            return bool(view.resources)
        if view.digest == self.sent_digest:
            return False
        if not self.ever_sent and self.wildcard:
            return True  # rule 31: answer the first wildcard request even when empty
        if self.full_state:
            return True  # rules 21: full state, removals included
        # Rule 22: for named types absence is no deletion, so only new or changed
        # resources call for a response.
        return any(self.held.get(n) is not r for n, r in view.resources.items())

    def reconnected_current(self, view: View) -> bool:
        """Rule 32: a reconnecting wildcard client that presents the current version."""
        return (
            not self.ever_sent
            and self.wildcard
            and self.full_state
            and bool(self.initial_version)
            and self.initial_version == view.version
        )

    def mark_sent(self, view: View, nonce: str) -> None:
        """Record a response before it is written (the ACK may beat the write)."""
        self.nonce = nonce
        self.pending = True
        self.ever_sent = True
        self.force = False
        self.sent_version = view.version
        self.sent_digest = view.digest
        if self.full_state:
            self.held = view.resources
        else:
            held = {n: r for n, r in self.held.items() if n in self.names}
            held.update(view.resources)
            self.held = held


class SotwSession:
    """All types of one SotW stream; nonces are unique across its types (rule 4)."""

    protocol = "sotw"

    def __init__(self, control_plane_id: str = "") -> None:
        self.states: dict[str, SotwTypeState] = {}
        self._nonces = itertools.count(1)
        self._trailer = (
            encoding.field(encoding.SOTW_CONTROL_PLANE, encoding.control_plane(control_plane_id))
            if control_plane_id
            else b""
        )

    def state(self, type_url: str) -> SotwTypeState:
        """The state for a type, created on first use (rule 5: types are independent)."""
        found = self.states.get(type_url)
        if found is None:
            found = self.states[type_url] = SotwTypeState(type_url)
        return found

    def handle(self, req: DiscoveryRequest) -> RequestOutcome:
        """Apply one request (its type_url already checked non-empty)."""
        return self.state(req.type_url).handle(req)

    def next_response(self, resources: TypeResources) -> Outgoing | None:
        """The response this client needs for one type now, if any; marks it sent."""
        st = self.states.get(resources.type_url)
        if st is None:
            return None
        view = resources.view(st.subscription_key())
        if st.reconnected_current(view):
            st.mark_sent(view, "")
            st.pending = False
            st.acked_version = view.version
            return None
        if not st.wants(view):
            return None
        nonce = str(next(self._nonces))
        st.mark_sent(view, nonce)
        data = view.sotw_body() + self._trailer + encoding.text_field(encoding.SOTW_NONCE, nonce)
        return Outgoing(st.type_url, view.version, nonce, data, tuple(view.resources.values()))

    def clusters_sent(
        self, sent: Outgoing, before: Mapping[str, CachedResource] | None = None
    ) -> None:
        """Rule 36: re-answer EDS after a CDS push, even with unchanged endpoints.

        `before` is what the client held until `sent`; a push that only drops clusters
        (rule 35's last step) warms nothing, so it needs no EDS.
        """
        st = self.states.get(type_urls.ENDPOINT)
        if st is None or not st.names:
            return
        if before is None or any(before.get(r.name) is not r for r in sent.resources):
            st.force = True
