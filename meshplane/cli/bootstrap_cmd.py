"""`meshplane bootstrap`: write the Envoy bootstrap for one sidecar or gateway."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from meshplane.bootstrap import (
    BadBootstrapOptions,
    BootstrapOptions,
    bootstrap,
    parse_labels,
    render_json,
)

__all__ = ["options_from_args", "register"]

_D = BootstrapOptions(workload="x")


def register(commands: Any) -> None:
    p = commands.add_parser("bootstrap", help="write an Envoy bootstrap for a proxy")
    p.add_argument(
        "--type",
        choices=("sidecar", "router"),
        default="sidecar",
        help="sidecar, or router (a gateway)",
    )
    p.add_argument("--workload", required=True, help="workload (pod) name")
    p.add_argument("--namespace", default=_D.namespace)
    p.add_argument("--service-account", default=_D.service_account)
    p.add_argument("--ip", default=_D.ip, help="the workload's IP (node id, INSTANCE_IPS)")
    p.add_argument("--labels", default="", metavar="K=V,K2=V2")
    p.add_argument("--interception", choices=("REDIRECT", "NONE"), default=_D.interception)
    p.add_argument(
        "--stats-port",
        type=int,
        default=_D.stats_port,
        help="Prometheus /stats/prometheus listener (0: none)",
    )
    p.add_argument(
        "--health-port", type=int, default=_D.health_port, help="/healthz/ready listener (0: none)"
    )
    p.add_argument("--admin-port", type=int, default=_D.admin_port)
    p.add_argument(
        "--xds-address",
        default="",
        metavar="HOST:PORT",
        help="control plane (default 127.0.0.1:15010, or :15012 with --ca-cert)",
    )
    p.add_argument("--token", help="join token, sent as `authorization: Bearer` (needs --ca-cert)")
    p.add_argument("--ca-cert", metavar="FILE", help="root to trust: connect with TLS")
    p.add_argument("--delta", action="store_true", help="use Delta xDS instead of SotW")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.set_defaults(run=run)


def options_from_args(args: argparse.Namespace) -> BootstrapOptions:
    """BootstrapOptions from parsed arguments (reads --ca-cert)."""
    ca_pem = None
    if args.ca_cert:
        try:
            ca_pem = Path(args.ca_cert).read_text()
        except OSError as exc:
            raise BadBootstrapOptions(f"--ca-cert: {exc}") from None
    return BootstrapOptions(
        workload=args.workload,
        type=args.type,
        namespace=args.namespace,
        service_account=args.service_account,
        ip=args.ip,
        labels=parse_labels(args.labels),
        interception=args.interception,
        stats_port=args.stats_port,
        health_port=args.health_port,
        admin_port=args.admin_port,
        xds_address=args.xds_address,
        token=args.token,
        ca_cert_pem=ca_pem,
        delta=args.delta,
    )


def _write_private(path: str, text: str) -> None:
    """Write `text` readable by the owner only: the bootstrap then holds a credential."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def run(args: argparse.Namespace) -> int:
    try:
        text = render_json(bootstrap(options_from_args(args)))
    except BadBootstrapOptions as exc:
        print(f"meshplane bootstrap: error: {exc}", file=sys.stderr)
        return 2
    if not args.output:
        sys.stdout.write(text)
    elif args.token:
        _write_private(args.output, text)
    else:
        Path(args.output).write_text(text)
    return 0
