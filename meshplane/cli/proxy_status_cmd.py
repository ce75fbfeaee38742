"""`meshplane proxy-status`: istioctl's sync table, read from /debug/syncz."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from meshplane.cli.debug_client import DEFAULT_ADDRESS, DebugApiError, fetch_json
from meshplane.cli.tables import render_table

__all__ = ["register", "status_table"]

TYPES = ("cds", "lds", "eds", "rds", "sds")
HEADERS = ("NAME", "TYPE", "CDS", "LDS", "EDS", "RDS", "SDS")


def register(commands: Any) -> None:
    p = commands.add_parser("proxy-status", help="sync status of every connected proxy")
    p.add_argument("proxy", nargs="?", help="only this proxy (node id or NAME.NAMESPACE)")
    p.add_argument("--meshplane-address", default=DEFAULT_ADDRESS, metavar="HOST:PORT")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.set_defaults(run=run)


def _status(entry: dict[str, Any] | None) -> str:
    # istioctl prints "NOT SENT" with a space.
    status = str((entry or {}).get("status") or "NOT_SENT")
    return status.replace("_", " ")


def status_table(rows: list[dict[str, Any]]) -> str:
    """The table, then one line per NACK error so the reason is not hidden."""
    cells = []
    errors = []
    for row in rows:
        types = row.get("types", {})
        proxy_type = str(row["proxy"]).split("~", 1)[0]
        cells.append([row["name"], proxy_type, *(_status(types.get(t)) for t in TYPES)])
        for t in TYPES:
            error = (types.get(t) or {}).get("error")
            if error:
                errors.append(f"{row['name']} {t.upper()} rejected: {error}")
    text = render_table(HEADERS, cells)
    if errors:
        text += "\n" + "\n".join(errors) + "\n"
    return text


def run(args: argparse.Namespace) -> int:
    try:
        rows: list[dict[str, Any]] = fetch_json(args.meshplane_address, "/debug/syncz")
    except DebugApiError as exc:
        print(f"meshplane proxy-status: {exc}", file=sys.stderr)
        return 2
    if args.proxy:
        rows = [r for r in rows if args.proxy in (r["proxy"], r["name"])]
        if not rows:
            print(f"meshplane proxy-status: proxy {args.proxy!r} is not connected", file=sys.stderr)
            return 1
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    elif rows:
        sys.stdout.write(status_table(rows))
    else:
        print("no proxies connected")
    return 0
