"""Liveness and readiness for probes and for `meshplane up`.

`/healthz` says the process serves HTTP. `/ready` is stricter: 200 only once the initial
config has been loaded and translated, so a proxy that connects then gets its full
config rather than a partial one (DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = ["healthz_handler", "ready_handler"]


def ready_handler(ready: Callable[[], bool]) -> Handler:
    """/ready: 200 once `ready()` is true, 503 before."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: initial config not yet translated\n")

    return handle


async def healthz_handler(request: web.Request) -> web.StreamResponse:
    """/healthz: the process is up."""
    return web.Response(text="ok\n")
