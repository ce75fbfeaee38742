"""`/metrics`: the control plane's Prometheus metrics (Istio's pilot_* names) as text."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["metrics_handler"]


def metrics_handler(registry: Any) -> Handler:
    """Serve `registry` (a prometheus_client CollectorRegistry) in the text format."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body: bytes = generate_latest(registry)
        # CONTENT_TYPE_LATEST carries a charset parameter, which aiohttp wants separately.
        mime, _, params = CONTENT_TYPE_LATEST.partition(";")
        charset = params.split("=", 1)[1].strip() if "charset=" in params else None
        response = web.Response(body=body, content_type=mime.strip(), charset=charset)
        return response

    return handle
