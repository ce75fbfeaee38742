"""The debug HTTP app: routes of DESIGN.md's debug API, and a way to serve it.

One handler module per endpoint group; this module only wires them, so adding an
endpoint never touches another's code.
"""

from __future__ import annotations

from aiohttp import web

from meshplane.debug.config_dump import config_dump_handler
from meshplane.debug.config_status import config_status_handler
from meshplane.debug.configz import config_errors_handler, configz_handler
from meshplane.debug.health import healthz_handler, ready_handler
from meshplane.debug.metrics import metrics_handler
from meshplane.debug.registryz import registryz_handler
from meshplane.debug.sources import DebugSources
from meshplane.debug.syncz import syncz_handler

__all__ = ["build_app", "start_debug_server"]


def build_app(sources: DebugSources) -> web.Application:
    """An aiohttp Application serving /ready, /healthz, /metrics and /debug/*."""
    app = web.Application()
    app.router.add_get("/ready", ready_handler(sources.ready))
    app.router.add_get("/healthz", healthz_handler)
    app.router.add_get("/metrics", metrics_handler(sources.registry))
    app.router.add_get("/debug/syncz", syncz_handler(sources.sync_status))
    app.router.add_get(
        "/debug/config_dump", config_dump_handler(sources.connections, sources.sync_status)
    )
    app.router.add_get("/debug/registryz", registryz_handler(sources.store))
    app.router.add_get("/debug/configz", configz_handler(sources.store))
    app.router.add_get("/debug/config_errors", config_errors_handler(sources.store))
    app.router.add_get("/debug/config_status", config_status_handler(sources.config_status))
    return app


async def start_debug_server(app: web.Application, address: str) -> tuple[web.AppRunner, int]:
    """Serve `app` on HOST:PORT (port 0 picks one); returns the runner and the bound port.

    Stop it with `await runner.cleanup()`.
    """
    host, _, port = address.rpartition(":")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host.strip("[]"), int(port))
    await site.start()
    bound = runner.addresses[0][1]
    return runner, int(bound)
