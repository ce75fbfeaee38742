"""`meshplane token`: print a join token for one proxy identity (namespace + service account)
and proxy type (`sidecar` by default; `router` for a gateway, the only type that may hold its
namespace's gateway credentials). The TLS port refuses a node whose type is not the token's.

The token is signed with the key in the state dir that `meshplane serve` checks tokens with
(made there if absent, mode 0600), so run it against the same `--state-dir`. Only the token
goes to stdout, so `TOKEN=$(meshplane token ...)` works.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from meshplane.ca.tokens import PROXY_TYPES, TokenSigner, parse_duration

__all__ = ["register"]


def register(commands: Any) -> None:
    p = commands.add_parser("token", help="print a join token for a proxy identity")
    p.add_argument("--namespace", required=True)
    p.add_argument("--service-account", required=True)
    p.add_argument(
        "--type",
        choices=PROXY_TYPES,
        default="sidecar",
        help="the proxy type the token admits (default: sidecar); only router tokens get "
        "the namespace's gateway credentials (kubernetes:// Secrets)",
    )
    p.add_argument(
        "--state-dir", default=".meshplane", metavar="DIR", help="where serve keeps its keys"
    )
    p.add_argument("--ttl", default="24h", metavar="DURATION", help="e.g. 24h, 30m, 1h30m")
    p.set_defaults(run=run, parser=p)


def run(args: argparse.Namespace) -> int:
    try:
        ttl = parse_duration(args.ttl)
    except ValueError as exc:
        args.parser.error(f"--ttl: {exc}")
    try:
        signer = TokenSigner.load_or_create(args.state_dir)
        token = signer.issue(args.namespace, args.service_account, ttl, proxy_type=args.type)
    except (OSError, ValueError) as exc:
        print(f"meshplane token: {exc}", file=sys.stderr)
        return 1
    print(token)
    return 0
