"""ConfigMap `istio` (namespace istio-system) -> MeshConfigSpec: Istio's mesh-wide settings
in the form `kubectl get cm istio -n istio-system -o yaml` shows, MeshConfig YAML under
`data.mesh`.

Every other ConfigMap is not mesh config and is ignored, as before. MeshConfig has many
fields meshplane does not read; those get a "not supported yet" warning rather than an
error, because a real cluster's ConfigMap carries several of them and the fields meshplane
does read must still apply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import yaml

from meshplane.api import formats
from meshplane.api.core.mesh_config import (
    MESH_CONFIGMAP_KEY,
    MESH_CONFIGMAP_NAME,
    MESH_CONFIGMAP_NAMESPACE,
    MeshConfigSpec,
)
from meshplane.api.fields import UNSUPPORTED, Fields
from meshplane.api.meta import ObjectMeta
from meshplane.api.parsers.extension_providers import extension_providers

__all__ = ["config_map", "is_mesh_config"]

# Fields whose value meshplane takes from elsewhere: reading them would mislead.
_SET_ELSEWHERE = {
    "discoveryAddress": "ignored: proxies connect where `meshplane bootstrap --xds-address` says",
}


def is_mesh_config(meta: ObjectMeta) -> bool:
    """Whether a ConfigMap is the one Istio reads its MeshConfig from."""
    return (meta.namespace, meta.name) == (MESH_CONFIGMAP_NAMESPACE, MESH_CONFIGMAP_NAME)


def config_map(root: Fields, meta: ObjectMeta) -> MeshConfigSpec:
    """The mesh config of ConfigMap istio-system/istio (call only when `is_mesh_config`)."""
    root.keys(("apiVersion", "kind", "metadata", "data", "binaryData", "immutable"))
    data = root.obj("data") or Fields({}, root.at("data"), root.problems)
    for key in data.data:
        if key != MESH_CONFIGMAP_KEY:
            data.warn(key, UNSUPPORTED)
    text = data.text(MESH_CONFIGMAP_KEY)
    if not text:
        return MeshConfigSpec()
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        data.error(MESH_CONFIGMAP_KEY, f"not valid YAML: {_one_line(exc)}")
        return MeshConfigSpec()
    if loaded is None:
        return MeshConfigSpec()
    if not isinstance(loaded, Mapping):
        data.error(MESH_CONFIGMAP_KEY, "must be a MeshConfig object (YAML mapping)")
        return MeshConfigSpec()
    return _mesh(Fields(dict(loaded), data.at(MESH_CONFIGMAP_KEY), root.problems))


def _one_line(exc: yaml.YAMLError) -> str:
    return " ".join(str(exc).split())


def _warn_unread(f: Fields, read: set[str]) -> None:
    for key in f.data:
        if key not in read:
            f.warn(key, _SET_ELSEWHERE.get(key, UNSUPPORTED))


def _mesh(f: Fields) -> MeshConfigSpec:
    readers: dict[str, Callable[[Fields], Any]] = {
        "accessLogFile": lambda m: m.text("accessLogFile"),
        "accessLogEncoding": lambda m: m.enum("accessLogEncoding", ("JSON", "TEXT")),
        "enableTracing": lambda m: m.flag("enableTracing"),
        "outboundTrafficPolicy": _outbound_mode,
        "rootNamespace": _root_namespace,
        "trustDomain": lambda m: m.text("trustDomain", empty_ok=False),
        "trustDomainAliases": lambda m: m.str_list("trustDomainAliases", check=_trust_domain),
        "defaultConfig": lambda m: m.read("defaultConfig", _default_config),
        "extensionProviders": extension_providers,
    }
    _warn_unread(f, set(readers))
    values = {key: read(f) for key, read in readers.items() if f.has(key)}
    tracing = values.get("defaultConfig") or (None, None, None)
    return MeshConfigSpec(
        access_log_file=values.get("accessLogFile"),
        access_log_encoding=values.get("accessLogEncoding"),
        enable_tracing=values.get("enableTracing"),
        zipkin_address=tracing[0],
        trace_sampling=tracing[1],
        outbound_traffic_policy=values.get("outboundTrafficPolicy"),
        root_namespace=values.get("rootNamespace"),
        trust_domain=values.get("trustDomain"),
        num_trusted_proxies=tracing[2],
        trust_domain_aliases=values.get("trustDomainAliases"),
        extension_providers=values.get("extensionProviders"),
    )


def _outbound_mode(f: Fields) -> str | None:
    policy = f.obj("outboundTrafficPolicy")
    if policy is None:
        return None
    _warn_unread(policy, {"mode"})
    return policy.enum("mode", ("ALLOW_ANY", "REGISTRY_ONLY"))


def _trust_domain(value: str) -> str:
    """Istio's ValidateTrustDomain: dot-separated DNS-1123 labels (a trailing dot allowed)."""
    labels = value.removesuffix(".").split(".") if value else [""]
    bad = any(formats.dns1123_label_problem(label) for label in labels)
    return f"trust domain {value!r} must be DNS-1123 labels joined by dots" if bad else ""


def _root_namespace(f: Fields) -> str | None:
    value = f.text("rootNamespace", empty_ok=False)
    if value is not None and (reason := formats.dns1123_label_problem(value)):
        f.error("rootNamespace", reason)
        return None
    return value


def _default_config(f: Fields) -> tuple[str | None, float | None, int | None]:
    """ProxyConfig: `tracing` (zipkin address, sampling) and
    `gatewayTopology.numTrustedProxies` are read."""
    _warn_unread(f, {"tracing", "gatewayTopology"})
    address, sampling = f.read("tracing", _tracing) or (None, None)
    return address, sampling, f.read("gatewayTopology", _trusted_proxies)


def _tracing(tracing: Fields) -> tuple[str | None, float | None]:
    _warn_unread(tracing, {"zipkin", "sampling"})
    sampling = tracing.percent("sampling")
    zipkin = tracing.obj("zipkin")
    if zipkin is None:
        return None, sampling
    _warn_unread(zipkin, {"address"})
    address = zipkin.text("address", empty_ok=False)
    if address is not None and (reason := host_port_problem(address)):
        zipkin.error("address", reason)
        address = None
    return address, sampling


def _trusted_proxies(topology: Fields) -> int | None:
    """How many proxies in front of the gateways append to X-Forwarded-For (uint32)."""
    _warn_unread(topology, {"numTrustedProxies"})
    return topology.integer("numTrustedProxies", lo=0, hi=2**32 - 1)


def host_port_problem(address: str) -> str:
    """Reason `address` is not ``HOST:PORT`` (a DNS name, an IPv4 or a bracketed IPv6)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) <= 65535:
        return f"{address!r} is not HOST:PORT (e.g. zipkin.istio-system:9411)"
    bare = host.removeprefix("[").removesuffix("]")
    if host.startswith("["):
        return "" if formats.is_ip(bare) else f"{host!r} is not an IPv6 address"
    if formats.is_ip(host):
        return ""
    reason = formats.hostname_problem(host)
    return f"{host!r}: {reason}" if reason else ""
