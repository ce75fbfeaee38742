"""`meshplane` command line: argparse subcommands only."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `meshplane` console script."""
    raise SystemExit("not yet")
