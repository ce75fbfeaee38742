"""`meshplane proxy-config KIND PROXY`: what one proxy was sent, as istioctl's tables."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from meshplane.cli import config_views as views
from meshplane.cli.debug_client import DEFAULT_ADDRESS, DebugApiError, fetch_json
from meshplane.cli.tables import render_table

__all__ = ["register"]

KINDS: dict[str, tuple[tuple[str, ...], Callable[[dict[str, Any]], list[list[str]]]]] = {
    "cluster": (views.CLUSTER_HEADERS, views.cluster_rows),
    "listener": (views.LISTENER_HEADERS, views.listener_rows),
    "route": (views.ROUTE_HEADERS, views.route_rows),
    "endpoint": (views.ENDPOINT_HEADERS, views.endpoint_rows),
}


def register(commands: Any) -> None:
    p = commands.add_parser("proxy-config", help="the config one proxy was sent")
    p.add_argument(
        "kind", choices=sorted(KINDS), metavar="KIND", help="cluster, listener, route or endpoint"
    )
    p.add_argument("proxy", metavar="PROXY", help="node id or NAME.NAMESPACE")
    p.add_argument("--meshplane-address", default=DEFAULT_ADDRESS, metavar="HOST:PORT")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        dump = fetch_json(args.meshplane_address, "/debug/config_dump", proxyID=args.proxy)
    except DebugApiError as exc:
        print(f"meshplane proxy-config: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(views.resources(dump, args.kind), indent=2))
        return 0
    headers, rows_of = KINDS[args.kind]
    sys.stdout.write(render_table(headers, rows_of(dump)))
    return 0
