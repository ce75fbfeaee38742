"""`meshplane up [EXAMPLE_DIR]`: run the example's mesh on this machine (see meshplane.local.up).

The interception mode is REDIRECT (network namespaces and iptables) when run as root with
`ip` and `iptables`, else NONE; `INTERCEPTION_MODE=NONE|REDIRECT` in the environment picks.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from meshplane.local.modes import pick_mode
from meshplane.local.up import UpOptions, run_up

__all__ = ["register"]


def register(commands: Any) -> None:
    p = commands.add_parser("up", help="run a whole mesh on this machine, a sidecar per workload")
    p.add_argument("example_dir", nargs="?", default="examples/bookinfo")
    p.add_argument("--gateway-port", type=int, default=8080, help="the Gateway server's port")
    p.add_argument("--http-address", default="127.0.0.1:15014", metavar="HOST:PORT")
    p.add_argument("--zipkin-port", type=int, default=9411, help="the trace collector's port")
    p.add_argument("--workdir", metavar="DIR", help="logs, state, generated config (default: temp)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        mode, reason = pick_mode(os.environ)
    except ValueError as exc:
        print(f"meshplane up: {exc}", file=sys.stderr)
        return 2
    example = Path(args.example_dir)
    if not example.is_dir():
        print(f"meshplane up: {example}: not a directory", file=sys.stderr)
        return 2
    opts = UpOptions(
        example=example,
        gateway_port=args.gateway_port,
        http_address=args.http_address,
        workdir=Path(args.workdir) if args.workdir else None,
        mode=mode,
        mode_reason=reason,
        zipkin_port=args.zipkin_port,
    )
    try:
        return run_up(opts)
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"meshplane up failed: {exc}", file=sys.stderr)
        return 1
