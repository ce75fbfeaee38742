"""The `meshplane` argument parser: one subparser per command, registered by its module."""

from __future__ import annotations

import argparse

from meshplane import __version__
from meshplane.cli import (
    analyze_cmd,
    bootstrap_cmd,
    ca_cmd,
    config_status_cmd,
    crds_cmd,
    proxy_config_cmd,
    proxy_status_cmd,
    serve_cmd,
    token_cmd,
    up_cmd,
)

__all__ = ["build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshplane",
        description="A service-mesh control plane speaking the Istio API to real Envoy.",
    )
    parser.add_argument("--version", action="version", version=f"meshplane {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_cmd.register(commands)
    up_cmd.register(commands)
    bootstrap_cmd.register(commands)
    analyze_cmd.register(commands)
    token_cmd.register(commands)
    ca_cmd.register(commands)
    crds_cmd.register(commands)
    proxy_status_cmd.register(commands)
    proxy_config_cmd.register(commands)
    config_status_cmd.register(commands)
    return parser
