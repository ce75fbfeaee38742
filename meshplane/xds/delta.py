"""Delta (incremental) stream state: subscriptions, per-resource versions, removals.

Plain classes, no grpc. The client's holdings are tracked per resource name (name ->
version), seeded from `initial_resource_versions` on reconnect (rule 29), so each response
carries only what changed plus `removed_resources`. Rule numbers refer to
shared/reference/xds-protocol.md section 1.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping

from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest

from meshplane.xds import encoding, ttl, type_urls
from meshplane.xds.progress import Outgoing, RequestKind, RequestOutcome, TypeProgress
from meshplane.xds.session import StreamSession
from meshplane.xds.snapshot import CachedResource, TypeResources


class DeltaTypeState(TypeProgress):
    """One type on one Delta stream."""

    def __init__(self, type_url: str) -> None:
        super().__init__(type_url)
        self.legacy_wildcard_ok = type_url in type_urls.FULL_STATE
        self.drops_absent = True
        self.wildcard = False
        self.names: set[str] = set()
        self.client_versions: dict[str, str] = {}
        self.force: set[str] = set()
        """Names that must be answered (in resources or removed_resources) next time."""
        self.answer_wildcard = False
        self.synced_at: str | None = None
        """The type version at which this client last needed nothing."""

    def selected(self, resources: TypeResources) -> Mapping[str, CachedResource]:
        """The resources of `resources` this client subscribes to."""
        current = resources.resources
        if self.wildcard:
            return current
        return {n: current[n] for n in self.names if n in current}

    def covers(self, names: Iterable[str]) -> bool:
        """Whether this client subscribes to every one of `names`."""
        return self.wildcard or all(n in self.names for n in names)

    def handle(self, req: DeltaDiscoveryRequest) -> RequestOutcome:
        """Apply one request; subscription changes apply even with a stale nonce (14)."""
        kind = RequestKind.INITIAL
        error = None
        if req.response_nonce:
            if req.response_nonce != self.nonce:
                kind = RequestKind.STALE
            else:
                error = req.error_detail.message if req.HasField("error_detail") else None
                kind = self.record_reply(error, self.sent_version)
        first = not self.requested
        self.requested = True
        subscribe = list(req.resource_names_subscribe)
        unsubscribe = list(req.resource_names_unsubscribe)
        if first:
            self.client_versions = {
                sys.intern(n): v for n, v in req.initial_resource_versions.items()
            }
            # Rule 19: a first request with no names at all is the legacy wildcard.
            if self.legacy_wildcard_ok and not subscribe and not unsubscribe:
                self._start_wildcard()
        self._subscribe(subscribe)
        self._unsubscribe(unsubscribe)
        if first or subscribe or unsubscribe:
            self.synced_at = None
        return RequestOutcome(self.type_url, kind, error, self.acked_version)

    def _start_wildcard(self) -> None:
        if not self.wildcard:
            self.wildcard = True
            self.answer_wildcard = True  # rule 31: answered even when empty

    def _subscribe(self, names: Iterable[str]) -> None:
        for name in names:
            if name == "*":
                self._start_wildcard()
            else:
                # Interned: every proxy of a scope subscribes to the same thousands of names.
                name = sys.intern(name)
                self.names.add(name)
                self.force.add(name)  # rule 26: every subscribed name is answered

    def _unsubscribe(self, names: Iterable[str]) -> None:
        for name in names:
            if name == "*":
                # Rule 19: ends the wildcard; explicit names stay.
                self.wildcard = False
                self.answer_wildcard = False
                self._forget(set(self.client_versions) - self.names)
            elif name in self.names:
                self.names.discard(name)
                if self.wildcard:
                    self.force.add(name)  # rule 27: still in (or out of) the wildcard set
                else:
                    self._forget({name})
            # Rule 27: names never subscribed are ignored.

    def _forget(self, names: set[str]) -> None:
        for name in names:
            self.client_versions.pop(name, None)
            self.force.discard(name)
        if names and self.held:
            self.held = {n: r for n, r in self.held.items() if n not in names}

    def changes(self, resources: TypeResources) -> tuple[list[CachedResource], list[str]] | None:
        """(resources to send, names to remove) this client needs now, or None."""
        if not self.requested or self.pending:
            return None
        if self.synced_at == resources.version and not self.force and not self.answer_wildcard:
            return None
        current = resources.resources
        if self.wildcard:
            candidates: Iterable[str] = current.keys()
        else:
            candidates = (n for n in self.names if n in current)
        send = [
            current[n]
            for n in candidates
            if self.client_versions.get(n) != current[n].version or n in self.force
        ]
        removed = [n for n in self.client_versions if n not in current]
        removed += [n for n in self.force if n not in current and n not in self.client_versions]
        if not send and not removed and not self.answer_wildcard:
            self.synced_at = resources.version
            self.force.clear()
            return None
        send.sort(key=lambda r: r.name)
        removed.sort()
        return send, removed

    def mark_sent(
        self, version: str, nonce: str, send: list[CachedResource], removed: list[str]
    ) -> None:
        """Record a response before it is written (the ACK may beat the write)."""
        held = dict(self.held)
        for r in send:
            self.client_versions[r.name] = r.version
            held[r.name] = r
        for name in removed:
            self.client_versions.pop(name, None)
            held.pop(name, None)
        self.held = held
        self.force.clear()
        self.answer_wildcard = False
        self.synced_at = version
        self.nonce = nonce
        self.pending = True
        self.sent_version = version


class DeltaSession(StreamSession[DeltaTypeState]):
    """All types of one Delta stream; nonces are unique across its types (rule 4)."""

    protocol = "delta"
    state_class = DeltaTypeState
    nonce_field = encoding.DELTA_NONCE
    control_plane_field = encoding.DELTA_CONTROL_PLANE

    def handle(self, req: DeltaDiscoveryRequest) -> RequestOutcome:
        """Apply one request (its type_url already checked non-empty)."""
        return self.state(req.type_url).handle(req)

    def next_response(self, resources: TypeResources) -> Outgoing | None:
        """The response this client needs for one type now, if any; marks it sent."""
        st = self.states.get(resources.type_url)
        if st is None:
            return None
        ttl_now = resources.ttl if self.ttl_enabled else None
        if ttl_now != st.ttl_sent:
            # A new, changed or removed TTL: what the client holds goes out again carrying it
            # (rule 42). After a reconnect it holds what its initial versions name.
            held = {n for n in st.client_versions if n in resources.resources}
            if held:
                st.force |= held
            else:
                st.ttl_sent = ttl_now
        found = st.changes(resources)
        if found is None:
            return self._heartbeat(st) if ttl_now is not None else None
        send, removed = found
        entries = (ttl.delta_entry(r, ttl_now) for r in send)
        body = encoding.delta_body(resources.version, resources.type_url, entries, removed)
        nonce, data = self._framed(body)
        st.mark_sent(resources.version, nonce, send, removed)
        if self.ttl_enabled:
            ttl.note_sent(st, ttl_now, send, self._clock())
        return Outgoing(st.type_url, resources.version, nonce, data, tuple(send), tuple(removed))

    def _heartbeat(self, st: DeltaTypeState) -> Outgoing | None:
        """Rule 43: refresh the TTL of what the client holds, if due."""
        now = self._heartbeat_due(st)
        if now is None or st.ttl_sent is None:
            return None
        entries = ttl.heartbeat_entries(st.held, st.ttl_sent, self.protocol)
        body = encoding.delta_body(st.sent_version, st.type_url, [entries], ())
        nonce, data = self._framed(body)
        st.nonce, st.pending, st.heartbeat_out, st.refreshed_at = nonce, True, True, now
        return Outgoing(st.type_url, st.sent_version, nonce, data, heartbeat=True)

    def clusters_sent(
        self, sent: Outgoing, before: Mapping[str, CachedResource] | None = None
    ) -> None:
        """Rule 36: after CDS adds or changes an EDS cluster, resend its endpoints.

        `before` is unused: a Delta response carries only added or changed clusters.
        """
        st = self.states.get(type_urls.ENDPOINT)
        if st is None:
            return
        for cluster in sent.resources:
            if cluster.eds_name and cluster.eds_name in st.names:
                st.force.add(cluster.eds_name)
