"""What SotW and Delta streams share: per-type state lookup, stream-wide nonces, the
control-plane trailer, and TTL bookkeeping. The protocols differ only in how a response
is chosen and encoded (sotw.py, delta.py)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from meshplane.xds import encoding, ttl
from meshplane.xds.progress import TypeProgress

S = TypeVar("S", bound=TypeProgress)


class StreamSession(Generic[S]):
    """All types of one stream; nonces are unique across its types (rule 4).

    Subclasses name the protocol, the per-type state class and the field numbers of the
    response's nonce and control_plane.
    """

    protocol: str
    state_class: type[S]
    nonce_field: int
    control_plane_field: int

    def __init__(
        self, control_plane_id: str = "", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.states: dict[str, S] = {}
        self._nonces = itertools.count(1)
        self.ttl_enabled = False
        """The client advertised resource TTLs (rule 42)."""
        self._clock = clock
        self._trailer = (
            encoding.field(self.control_plane_field, encoding.control_plane(control_plane_id))
            if control_plane_id
            else b""
        )

    def state(self, type_url: str) -> S:
        """The state for a type, created on first use (rule 5: types are independent)."""
        found = self.states.get(type_url)
        if found is None:
            found = self.states[type_url] = self.state_class(type_url)
        return found

    def enable_ttl(self) -> None:
        """Serve this client the TTLs snapshots carry, and heartbeats (rules 42/43)."""
        self.ttl_enabled = True

    def next_heartbeat_at(self) -> float | None:
        """When the earliest heartbeat of this stream is due (monotonic), None if none is."""
        due = [t for st in self.states.values() if (t := ttl.heartbeat_at(st)) is not None]
        return min(due, default=None)

    def _framed(self, body: bytes) -> tuple[str, bytes]:
        """A fresh nonce and the full response: the shared body, then this stream's trailer
        and nonce (concatenated protobuf encodings merge)."""
        nonce = str(next(self._nonces))
        return nonce, body + self._trailer + encoding.text_field(self.nonce_field, nonce)

    def _heartbeat_due(self, st: S) -> float | None:
        """Now, if a heartbeat of `st` is due (rule 43); else None."""
        due = ttl.heartbeat_at(st)
        now = self._clock()
        if due is None or st.ttl_sent is None or now < due:
            return None
        return now
