"""Pieces several Istio kinds share: StringMatch, Destination, selectors, percentages."""

from __future__ import annotations

from collections.abc import Mapping

from meshplane.api import formats
from meshplane.api.fields import Fields
from meshplane.api.networking.virtual_service import Destination, StringMatch

STRING_MATCH_KEYS = ("exact", "prefix", "regex")


def string_match(f: Fields, *, presence_ok: bool = False) -> StringMatch | None:
    """Exactly one of exact/prefix/regex. `presence_ok`: none set means "present" (headers)."""
    f.keys(STRING_MATCH_KEYS)
    exact, prefix, regex = f.text("exact"), f.text("prefix"), f.text("regex")
    count = sum(f.has(k) for k in STRING_MATCH_KEYS)
    if count > 1:
        f.problems.error(f.path, "set only one of exact, prefix or regex")
        return None
    if count == 0 and not presence_ok:
        f.problems.error(f.path, "set one of exact, prefix or regex")
        return None
    if regex is not None:
        reason = formats.regex_problem(regex)
        if reason:
            f.error("regex", reason)
            return None
    return StringMatch(exact=exact, prefix=prefix, regex=regex)


def string_match_map(f: Fields, key: str) -> dict[str, StringMatch]:
    out: dict[str, StringMatch] = {}
    for name, sub in _object_map(f, key).items():
        match = string_match(sub, presence_ok=True)
        if match is not None:
            out[name] = match
    return out


def _object_map(f: Fields, key: str) -> dict[str, Fields]:
    raw = f.obj(key)
    if raw is None:
        return {}
    out: dict[str, Fields] = {}
    for name, value in raw.data.items():
        path = f"{raw.path}.{name}"
        if not isinstance(value, Mapping):
            f.problems.error(path, "must be an object")
            continue
        out[str(name)] = Fields(value, path, f.problems)
    return out


def destination(f: Fields) -> Destination | None:
    f.keys(("host", "subset", "port"))
    host = f.text("host", required=True)
    if host is not None:
        reason = formats.hostname_problem(host)
        if reason or host.startswith("*"):
            f.error("host", reason or "a destination host must not be a wildcard")
            host = None
    subset = f.text("subset")
    port = f.read("port", port_selector)
    if host is None:
        return None
    return Destination(host=host, subset=subset or None, port=port)


def port_selector(f: Fields) -> int | None:
    f.keys(("number",))
    return f.port("number", required=True)


def percentage(f: Fields) -> float | None:
    """Istio's Percent message: {value: 0-100}."""
    f.keys(("value",))
    return f.percent("value")


def workload_selector(f: Fields, key: str = "labels") -> dict[str, str] | None:
    """Istio's WorkloadSelector ({labels: ...}); Kubernetes-style matchLabels for DR."""
    f.keys((key,))
    return f.str_map(key, labels=True) or {}


def export_to(f: Fields) -> tuple[str, ...]:
    return f.str_list("exportTo", check=formats.export_to_problem)


def hosts(
    f: Fields, key: str = "hosts", *, required: bool = True, allow_ip: bool = False
) -> tuple[str, ...]:
    return f.str_list(
        key, required=required, check=lambda h: formats.hostname_problem(h, allow_ip=allow_ip)
    )
