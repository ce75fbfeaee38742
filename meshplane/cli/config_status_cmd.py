"""`meshplane config-status [KIND/NAMESPACE/NAME]`: whether config edits have landed, read
from /debug/config_status ("applied by N/M proxies"; istioctl's `x describe` answers a
similar question per pod, Istio's distribution tracking per object)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from meshplane.cli.debug_client import DEFAULT_ADDRESS, DebugApiError, fetch_json

__all__ = ["register", "status_lines"]


def register(commands: Any) -> None:
    p = commands.add_parser(
        "config-status", help="per config object: how many proxies in its scope applied it"
    )
    p.add_argument("object", nargs="?", help="only this object, as KIND/NAMESPACE/NAME")
    p.add_argument("--meshplane-address", default=DEFAULT_ADDRESS, metavar="HOST:PORT")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(run=run)


def status_lines(entries: list[dict[str, Any]]) -> str:
    """One "applied by N/M" line per object, then its proxies still pending or rejecting."""
    lines = []
    for e in entries:
        ref = f"{e['kind']}/{e['namespace']}/{e['name']}"
        line = f"{ref} (model v{e['version']}): applied by {e['acked']}/{e['in_scope']} proxies"
        extra = [f"{e[k]} {k}" for k in ("pending", "nacked") if e[k]]
        lines.append(line + (f" ({', '.join(extra)})" if extra else ""))
        for p in e["proxies"]:
            if p["status"] == "PENDING":
                lines.append(f"  pending: {p['name']}")
            elif p["status"] == "NACKED":
                lines.append(f"  rejected by {p['name']}: {p.get('error') or '(no message)'}")
    return "".join(f"{line}\n" for line in lines)


def run(args: argparse.Namespace) -> int:
    query: dict[str, str] = {}
    if args.object:
        parts = args.object.split("/")
        if len(parts) != 3 or not all(parts):
            print(
                "meshplane config-status: give the object as KIND/NAMESPACE/NAME", file=sys.stderr
            )
            return 2
        query = dict(zip(("kind", "namespace", "name"), parts, strict=True))
    try:
        entries: list[dict[str, Any]] = fetch_json(
            args.meshplane_address, "/debug/config_status", **query
        )
    except DebugApiError as exc:
        print(f"meshplane config-status: {exc}", file=sys.stderr)
        return 2
    if args.object and not entries:
        print(f"meshplane config-status: no accepted object {args.object}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(entries, indent=2))
    else:
        sys.stdout.write(status_lines(entries) or "no config objects\n")
    return 0
