"""`meshplane analyze DIR...`: validate config exactly as `serve` would load it.

One line per problem, ``file:line: severity: Kind ns/name field: reason``; exit 1 if any
object would be rejected, 0 if there are only warnings or nothing at all.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable
from typing import Any

from meshplane.api.errors import ValidationError

__all__ = ["register", "report"]


def register(commands: Any) -> None:
    p = commands.add_parser("analyze", help="validate config as serve would; exit 1 on errors")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="directories (or files) of YAML")
    p.set_defaults(run=run)


def report(problems: Iterable[ValidationError]) -> tuple[list[str], int]:
    """(lines to print, exit status) for `problems`; duplicates are printed once."""
    unique = list(dict.fromkeys(problems))
    unique.sort(key=lambda p: (p.origin.path, p.origin.line, p.severity != "error"))
    if not unique:
        return ["no problems found"], 0
    status = 1 if any(p.severity == "error" for p in unique) else 0
    return [str(p) for p in unique], status


def run(args: argparse.Namespace) -> int:
    # Imported here so that the rest of the CLI does not pay for loading the pipeline.
    from meshplane.model.analysis import analyze
    from meshplane.model.load import load_paths

    # The store logs each problem for `serve`; here the report below is the output.
    logging.getLogger("meshplane.config").disabled = True
    store = load_paths(args.dirs)
    lines, status = report([*store.errors(), *analyze(store)])
    for line in lines:
        print(line)
    return status
