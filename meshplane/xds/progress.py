"""What SotW and Delta streams share: per-type progress, request kinds, outgoing responses.

Sync status, metrics and the ADS servicer read these fields, whichever protocol the
stream speaks, so both state machines keep them with the same meaning.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from meshplane.xds.snapshot import CachedResource


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

    def record_reply(self, error: str | None, acked_version: str) -> RequestKind:
        """An ACK or NACK of the response with the latest nonce."""
        self.pending = False
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
