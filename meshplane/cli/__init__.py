"""`meshplane` command line: argparse subcommands, each handing off to another module."""

from __future__ import annotations

from meshplane.cli.parser import build_parser

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `meshplane` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    status: int = args.run(args)
    return status
