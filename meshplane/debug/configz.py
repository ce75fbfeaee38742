"""`/debug/configz` and `/debug/config_errors`: the config meshplane accepted, and what
it rejected and why.

`configz` shows each accepted object with where it came from and its spec in the Istio
API's own field names (camelCase), so it reads like the YAML the user wrote. Config
errors list `ValidationError.to_dict()` values; warnings (accepted but suspicious) are
kept apart because they change nothing that is served.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from meshplane.api.meta import Object
from meshplane.debug.json_responses import json_ok
from meshplane.debug.sources import ConfigStoreView

__all__ = ["config_errors", "config_errors_handler", "configz", "configz_handler", "spec_json"]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def spec_json(value: Any) -> Any:
    """A typed spec as JSON: dataclass fields camelCased, unset (None) fields left out.

    Mapping keys (labels, header names) are data and are kept as they are.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            _camel(f.name): spec_json(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
    if isinstance(value, enum.Enum):
        return spec_json(value.value)
    if isinstance(value, Mapping):
        return {str(k): spec_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        return [spec_json(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _object(obj: Object[Any]) -> dict[str, Any]:
    return {
        "kind": obj.kind,
        "apiVersion": obj.api_version,
        "namespace": obj.namespace,
        "name": obj.name,
        "file": obj.origin.path,
        "line": obj.origin.line,
        "revision": obj.revision,
        "spec": spec_json(obj.spec),
    }


def configz(store: ConfigStoreView) -> list[dict[str, Any]]:
    """Accepted objects, sorted by kind, namespace, name."""
    objects = sorted(store.objects(), key=lambda o: (o.kind, o.namespace, o.name))
    return [_object(o) for o in objects]


def config_errors(store: ConfigStoreView) -> dict[str, list[dict[str, str]]]:
    """{"errors": rejected objects and why, "warnings": accepted but suspicious}."""
    return {
        "errors": [e.to_dict() for e in store.errors()],
        "warnings": [w.to_dict() for w in store.warnings()],
    }


def configz_handler(store: ConfigStoreView) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return json_ok(configz(store))

    return handle


def config_errors_handler(store: ConfigStoreView) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return json_ok(config_errors(store))

    return handle
