"""Constructors for the protobuf building blocks every builder needs (Any, Duration,
wrappers, socket addresses), so builders read as Envoy config rather than protobuf plumbing."""

from __future__ import annotations

import math

from envoy.config.core.v3.address_pb2 import Address, Pipe, SocketAddress
from google.protobuf.any_pb2 import Any
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.wrappers_pb2 import UInt32Value


def any_of(message: Message) -> Any:
    """Pack `message` into an Any (type URL ``type.googleapis.com/...``)."""
    packed = Any()
    packed.Pack(message)
    return packed


def duration(seconds: float) -> Duration:
    """A Duration of `seconds`, rounded to whole nanoseconds."""
    whole = math.floor(seconds)
    return Duration(seconds=int(whole), nanos=round((seconds - whole) * 1e9))


def u32(value: int) -> UInt32Value:
    return UInt32Value(value=value)


def socket_address(address: str, port: int) -> Address:
    """A TCP socket address; `address` is an IP or, for DNS clusters, a hostname."""
    return Address(socket_address=SocketAddress(address=address, port_value=port))


def endpoint_address(target: str) -> Address:
    """Address of a Sidecar ingress `defaultEndpoint`: ``IP:PORT`` or ``unix:///path``."""
    if target.startswith("unix://"):
        return Address(pipe=Pipe(path=target.removeprefix("unix://")))
    host, _, port = target.rpartition(":")
    return socket_address(host.strip("[]"), int(port))
