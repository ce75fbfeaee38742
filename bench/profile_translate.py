"""Where a config push spends its CPU, without gRPC: load a generated mesh, take one proxy view
per namespace, translate each and pack it into a Snapshot, then repeat after one
VirtualService edit and one endpoint edit, through the Pusher as `serve` runs it.

    .venv/bin/python -m bench.profile_translate --services 1000
    .venv/bin/python -m bench.profile_translate --services 1000 --cprofile 25

Phases printed: mesh load, view_for, translate (per builder family) and Snapshot packing for
a cold start, then the Pusher's cost for each edit. With --cprofile N the top N functions by
cumulative time of the VirtualService push are printed as well.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from google.protobuf import json_format

from bench import meshgen
from bench.proxies import proxy_node
from meshplane.model.load import load_paths
from meshplane.model.proxy import Proxy
from meshplane.model.scope import ProxyView
from meshplane.model.store import ConfigStore
from meshplane.model.views import view_for
from meshplane.sources.files import read_file
from meshplane.translators import translate
from meshplane.translators.clusters import outbound_clusters
from meshplane.translators.endpoints import cluster_load_assignments
from meshplane.translators.outbound import outbound_listeners_and_routes
from meshplane.xds.cache import Connection, SnapshotCache
from meshplane.xds.pusher import Pusher
from meshplane.xds.snapshot import Interner, Snapshot

T = TypeVar("T")


@contextmanager
def timed(label: str) -> Iterator[None]:
    started = time.process_time()
    yield
    print(f"  {label:<44} {time.process_time() - started:8.3f} s CPU")


def each(views: list[ProxyView], build: Callable[[ProxyView], T]) -> list[T]:
    return [build(v) for v in views]


def proxies(namespaces: int) -> list[Proxy]:
    nodes = [proxy_node(i, namespaces) for i in range(namespaces)]
    return [Proxy.from_node(n.id, json_format.MessageToDict(n.metadata)) for n in nodes]


def cold_phases(store: ConfigStore, namespaces: int) -> None:
    mesh = store.mesh()
    with timed(f"view_for x{namespaces}"):
        views = [view_for(mesh, p) for p in proxies(namespaces)]
    with timed("  clusters (CDS)"):
        each(views, outbound_clusters)
    with timed("  endpoints (EDS)"):
        each(views, cluster_load_assignments)
    with timed("  listeners + routes (LDS, RDS)"):
        each(views, outbound_listeners_and_routes)
    with timed("translate (all)"):
        results = each(views, translate)
    with timed("Snapshot.from_resources, fresh interner"):
        interner = Interner()
        snapshots = [Snapshot.from_resources(r, interner=interner) for r in results]
    del snapshots


def connect(cache: SnapshotCache, pusher: Pusher, namespaces: int) -> None:
    for i in range(namespaces):
        node = proxy_node(i, namespaces)
        key = asyncio.run(pusher.resolve(node))
        proxy = Proxy.from_node(node.id, json_format.MessageToDict(node.metadata))
        cache.register(Connection(f"c{i}", node, proxy, key, "sotw"))


def push_after(store: ConfigStore, pusher: Pusher, edited: Path, label: str, top: int) -> None:
    change = store.apply_all(read_file(edited))
    profile = cProfile.Profile() if top else None
    with timed(f"Pusher.push after {label}"):
        if profile:
            profile.enable()
        asyncio.run(pusher.push(change))
        if profile:
            profile.disable()
    if profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_translate", description=__doc__)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--cprofile", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    spec = meshgen.MeshSpec(args.services, namespaces=args.namespaces)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        meshgen.generate(spec, out)
        print(f"S={spec.services}, {spec.namespace_count()} namespaces")
        with timed("load_paths"):
            store = load_paths([out])
        cold_phases(store, spec.namespace_count())
        cache = SnapshotCache()
        pusher = Pusher(store, cache)
        with timed("Pusher: first config of every scope"):
            connect(cache, pusher, spec.namespace_count())
        edited = meshgen.shift_weights(out, spec, 3, [10, 90])
        push_after(store, pusher, edited, "a VirtualService edit", args.cprofile)
        edited = meshgen.move_endpoint(out, spec, 2, meshgen.edit_address(1))
        push_after(store, pusher, edited, "an endpoint edit", 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
