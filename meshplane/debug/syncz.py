"""`/debug/syncz`: per connected proxy and xDS type, what was sent, what was ACKed, NACKs.

The rows come ready-made from the xDS layer's sync status; this only serves them, in
DESIGN.md's shape, so `meshplane proxy-status` and scripts read one format.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from meshplane.debug.json_responses import json_ok
from meshplane.debug.sources import SyncStatusView

__all__ = ["syncz_handler"]


def syncz_handler(sync_status: SyncStatusView) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        rows = sorted(sync_status.rows(), key=lambda row: (row.get("name", ""), row["proxy"]))
        return json_ok(rows)

    return handle
