"""Checks for the string formats the Istio and Kubernetes APIs define: durations, names,
labels, hostnames, addresses and regular expressions.

Each `*_problem` function returns the reason a value is invalid, or "" when it is fine, so
callers can attach the reason to a field path.
"""

from __future__ import annotations

import ipaddress
import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_HOST_LABEL = re.compile(r"[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?")
# RE2 (Envoy's regex engine) has no lookaround and no backreferences; Python's `re` has both,
# so these are checked apart from compiling.
_NOT_RE2 = re.compile(r"\(\?<?[=!]|\\[1-9]")


def parse_duration(text: str) -> tuple[float | None, str]:
    """Go/protobuf duration syntax ("1.5s", "100ms", "1h30m", "0") -> (seconds, "") or
    (None, reason). Istio accepts Go's syntax (gogo jsonpb), a superset of protobuf's "1.5s"."""
    if text.startswith("-"):
        return None, f"duration {text!r} must not be negative"
    body = text[1:] if text.startswith("+") else text
    if body == "0":
        return 0.0, ""
    pos, total = 0, 0.0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if m is None:
            return None, f'invalid duration {text!r} (want e.g. "1.5s", "100ms", "1h")'
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if not body:
        return None, "invalid duration '' (want e.g. \"1.5s\")"
    return total, ""


def dns1123_label_problem(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        return (
            f"{value!r} is not a valid DNS-1123 label (lower case alphanumerics and '-', "
            "starting and ending with an alphanumeric, at most 63 characters)"
        )
    return ""


def dns1123_subdomain_problem(value: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        return (
            f"{value!r} is not a valid DNS-1123 subdomain (lower case alphanumerics, '-' and "
            "'.', starting and ending with an alphanumeric, at most 253 characters)"
        )
    return ""


def label_key_problem(key: str) -> str:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or dns1123_subdomain_problem(prefix)):
        return f"label key {key!r}: prefix must be a DNS-1123 subdomain"
    if len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        return (
            f"label key {key!r}: name must be 1-63 alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return ""


def label_value_problem(value: str) -> str:
    if value and (len(value) > 63 or not _LABEL_NAME.fullmatch(value)):
        return (
            f"label value {value!r} must be at most 63 alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return ""


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def ip_problem(value: str) -> str:
    return "" if is_ip(value) else f"{value!r} is not an IP address"


def cidr_problem(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"{value!r} is not an IP address or CIDR block"
    return ""


def hostname_problem(host: str, *, allow_ip: bool = False) -> str:
    """Istio's host rules: DNS names whose only wildcard is a whole leading "*." label (or
    "*" alone); short names like "reviews" are fine (resolved against the namespace)."""
    if host == "*":
        return ""
    if not host:
        return "host must not be empty"
    if allow_ip and is_ip(host):
        return ""
    rest = host[2:] if host.startswith("*.") else host
    if "*" in rest:
        return f"host {host!r}: a wildcard is only allowed as a leading '*.'"
    if len(host) > 255:
        return f"host {host!r} is longer than 255 characters"
    for label in rest.split("."):
        if len(label) > 63 or not _HOST_LABEL.fullmatch(label):
            return f"host {host!r}: {label!r} is not a valid DNS label"
    return ""


def namespaced_host_problem(value: str) -> str:
    """Gateway server and Sidecar egress hosts: "namespace/dnsName" ("*", ".", "~" or a
    namespace; dnsName "*" or a hostname). A bare dnsName means any namespace ("*/")."""
    ns, slash, host = value.rpartition("/")
    if slash and ns not in ("*", ".", "~") and dns1123_label_problem(ns):
        return f"{value!r}: namespace {ns!r} must be '*', '.', '~' or a namespace name"
    return hostname_problem(host)


def export_to_problem(value: str) -> str:
    if value in ("*", ".", "~"):
        return ""
    problem = dns1123_label_problem(value)
    return f"exportTo {value!r} must be '*', '.', '~' or a namespace name" if problem else ""


def regex_problem(pattern: str) -> str:
    """Whether `pattern` is a usable RE2 regex. Python's `re` is an approximation of RE2: it
    is checked for RE2's missing features first (lookaround, backreferences)."""
    if _NOT_RE2.search(pattern):
        return f"regex {pattern!r} uses lookaround or backreferences, which RE2 does not support"
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"invalid regex {pattern!r}: {exc}"
    return ""
