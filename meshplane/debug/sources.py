"""What the debug API reads, as narrow Protocols, so it depends on shapes, not on classes.

The composition root hands in the real objects (the xDS cache's connections, the sync
status, the config store, a Prometheus registry); tests hand in small stand-ins. Each
Protocol lists only what an endpoint actually reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from meshplane.api.errors import ValidationError
from meshplane.api.meta import Object
from meshplane.model.mesh import MeshModel

__all__ = [
    "ConfigStoreView",
    "ConnectionView",
    "DebugSources",
    "NodeView",
    "ProgressView",
    "SentResource",
    "SyncStatusView",
]


class SentResource(Protocol):
    """One resource as it was last sent to a proxy (the xDS cache's CachedResource)."""

    @property
    def version(self) -> str:
        """The per-resource version sent (a content hash)."""
        ...

    @property
    def message(self) -> Any:
        """The resource as sent: the message itself or packed in a google.protobuf.Any."""
        ...


class NodeView(Protocol):
    @property
    def id(self) -> str: ...


class ConnectionView(Protocol):
    """One connected proxy stream (the xDS cache's Connection)."""

    @property
    def id(self) -> str:
        """The stream's connection id (sync status is keyed by it)."""
        ...

    @property
    def node(self) -> NodeView:
        """The Envoy Node from the stream's first request."""
        ...

    @property
    def held(self) -> Mapping[str, Mapping[str, SentResource]]:
        """Type URL -> name -> the resource this client was last sent and still holds."""
        ...


class ProgressView(Protocol):
    @property
    def sent_version(self) -> str:
        """The type's version_info last sent on the stream ("" if none)."""
        ...


class SyncStatusView(Protocol):
    def rows(self) -> list[dict[str, Any]]:
        """The /debug/syncz JSON list (DESIGN.md's shape)."""
        ...

    def progress(self, conn_id: str, type_url: str) -> ProgressView | None:
        """One stream's progress for one type."""
        ...


class ConfigStoreView(Protocol):
    def objects(self) -> Iterable[Object[Any]]:
        """Accepted config objects."""
        ...

    def errors(self) -> Iterable[ValidationError]:
        """Why objects were rejected."""
        ...

    def warnings(self) -> Iterable[ValidationError]:
        """Problems with accepted objects."""
        ...

    def mesh(self) -> MeshModel:
        """The current mesh (services and endpoints feed /debug/registryz)."""
        ...


@dataclass(frozen=True)
class DebugSources:
    """Everything the debug app serves from.

    `ready` answers whether the initial config is loaded and translated; `registry` is a
    prometheus_client CollectorRegistry; `connections` lists the connected proxies;
    `config_status` feeds /debug/config_status.
    """

    ready: Callable[[], bool]
    registry: Any
    sync_status: SyncStatusView
    connections: Callable[[], Iterable[ConnectionView]]
    store: ConfigStoreView
    config_status: Callable[..., list[dict[str, Any]]] | None = None
    """`report(kind=, namespace=, name=)` of xds.distribution.ConfigStatus (None: 404)."""
