"""Render Envoy protobufs, `Any` fields included, as the JSON Envoy's admin API prints.

`json_format` can only expand an `Any` whose message type is registered, and a resource
may carry any extension (an HTTP filter, a transport socket). Rather than importing
every Envoy extension up front, the type of each unknown `Any` is loaded on demand by
importing the `_pb2` modules of its proto package.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

from google.protobuf import descriptor_pool, json_format
from google.protobuf import message_factory as factory

__all__ = ["find_message_class", "message_to_dict", "submessages"]

ANY_TYPE = "google.protobuf.Any"
_tried_packages: set[str] = set()


def find_message_class(type_url: str) -> Any | None:
    """The generated class for an Any's type URL, importing its package if needed."""
    full_name = type_url.rsplit("/", 1)[-1]
    pool = descriptor_pool.Default()
    try:
        descriptor = pool.FindMessageTypeByName(full_name)
    except KeyError:
        _import_package(full_name.rpartition(".")[0])
        try:
            descriptor = pool.FindMessageTypeByName(full_name)
        except KeyError:
            return None
    return factory.GetMessageClass(descriptor)


def _import_package(package: str) -> None:
    if not package or package in _tried_packages:
        return
    _tried_packages.add(package)
    try:
        module = importlib.import_module(package)
    except ImportError:
        return
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if info.name.endswith("_pb2"):
            importlib.import_module(f"{package}.{info.name}")


def submessages(message: Any) -> Iterator[tuple[Any, Any]]:
    """(field descriptor, sub-message) for each message-typed value set on `message`."""
    for field, value in message.ListFields():
        sub_type = field.message_type
        if sub_type is None:
            continue
        if sub_type.GetOptions().map_entry:
            if sub_type.fields_by_name["value"].message_type is not None:
                for item in value.values():
                    yield field, item
        elif field.is_repeated:
            for item in value:
                yield field, item
        else:
            yield field, value


def _load_any_types(message: Any) -> None:
    """Make sure every Any nested in `message` has its type registered."""
    if message.DESCRIPTOR.full_name == ANY_TYPE:
        cls = find_message_class(message.type_url)
        if cls is not None:
            inner = cls()
            inner.ParseFromString(message.value)
            _load_any_types(inner)
        return
    for _, sub in submessages(message):
        _load_any_types(sub)


def message_to_dict(message: Any) -> dict[str, Any]:
    """snake_case JSON dict of `message` (as Envoy's /config_dump shows it)."""
    _load_any_types(message)
    result: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return result
