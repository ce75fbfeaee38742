"""`/debug/config_status`: per config object, how many of the proxies it reaches run its
current version ("applied by N of M"), and which are pending or rejected it.

Istio users ask whether an edit has landed everywhere (propagation complaints; Istio's
answer is distribution tracking, `PILOT_ENABLE_STATUS`). The xDS layer computes the
entries (xds/distribution.py); this serves them, filtered by `kind`, `namespace`, `name`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from meshplane.debug.json_responses import json_error, json_ok

__all__ = ["config_status_handler"]

_FILTERS = ("kind", "namespace", "name")


def config_status_handler(report: Callable[..., list[dict[str, Any]]] | None) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        if report is None:
            return json_error(404, "config status is not tracked by this server")
        unknown = sorted(set(request.query) - set(_FILTERS))
        if unknown:
            return json_error(400, f"unknown parameter(s) {', '.join(unknown)}; use {_FILTERS}")
        return json_ok(report(**{k: request.query[k] for k in _FILTERS if k in request.query}))

    return handle
