"""`meshplane serve`: parse the flags into ServeOptions and hand them to the app."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
from typing import Any

from meshplane.ca.tokens import parse_duration
from meshplane.options import (
    DEFAULT_GATEWAY_SERVICE_ACCOUNTS,
    KEY_TYPES,
    LOG_FORMATS,
    LOG_LEVELS,
    ServeOptions,
)

__all__ = ["options_from_args", "register"]

_DEFAULTS = ServeOptions()


def register(commands: Any) -> None:
    p = commands.add_parser("serve", help="run the control plane")
    p.add_argument(
        "--config-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="directory of Istio YAML, watched (repeatable)",
    )
    p.add_argument(
        "--kubernetes",
        action="store_true",
        help="read config and workloads from a Kubernetes API server (list+watch)",
    )
    p.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="with --kubernetes: kubeconfig to use (default $KUBECONFIG, in-cluster, "
        "~/.kube/config)",
    )
    p.add_argument(
        "--xds-address",
        default=_DEFAULTS.xds_address,
        metavar="HOST:PORT",
        help="plaintext xDS (development; serves no secrets)",
    )
    p.add_argument(
        "--xds-tls-address",
        default=_DEFAULTS.xds_tls_address,
        metavar="HOST:PORT",
        help="TLS xDS for authenticated proxies, the only port serving secrets ('' turns it off)",
    )
    p.add_argument(
        "--http-address",
        default=_DEFAULTS.http_address,
        metavar="HOST:PORT",
        help="debug API, metrics and health",
    )
    p.add_argument("--state-dir", default=_DEFAULTS.state_dir, metavar="DIR")
    p.add_argument("--trust-domain", default=_DEFAULTS.trust_domain)
    p.add_argument("--debounce-ms", type=int, default=_DEFAULTS.debounce_ms)
    p.add_argument("--debounce-max-ms", type=int, default=_DEFAULTS.debounce_max_ms)
    p.add_argument(
        "--tls-san",
        action="append",
        default=[],
        metavar="NAME",
        help="extra SAN for the TLS xDS certificate (repeatable)",
    )
    p.add_argument(
        "--cert-ttl",
        default="24h",
        metavar="DURATION",
        help="life of workload certificates, renewed at half of it (e.g. 24h, 1h30m, 30s)",
    )
    p.add_argument(
        "--key-type",
        choices=KEY_TYPES,
        default=_DEFAULTS.key_type,
        help="key type of workload certificates and of a root created on first start",
    )
    p.add_argument(
        "--gateway-service-account",
        action="append",
        default=[],
        metavar="NS/SA",
        help="with --kubernetes: a service account whose Kubernetes token may run a gateway "
        "(router) on the TLS port (repeatable; default: Istio's ingress and egress gateway "
        "accounts in istio-system); other accounts' tokens run sidecars only",
    )
    p.add_argument("--log-format", choices=LOG_FORMATS, default=_DEFAULTS.log_format)
    p.add_argument("--log-level", choices=LOG_LEVELS, default=_DEFAULTS.log_level)
    p.set_defaults(run=run, parser=p)


def options_from_args(args: argparse.Namespace) -> ServeOptions:
    """ServeOptions from parsed `serve` arguments (ValueError if inconsistent)."""
    if not args.config_dir and not args.kubernetes:
        raise ValueError("give --config-dir DIR (repeatable) or --kubernetes")
    if args.config_dir and args.kubernetes:
        raise ValueError("give either --config-dir or --kubernetes, not both")
    if args.kubeconfig and not args.kubernetes:
        raise ValueError("--kubeconfig needs --kubernetes")
    gateways = tuple(_namespaced_name(a) for a in args.gateway_service_account)
    if gateways and not args.kubernetes:
        raise ValueError("--gateway-service-account needs --kubernetes")
    return ServeOptions(
        config_dirs=tuple(args.config_dir),
        kubernetes=args.kubernetes,
        kubeconfig=args.kubeconfig,
        xds_address=args.xds_address,
        xds_tls_address=args.xds_tls_address,
        http_address=args.http_address,
        state_dir=args.state_dir,
        trust_domain=args.trust_domain,
        debounce_ms=args.debounce_ms,
        debounce_max_ms=args.debounce_max_ms,
        tls_sans=tuple(args.tls_san),
        cert_ttl_s=parse_duration(args.cert_ttl).total_seconds(),
        key_type=args.key_type,
        log_format=args.log_format,
        log_level=args.log_level,
        gateway_service_accounts=gateways or DEFAULT_GATEWAY_SERVICE_ACCOUNTS,
    )


def _namespaced_name(text: str) -> tuple[str, str]:
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name or "/" in name or ":" in text:
        raise ValueError(f"--gateway-service-account {text!r}: want NAMESPACE/SERVICE_ACCOUNT")
    return namespace, name


def run(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
    except ValueError as exc:
        args.parser.error(str(exc))
    try:
        # Imported here: the CLI must work (bootstrap, analyze, ...) without the app.
        from meshplane.app import run as run_app
    except ImportError as exc:
        print(f"meshplane serve: the control plane is not available: {exc}", file=sys.stderr)
        return 2
    result: Any = run_app(options)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    return int(result or 0)
