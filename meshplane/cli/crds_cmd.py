"""`meshplane crds`: print the CustomResourceDefinitions of the Istio kinds meshplane reads.

A cluster must know the Istio kinds before `kubectl apply` takes a VirtualService, and
`serve --kubernetes` can only watch kinds the API server serves. The CRDs ship as package
data (meshplane/api/crds/), so an installed meshplane can install them without a checkout:
`meshplane crds | kubectl apply -f -`.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

__all__ = ["crd_files", "crd_stream", "register"]

_PACKAGE = "meshplane.api"
_FOLDER = "crds"


def crd_files() -> list[Traversable]:
    """The CRD manifests shipped with meshplane, one per kind, sorted by file name."""
    folder = resources.files(_PACKAGE).joinpath(_FOLDER)
    found = [f for f in folder.iterdir() if f.is_file() and f.name.endswith(".yaml")]
    return sorted(found, key=lambda f: f.name)


def crd_stream() -> str:
    """Every CRD as one multi-document YAML stream, ready for `kubectl apply -f -`."""
    docs = [f.read_text(encoding="utf-8").rstrip("\n") + "\n" for f in crd_files()]
    return "---\n".join(docs)


def register(commands: Any) -> None:
    p = commands.add_parser(
        "crds",
        help="print the Istio CRDs meshplane reads (meshplane crds | kubectl apply -f -)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    stream = crd_stream()
    if not stream:
        # Only an installation that lost its package data gets here.
        print("meshplane crds: no CRD manifests found in meshplane/api/crds", file=sys.stderr)
        return 1
    sys.stdout.write(stream)
    return 0
