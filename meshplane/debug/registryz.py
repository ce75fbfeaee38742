"""`/debug/registryz`: the service registry as the translators see it, with endpoints.

Answers "does meshplane know my service, on which ports, with which endpoints?" before
anyone needs to read a config dump.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from meshplane.debug.json_responses import json_ok
from meshplane.debug.sources import ConfigStoreView
from meshplane.model.mesh import MeshModel
from meshplane.model.services import Endpoint, Service

__all__ = ["registry", "registryz_handler"]


def _endpoint(ep: Endpoint) -> dict[str, Any]:
    return {
        "address": ep.address,
        "port": ep.port,
        "service_port": ep.service_port,
        "labels": dict(ep.labels),
        "namespace": ep.namespace,
        "service_account": ep.service_account,
        "locality": ep.locality,
        "weight": ep.weight,
        "healthy": ep.healthy,
        "workload": ep.workload,
    }


def _service(svc: Service, endpoints: tuple[Endpoint, ...]) -> dict[str, Any]:
    return {
        "hostname": svc.hostname,
        "namespace": svc.namespace,
        "name": svc.name,
        "source": svc.source,
        "addresses": list(svc.addresses),
        "resolution": svc.resolution,
        "location": svc.location,
        "export_to": list(svc.export_to),
        "labels": dict(svc.labels),
        "ports": [
            {
                "name": p.name,
                "number": p.number,
                "protocol": p.protocol,
                "target_port": p.target_port,
            }
            for p in svc.ports
        ],
        "endpoints": [
            _endpoint(ep)
            for ep in sorted(endpoints, key=lambda e: (e.service_port, e.address, e.port))
        ],
    }


def registry(mesh: MeshModel) -> list[dict[str, Any]]:
    """Every service, sorted by hostname, with its endpoints."""
    return [
        _service(mesh.services[host], tuple(mesh.endpoints.get(host, ())))
        for host in sorted(mesh.services)
    ]


def registryz_handler(store: ConfigStoreView) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return json_ok(registry(store.mesh()))

    return handle
