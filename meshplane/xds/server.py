"""Start a grpc.aio server that serves an AdsServicer, sized for thousands of proxies.

Rule 46: allow client keepalive pings and many concurrent streams. SO_REUSEPORT is off so
that a port already taken fails loudly instead of being shared with another process.
"""

from __future__ import annotations

import grpc

from meshplane.xds.ads import AdsServicer

SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_concurrent_streams", 100_000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.so_reuseport", 0),
]


async def start_xds_server(
    address: str, servicer: AdsServicer, *, tls: grpc.ServerCredentials | None = None
) -> tuple[grpc.aio.Server, int]:
    """Bind `address` (port 0 picks one), start serving; returns the server and its port."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers(servicer.generic_handlers())
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, tls)
    if port == 0:
        raise OSError(f"cannot bind the xDS server to {address}")
    await server.start()
    return server, port
