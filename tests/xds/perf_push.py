"""Quick push benchmark (not a test): one 1000-cluster CDS snapshot to N SotW/Delta streams.

Run: .venv/bin/python tests/xds/perf_push.py [--streams 200] [--clusters 1000] [--delta]
The server runs in this process; the clients run in a child process (so their decoding
does not share this CPU), ACK every response, and report when all got the new version.
Reported: snapshot build time, server time until every stream's response was written,
and time until every client received it. Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

import grpc
from envoy.service.discovery.v3.discovery_pb2 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
)

sys.path.insert(0, str(Path(__file__).parent))
from xds_testkit import CDS, cla, cluster, node, running_server, snap

from meshplane.xds.ads import ADS_SERVICE
from meshplane.xds.snapshot import Snapshot


def build(version: int, clusters: int) -> Snapshot:
    names = [f"outbound|9080||svc-{i}.ns-{i % 10}.svc.cluster.local" for i in range(clusters)]
    return snap(
        clusters=[cluster(n, timeout_s=version) for n in names],
        endpoints=[cla(n, 9080 + version) for n in names],
    )


async def client_main(port: int, streams: int, delta: bool, rounds: int) -> None:
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(8)]
    done = [0] * rounds
    all_done = [asyncio.Event() for _ in range(rounds)]

    async def one(i: int) -> None:
        ch = channels[i % len(channels)]
        queue: asyncio.Queue[object] = asyncio.Queue()
        if delta:
            queue.put_nowait(DeltaDiscoveryRequest(type_url=CDS, node=node(f"n{i}")))
            method = f"/{ADS_SERVICE}/DeltaAggregatedResources"
            parse = DeltaDiscoveryResponse.FromString
        else:
            queue.put_nowait(DiscoveryRequest(type_url=CDS, node=node(f"n{i}")))
            method = f"/{ADS_SERVICE}/StreamAggregatedResources"
            parse = DiscoveryResponse.FromString

        async def gen():  # type: ignore[no-untyped-def]
            while True:
                yield await queue.get()

        call = ch.stream_stream(
            method, request_serializer=lambda m: m.SerializeToString(), response_deserializer=parse
        )(gen())
        seen = 0
        async for resp in call:
            if delta:
                queue.put_nowait(DeltaDiscoveryRequest(type_url=CDS, response_nonce=resp.nonce))
            else:
                queue.put_nowait(
                    DiscoveryRequest(
                        type_url=CDS, version_info=resp.version_info, response_nonce=resp.nonce
                    )
                )
            done[seen] += 1
            if done[seen] == streams:
                all_done[seen].set()
            seen += 1
            if seen == rounds:
                break
        await asyncio.sleep(3600)

    tasks = [asyncio.create_task(one(i)) for i in range(streams)]
    for r in range(rounds):
        await all_done[r].wait()
        print(f"round {r} {time.time():.6f}", flush=True)
    for t in tasks:
        t.cancel()


async def server_main(streams: int, clusters: int, delta: bool) -> None:
    t0 = time.perf_counter()
    first = build(1, clusters)
    t1 = time.perf_counter()
    second = build(2, clusters)
    print(f"snapshot build ({clusters} clusters + {clusters} CLAs): {t1 - t0:.3f} s")
    async with running_server() as srv:
        srv.cache.set("default", first)
        child = subprocess.Popen(
            [sys.executable, __file__, "--client", str(srv.port), "--streams", str(streams)]
            + (["--delta"] if delta else []),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            loop = asyncio.get_running_loop()
            line = await loop.run_in_executor(None, child.stdout.readline)  # type: ignore[union-attr]
            assert line.startswith("round 0"), line
            await srv.sync.wait_converged(min_connections=streams, timeout=120)
            pushes_before = srv.metrics.pushes.value("cds")
            start_wall, start = time.time(), time.perf_counter()
            srv.cache.set("default", second)
            while srv.metrics.pushes.value("cds") < pushes_before + streams:
                await asyncio.sleep(0.001)
            written = time.perf_counter() - start
            line = await loop.run_in_executor(None, child.stdout.readline)  # type: ignore[union-attr]
            received = float(line.split()[2]) - start_wall
            size = srv.registry.get_sample_value(
                "pilot_xds_config_size_bytes_sum", {"type": "cds"}
            ) / srv.metrics.pushes.value("cds")
            kind = "Delta" if delta else "SotW"
            print(
                f"{kind} CDS push of {clusters} clusters (~{size / 1024:.0f} KiB) to {streams} "
                f"streams: all written {written:.3f} s, all received {received:.3f} s"
            )
        finally:
            child.terminate()
            child.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client", type=int)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--delta", action="store_true")
    args = parser.parse_args()
    if args.client:
        asyncio.run(client_main(args.client, args.streams, args.delta, 2))
    else:
        asyncio.run(server_main(args.streams, args.clusters, args.delta))


if __name__ == "__main__":
    main()
