"""Commands in the contract that do not exist yet: say so plainly instead of faking them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["register_up"]

# Command -> the open issue it waits on (named by topic: numbers are the tracker's).
PENDING = {
    "up": "run a whole mesh on this machine: `meshplane up`",
}


def register_up(commands: Any) -> None:
    p = commands.add_parser("up", help="run a whole mesh on this machine (not implemented yet)")
    p.add_argument("example_dir", nargs="?", default="examples/bookinfo")
    p.set_defaults(run=_pending("up"))


def _pending(command: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        print(
            f"meshplane {command}: not implemented yet (open issue: {PENDING[command]})",
            file=sys.stderr,
        )
        return 2

    return run
