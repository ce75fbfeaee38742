"""Hide private keys in config dumps exactly as Envoy's admin `/config_dump` does.

Envoy (MessageUtil::redact) replaces every string and bytes leaf at or under a field
annotated `(udpa.annotations.sensitive) = true` with "[redacted]": a TLS private key,
a generic secret, session ticket keys. Secrets only ever travel over the authenticated
TLS port; the debug port must not leak them.
"""

from __future__ import annotations

from typing import Any

from udpa.annotations import sensitive_pb2

from meshplane.debug.proto_json import ANY_TYPE, find_message_class

__all__ = ["REDACTED", "redact"]

REDACTED = "[redacted]"


def _is_sensitive(field: Any) -> bool:
    return bool(field.GetOptions().Extensions[sensitive_pb2.sensitive])


def redact(message: Any, sensitive: bool = False) -> None:
    """Redact `message` in place (including messages packed in Any fields)."""
    if message.DESCRIPTOR.full_name == ANY_TYPE:
        cls = find_message_class(message.type_url)
        if cls is not None:
            inner = cls()
            inner.ParseFromString(message.value)
            redact(inner, sensitive)
            message.Pack(inner)
        return
    for field, value in message.ListFields():
        hide = sensitive or _is_sensitive(field)
        if field.message_type is not None:
            _redact_messages(field, value, hide)
        elif hide and field.type in (field.TYPE_STRING, field.TYPE_BYTES):
            _redact_scalar(message, field, value)


def _redact_messages(field: Any, value: Any, hide: bool) -> None:
    entry = field.message_type
    if entry.GetOptions().map_entry:
        if entry.fields_by_name["value"].message_type is not None:
            for item in value.values():
                redact(item, hide)
        elif hide:
            for key in list(value):
                value[key] = _replacement(entry.fields_by_name["value"])
    elif field.is_repeated:
        for item in value:
            redact(item, hide)
    else:
        redact(value, hide)


def _replacement(field: Any) -> str | bytes:
    return REDACTED.encode() if field.type == field.TYPE_BYTES else REDACTED


def _redact_scalar(message: Any, field: Any, value: Any) -> None:
    if field.is_repeated:
        replacement = [_replacement(field)] * len(value)
        del value[:]
        value.extend(replacement)
    else:
        setattr(message, field.name, _replacement(field))
