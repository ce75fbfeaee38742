"""Protobuf wire encoding of discovery responses from pre-encoded parts.

A SotW response for a 1000-cluster scope is the same bytes for every proxy in that scope,
except its nonce. Serializing the response message per stream would re-encode every
resource each time; instead each resource is encoded once (as the bytes of its repeated
field entry), responses are joined from those parts, and the per-stream nonce is appended
as one more field: protobuf parsers merge concatenated encodings of a message, so
``body + nonce_field(n)`` decodes as the response with that nonce.

Field numbers are those of envoy.service.discovery.v3 (DiscoveryResponse,
DeltaDiscoveryResponse, Resource); tests decode the results with the real messages.
"""

from __future__ import annotations

from collections.abc import Iterable

_VARINT = 0
_LENGTH_DELIMITED = 2

# DiscoveryResponse
SOTW_VERSION_INFO = 1
SOTW_RESOURCES = 2
SOTW_TYPE_URL = 4
SOTW_NONCE = 5
SOTW_CONTROL_PLANE = 6
# DeltaDiscoveryResponse
DELTA_SYSTEM_VERSION_INFO = 1
DELTA_RESOURCES = 2
DELTA_TYPE_URL = 4
DELTA_NONCE = 5
DELTA_REMOVED_RESOURCES = 6
DELTA_CONTROL_PLANE = 7
# envoy.service.discovery.v3.Resource
RESOURCE_VERSION = 1
RESOURCE_RESOURCE = 2
RESOURCE_NAME = 3
RESOURCE_TTL = 6
# google.protobuf.Duration
DURATION_SECONDS = 1
DURATION_NANOS = 2
# google.protobuf.Any
ANY_TYPE_URL = 1
ANY_VALUE = 2
# envoy.config.core.v3.ControlPlane
CONTROL_PLANE_IDENTIFIER = 1


def varint(value: int) -> bytes:
    """Base-128 varint of a non-negative int."""
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited field (string, bytes or sub-message)."""
    return varint((number << 3) | _LENGTH_DELIMITED) + varint(len(payload)) + payload


def varint_field(number: int, value: int) -> bytes:
    """A non-negative integer field; zero is omitted, as proto3 does."""
    return varint(number << 3 | _VARINT) + varint(value) if value else b""


def duration(seconds: float) -> bytes:
    """The encoding of google.protobuf.Duration for a non-negative number of seconds."""
    nanos_total = round(seconds * 1_000_000_000)
    whole, nanos = divmod(nanos_total, 1_000_000_000)
    return varint_field(DURATION_SECONDS, whole) + varint_field(DURATION_NANOS, nanos)


def text_field(number: int, text: str) -> bytes:
    """A string field; empty strings are omitted, as proto3 does."""
    return field(number, text.encode()) if text else b""


def any_message(type_url: str, value: bytes) -> bytes:
    """The encoding of google.protobuf.Any{type_url, value}."""
    return text_field(ANY_TYPE_URL, type_url) + field(ANY_VALUE, value)


def delta_resource(name: str, version: str, any_bytes: bytes) -> bytes:
    """The encoding of envoy.service.discovery.v3.Resource{name, version, resource}."""
    return (
        text_field(RESOURCE_VERSION, version)
        + field(RESOURCE_RESOURCE, any_bytes)
        + text_field(RESOURCE_NAME, name)
    )


def ttl_resource(name: str, version: str, ttl: float | None, any_bytes: bytes | None) -> bytes:
    """The encoding of envoy.service.discovery.v3.Resource{name, version, ttl, resource}.

    `any_bytes` None leaves `resource` unset (a heartbeat); `ttl` None leaves `ttl` unset.
    """
    return (
        text_field(RESOURCE_VERSION, version)
        + (field(RESOURCE_RESOURCE, any_bytes) if any_bytes is not None else b"")
        + text_field(RESOURCE_NAME, name)
        + (field(RESOURCE_TTL, duration(ttl)) if ttl is not None else b"")
    )


def control_plane(identifier: str) -> bytes:
    """The encoding of envoy.config.core.v3.ControlPlane{identifier}."""
    return text_field(CONTROL_PLANE_IDENTIFIER, identifier)


def sotw_body(version: str, type_url: str, entries: Iterable[bytes]) -> bytes:
    """A DiscoveryResponse without nonce; `entries` are pre-encoded `resources` fields."""
    return (
        text_field(SOTW_VERSION_INFO, version)
        + b"".join(entries)
        + text_field(SOTW_TYPE_URL, type_url)
    )


def delta_body(
    system_version: str, type_url: str, entries: Iterable[bytes], removed: Iterable[str]
) -> bytes:
    """A DeltaDiscoveryResponse without nonce; `entries` are pre-encoded `resources` fields."""
    return (
        text_field(DELTA_SYSTEM_VERSION_INFO, system_version)
        + b"".join(entries)
        + text_field(DELTA_TYPE_URL, type_url)
        + b"".join(text_field(DELTA_REMOVED_RESOURCES, name) for name in removed)
    )
