"""`meshplane ca rotate-root`: stage a new root for a running (or the next) `serve`.

The command only writes files: the next CA goes to `STATE_DIR/next-ca/` (a new
self-signed root, or a plug-in CA's four files given with `--from`), and the `serve` that
owns that state dir rolls it out to every proxy (xds/root_rollout.py) and removes the
directory when done. Staging through the state dir needs no API: whoever may write the CA's
keys may rotate them, and nobody else. `--wait SECONDS` returns once `serve` is done.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from meshplane.ca.keys import KEY_TYPES
from meshplane.ca.next_root import NEXT_CA_DIR, REJECTED_SUFFIX, stage_root
from meshplane.ca.root import BadCaFiles

__all__ = ["register"]

_POLL_S = 0.2


def register(commands: Any) -> None:
    p = commands.add_parser("ca", help="the built-in CA")
    actions = p.add_subparsers(dest="ca_command", required=True, metavar="ACTION")
    rotate = actions.add_parser(
        "rotate-root", help="stage a new root; serve rolls it out to every proxy"
    )
    rotate.add_argument("--state-dir", default=".meshplane", metavar="DIR")
    rotate.add_argument("--trust-domain", default="cluster.local")
    rotate.add_argument("--key-type", choices=KEY_TYPES, default="ecdsa")
    rotate.add_argument(
        "--from",
        dest="plug_in",
        metavar="DIR",
        help="a CA of your own: a directory with ca-cert.pem, ca-key.pem, cert-chain.pem, "
        "root-cert.pem (instead of a new self-signed root)",
    )
    rotate.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait until serve has rolled the new root out (exit 1 if it has not by then)",
    )
    rotate.set_defaults(run=run_rotate_root, parser=rotate)


def run_rotate_root(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    started = time.time()
    try:
        ca = stage_root(state_dir, args.trust_domain, args.key_type, plug_in=args.plug_in)
    except (BadCaFiles, OSError, ValueError) as exc:
        print(f"meshplane ca rotate-root: {exc}", file=sys.stderr)
        return 1
    print(f"staged {ca.cert.subject.rfc4514_string()} in {state_dir / NEXT_CA_DIR}")
    if args.wait <= 0:
        return 0
    return _wait_adopted(state_dir, args.wait, started)


def _wait_adopted(state_dir: Path, timeout: float, started: float) -> int:
    staged = state_dir / NEXT_CA_DIR
    deadline = time.monotonic() + timeout
    while staged.exists() and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    if staged.exists():
        print(f"serve has not finished the rotation after {timeout:g}s", file=sys.stderr)
        return 1
    rejected = staged.with_name(NEXT_CA_DIR + REJECTED_SUFFIX)
    if rejected.exists() and rejected.stat().st_mtime >= started - 1:
        print("serve refused the staged root (see its log)", file=sys.stderr)
        return 1
    print("root rotated: every proxy trusts only the new root")
    return 0
