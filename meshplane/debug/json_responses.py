"""JSON responses shaped alike across endpoints: indented for humans, errors as objects."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

__all__ = ["json_error", "json_ok"]


def json_ok(body: Any) -> web.Response:
    return web.Response(text=json.dumps(body, indent=2) + "\n", content_type="application/json")


def json_error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps({"error": message}, indent=2) + "\n",
        content_type="application/json",
    )
