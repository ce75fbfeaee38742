"""Debug HTTP API: config dumps, sync status, registry, config, metrics and health."""

from meshplane.debug.app import build_app, start_debug_server
from meshplane.debug.sources import (
    ConfigStoreView,
    ConnectionView,
    DebugSources,
    SentResource,
    SyncStatusView,
)

__all__ = [
    "ConfigStoreView",
    "ConnectionView",
    "DebugSources",
    "SentResource",
    "SyncStatusView",
    "build_app",
    "start_debug_server",
]
