"""State-of-the-World stream state: subscriptions, nonces, ACK/NACK, when to respond.

Plain classes, no grpc: `SotwSession.handle` takes each DiscoveryRequest, and
`SotwSession.next_response` decides whether this client needs a response for a type from
the given snapshot. Rule numbers refer to shared/reference/xds-protocol.md section 1.

The decision compares the content the subscription selects with what this client was
sent - never with the version the request carries. A NACK therefore parks the type until
the content changes (rule 11): the NACK repeats the previous version, and a cache that
compared versions would resend the rejected config forever (go-control-plane#962).

CDS and LDS responses carry the full state (rule 21). EDS, RDS and SDS responses carry only
what the client lacks: resources new to it or changed since it was sent them, plus what
rule 36 forces (rule 22: absence is no deletion; Envoy merges by name). Proxies of one
scope hold the same thing and get the same change, so a response body is built once per
(what the client holds, what it should hold) and shared, like full-state bodies are.

Memory per stream is kept to what differs between streams: after a response the client's
holdings are the view's own mapping (shared by every stream of the scope), and subscribed
name sets are canonical frozensets shared by every stream that asks for the same names.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest

from meshplane.xds import encoding, ttl, type_urls
from meshplane.xds.progress import Outgoing, RequestKind, RequestOutcome, TypeProgress
from meshplane.xds.session import StreamSession
from meshplane.xds.snapshot import CachedResource, TypeResources, View

_NOTHING: Mapping[str, CachedResource] = MappingProxyType({})
"""What every stream holds before its first response: one shared object, so the first
response of a scope is a shared body too."""
_MAX_CHANGES_PER_VIEW = 16


# hash -> the shared set; weak, so a subscription's set goes when its last stream does.
_NAME_SETS: weakref.WeakValueDictionary[int, frozenset[str]] = weakref.WeakValueDictionary()


def canonical_names(names: Iterable[str]) -> frozenset[str]:
    """One shared frozenset (of interned names) per distinct subscription.

    A proxy subscribes to thousands of EDS names, and every proxy of a scope to the same
    ones: without this each stream keeps its own copy of every name string and set table.
    """
    wanted = frozenset(names)
    key = hash(wanted)
    found = _NAME_SETS.get(key)
    if found is not None and found == wanted:
        return found
    made = frozenset(sys.intern(n) for n in wanted)
    if found is None:  # on a hash collision the first set stays the shared one
        _NAME_SETS[key] = made
    return made


@dataclass(frozen=True, eq=False)
class Changes:
    """What a named-type client lacks from a view, and the response body that carries it."""

    resources: tuple[CachedResource, ...]
    body: bytes


# View -> {(id(held), forced names): (held, changes)}; held is kept so its id stays unique.
_CHANGES: weakref.WeakKeyDictionary[
    View,
    dict[tuple[int, frozenset[str]], tuple[Mapping[str, CachedResource], Changes | None]],
] = weakref.WeakKeyDictionary()


def changes(
    view: View, held: Mapping[str, CachedResource], force: frozenset[str] = frozenset()
) -> Changes | None:
    """The resources of `view` that `held` lacks or holds at another version, plus those
    named in `force`, or None if there are none; shared by every stream holding `held`."""
    memo = _CHANGES.get(view)
    if memo is None:
        memo = _CHANGES[view] = {}
    key = (id(held), force)
    found = memo.get(key)
    if found is not None and found[0] is held:
        return found[1]
    made = _changes(view, held, force)
    if len(memo) >= _MAX_CHANGES_PER_VIEW:
        memo.clear()
    memo[key] = (held, made)
    return made


def _changes(
    view: View, held: Mapping[str, CachedResource], force: frozenset[str]
) -> Changes | None:
    current = view.resources
    if held is current:
        names = sorted(n for n in force if n in current)
    else:
        names = sorted(
            n
            for n, r in current.items()
            if n in force or (had := held.get(n)) is None or had.version != r.version
        )
    if not names:
        return None
    sent = tuple(current[n] for n in names)
    if len(names) == len(current):
        return Changes(sent, view.sotw_body())  # everything: the view's own shared body
    body = encoding.sotw_body(view.version, view.type_url, (r.sotw_entry for r in sent))
    return Changes(sent, body)


class SotwTypeState(TypeProgress):
    """One type on one SotW stream."""

    def __init__(self, type_url: str) -> None:
        super().__init__(type_url)
        self.full_state = type_url in type_urls.FULL_STATE
        self.drops_absent = self.full_state
        self.wildcard = False
        self.names: frozenset[str] = frozenset()
        self.legacy_wildcard_ok = True
        self.sent_digest: str | None = None
        self.ever_sent = False
        self.force: frozenset[str] = frozenset()
        """Names to send next time even if the client holds them (rule 36)."""
        self.initial_version = ""
        self.held = _NOTHING

    def subscription_key(self) -> frozenset[str] | None:
        """None for wildcard (everything), else the subscribed names."""
        return None if self.wildcard else self.names

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
            wanted: frozenset[str] = frozenset()
        else:
            self.legacy_wildcard_ok = False
            wildcard = "*" in names
            wanted = canonical_names(n for n in names if n != "*")
        if wanted is self.names and wildcard == self.wildcard:
            return  # the usual ACK: the same subscription again
        held_names = self.held.keys() if self.wildcard else self.names
        dropped = held_names - wanted if not wildcard else set()
        grew = bool(wanted - self.names) or (wildcard and not self.wildcard)
        self.wildcard, self.names = wildcard, wanted
        if dropped:
            # The client forgets what it unsubscribed from, so a resubscription must
            # resend it (rule 23).
            if any(n in self.held for n in dropped):
                self.held = {n: r for n, r in self.held.items() if n not in dropped}
            self.sent_digest = None
        if grew:
            self.sent_digest = None

    def ready(self) -> bool:
        """Whether a response may go out now (something watched, nothing in flight)."""
        if not self.requested or self.pending:
            return False  # rule 17: one response in flight per type
        return self.wildcard or bool(self.names)  # rule 41: nothing watched, nothing sent

    def wants_full_state(self, view: View) -> bool:
        """Whether this full-state (CDS/LDS) client needs `view` now."""
        # Rule 21: any change, removals included, resends the whole state; rule 31: the
        # first wildcard request is answered even when empty (nothing sent: no digest).
        return view.digest != self.sent_digest

    def lacks(self, view: View) -> Changes | None:
        """What this named-type client lacks of `view` (rules 22, 23, 36), if anything."""
        found = changes(view, self.held, self.force)
        if found is None:
            self.force = frozenset()
            # It holds all of `view` already: share the view's mapping from now on.
            self.held = view.resources
        return found

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
        self.force = frozenset()
        self.sent_version = view.version
        self.sent_digest = view.digest
        # Full state: exactly the view. Named types: the response carried all the client
        # lacked, so it now holds the view's resources (those it held beyond the view are
        # forgotten, which at worst resends one if it comes back).
        self.held = view.resources


class SotwSession(StreamSession[SotwTypeState]):
    """All types of one SotW stream; nonces are unique across its types (rule 4)."""

    protocol = "sotw"
    state_class = SotwTypeState
    nonce_field = encoding.SOTW_NONCE
    control_plane_field = encoding.SOTW_CONTROL_PLANE

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
        if not st.ready():
            return None
        ttl_now = resources.ttl if self.ttl_enabled else None
        if st.full_state:
            if not st.wants_full_state(view):
                return None
            body, sent = view.sotw_body(), tuple(view.resources.values())
        elif ttl_now != st.ttl_sent and st.held and view.resources:
            # A new, changed or removed TTL: everything the client holds goes out again
            # carrying it (rule 42: "to remove a TTL, resend with ttl unset").
            sent = tuple(view.resources.values())
            body = self._ttl_body(view, sent, ttl_now)
        else:
            st.ttl_sent = ttl_now
            lacking = st.lacks(view)
            if lacking is None:
                return self._heartbeat(st) if ttl_now is not None else None
            sent = lacking.resources
            body = lacking.body if ttl_now is None else self._ttl_body(view, sent, ttl_now)
        nonce, data = self._framed(body)
        st.mark_sent(view, nonce)
        if self.ttl_enabled:
            ttl.note_sent(st, ttl_now, sent, self._clock())
        return Outgoing(st.type_url, view.version, nonce, data, sent)

    @staticmethod
    def _ttl_body(view: View, sent: Iterable[CachedResource], ttl_now: float | None) -> bytes:
        entries = (ttl.sotw_entry(r, ttl_now) for r in sent)
        return encoding.sotw_body(view.version, view.type_url, entries)

    def _heartbeat(self, st: SotwTypeState) -> Outgoing | None:
        """Rule 43: refresh the TTL of what the client holds, if due."""
        now = self._heartbeat_due(st)
        if now is None or st.ttl_sent is None:
            return None
        # Envoy takes a SotW resource without body as a heartbeat only when the response
        # repeats the version it last accepted.
        entries = ttl.heartbeat_entries(st.held, st.ttl_sent, self.protocol)
        body = encoding.sotw_body(st.acked_version, st.type_url, [entries])
        nonce, data = self._framed(body)
        st.nonce, st.pending, st.heartbeat_out, st.refreshed_at = nonce, True, True, now
        return Outgoing(st.type_url, st.acked_version, nonce, data, heartbeat=True)

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
        before = before or {}
        warming = {
            r.eds_name
            for r in sent.resources
            if r.eds_name is not None
            and ((had := before.get(r.name)) is None or had.version != r.version)
        }
        if warming:
            st.force = st.force | warming
