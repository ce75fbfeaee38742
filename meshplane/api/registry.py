"""The one entry point from raw manifests to typed objects: (group, version, kind) -> parser.

Every version of an Istio API (v1alpha3, v1beta1, v1) maps to the same parser and the same
ConfigKey kind, so a user's existing YAML loads whatever version it was written for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from meshplane.api.errors import InvalidObject, ValidationError
from meshplane.api.fields import Fields, Problems
from meshplane.api.meta import ConfigKey, Object, ObjectMeta
from meshplane.api.parsers import kubernetes
from meshplane.api.parsers.authorization_policy import authorization_policy
from meshplane.api.parsers.destination_rule import destination_rule
from meshplane.api.parsers.gateway import gateway
from meshplane.api.parsers.mesh_config import config_map, is_mesh_config
from meshplane.api.parsers.metadata import DEFAULT_NAMESPACE, object_meta
from meshplane.api.parsers.peer_authentication import peer_authentication
from meshplane.api.parsers.request_authentication import request_authentication
from meshplane.api.parsers.secret import secret
from meshplane.api.parsers.service_entry import service_entry, workload_entry
from meshplane.api.parsers.sidecar import sidecar
from meshplane.api.parsers.virtual_service import virtual_service
from meshplane.sources.events import Origin

__all__ = ["KINDS", "UnsupportedKind", "config_key", "parse"]

NETWORKING = "networking.istio.io"
SECURITY = "security.istio.io"
ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")

# (manifest root, metadata, problems) -> spec (None when it could not be built).
Parser = Callable[[Fields, ObjectMeta], Any]


def _istio(read: Callable[[Fields], Any]) -> Parser:
    def parse_spec(root: Fields, meta: ObjectMeta) -> Any:
        root.keys(("apiVersion", "kind", "metadata", "spec", "status"))
        spec = root.obj("spec") or Fields({}, "spec", root.problems)
        return read(spec)

    return parse_spec


def _not_enforced(root: Fields, meta: ObjectMeta) -> Any:
    """Security kinds are accepted but not translated yet: keep the raw spec, invent nothing."""
    kind = root.data.get("kind")
    root.problems.warn("", f"{kind} is not enforced yet by meshplane (accepted, no effect)")
    spec = root.data.get("spec")
    return MappingProxyType(dict(spec) if isinstance(spec, Mapping) else {})


_NETWORKING_KINDS: dict[str, Parser] = {
    "VirtualService": _istio(virtual_service),
    "DestinationRule": _istio(destination_rule),
    "Gateway": _istio(gateway),
    "ServiceEntry": _istio(service_entry),
    "WorkloadEntry": _istio(workload_entry),
    "Sidecar": _istio(sidecar),
}
_SECURITY_KINDS = ("PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication")
# Security kinds with a real parser; the others load with a "not enforced yet" warning.
_ENFORCED_SECURITY: dict[str, Parser] = {
    "PeerAuthentication": _istio(peer_authentication),
    "AuthorizationPolicy": _istio(authorization_policy),
    "RequestAuthentication": _istio(request_authentication),
}


def _config_map(root: Fields, meta: ObjectMeta) -> Any:
    """Only ConfigMap istio-system/istio is mesh config (Istio's MeshConfig); others are not."""
    if not is_mesh_config(meta):
        raise UnsupportedKind(f"ConfigMap {meta.name} is not mesh config", severity="ignore")
    return config_map(root, meta)


KINDS: dict[tuple[str, str, str], Parser] = {
    **{(NETWORKING, v, k): p for k, p in _NETWORKING_KINDS.items() for v in ISTIO_VERSIONS},
    **{
        (SECURITY, v, k): _ENFORCED_SECURITY.get(k, _not_enforced)
        for k in _SECURITY_KINDS
        for v in ("v1", "v1beta1")
    },
    ("", "v1", "Service"): kubernetes.service,
    ("", "v1", "Pod"): kubernetes.pod,
    ("", "v1", "Namespace"): kubernetes.namespace,
    ("", "v1", "Secret"): secret,  # TLS credentials for credentialName (never logged)
    ("", "v1", "ConfigMap"): _config_map,  # istio-system/istio: MeshConfig
    ("discovery.k8s.io", "v1", "EndpointSlice"): kubernetes.endpoint_slice,
}
CLUSTER_SCOPED = frozenset({"Namespace"})
NOT_IN_MODEL = frozenset(_SECURITY_KINDS) - _ENFORCED_SECURITY.keys()
_KNOWN_KINDS = {(g, k) for g, _, k in KINDS}


class UnsupportedKind(Exception):
    """A kind meshplane does not read.

    `severity` says what the user hears: "ignore" for Kubernetes' own kinds that are not
    mesh config (Deployment, ServiceAccount...: a bookinfo.yaml carries them), "warning" for
    Istio kinds or versions not read yet (the user expects them to do something), "error"
    for a kind nobody defines (a typo, or a CRD meshplane has never heard of).
    """

    def __init__(self, reason: str, *, severity: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.severity = severity

    @property
    def warn(self) -> bool:
        return self.severity != "ignore"


# API groups of Kubernetes itself: objects of these groups are valid, just not mesh config.
KUBERNETES_GROUPS = frozenset(
    {
        "",
        "apps",
        "batch",
        "autoscaling",
        "policy",
        "networking.k8s.io",
        "discovery.k8s.io",
        "rbac.authorization.k8s.io",
        "storage.k8s.io",
        "scheduling.k8s.io",
        "coordination.k8s.io",
        "node.k8s.io",
        "apiextensions.k8s.io",
        "admissionregistration.k8s.io",
        "certificates.k8s.io",
        "events.k8s.io",
    }
)


def split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def config_key(manifest: Mapping[str, Any]) -> ConfigKey:
    """The key an object of this manifest has (also for DELETE events, which carry only
    apiVersion, kind and metadata)."""
    kind = str(manifest.get("kind") or "")
    meta = manifest.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    namespace = str(meta.get("namespace") or "")
    if kind not in CLUSTER_SCOPED and not namespace:
        namespace = DEFAULT_NAMESPACE
    return ConfigKey(kind, "" if kind in CLUSTER_SCOPED else namespace, str(meta.get("name") or ""))


def revision(manifest: Mapping[str, Any], meta: ObjectMeta) -> str:
    """Content hash of what the object means: everything but apiVersion and metadata, plus
    labels and Istio annotations. Rewriting a file with equal content keeps it."""
    body = {k: v for k, v in manifest.items() if k not in ("apiVersion", "metadata")}
    annotations = {k: v for k, v in meta.annotations.items() if "istio.io" in k}
    doc = {"body": body, "labels": dict(meta.labels), "annotations": annotations}
    try:
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    except TypeError:  # YAML maps may mix int and str keys (portLevelMtls: {8080: .., "9090": ..})
        canonical = repr(doc)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parser_for(api_version: str, kind: str) -> Parser:
    group, version = split_api_version(api_version)
    found = KINDS.get((group, version, kind))
    if found is not None:
        return found
    if (group, kind) in _KNOWN_KINDS:
        versions = sorted(v for g, v, k in KINDS if (g, k) == (group, kind))
        raise UnsupportedKind(
            f"apiVersion {api_version!r} of {kind} is not one meshplane reads "
            f"(use {', '.join(f'{group}/{v}' if group else v for v in versions)})",
            severity="warning",
        )
    if group.endswith("istio.io") or group == "gateway.networking.k8s.io":
        raise UnsupportedKind(
            f"{kind} ({api_version}) is not supported yet, ignored", severity="warning"
        )
    if group in KUBERNETES_GROUPS:
        raise UnsupportedKind(f"{kind} ({api_version}) is not mesh config", severity="ignore")
    raise UnsupportedKind(f"unknown kind {kind!r} (apiVersion {api_version!r})", severity="error")


def parse(
    manifest: Mapping[str, Any], origin: Origin, seq: int
) -> tuple[Object[Any], list[ValidationError]]:
    """Typed object plus warnings, or InvalidObject carrying every error found.

    Raises UnsupportedKind for kinds meshplane does not read.
    """
    kind, api_version = manifest.get("kind"), manifest.get("apiVersion")
    key = config_key(manifest)
    if not isinstance(kind, str) or not kind or not isinstance(api_version, str) or not api_version:
        field = "kind" if not isinstance(kind, str) or not kind else "apiVersion"
        reason = f"{field} is missing or not a string"
        raise InvalidObject(
            [ValidationError(origin, str(kind or ""), key.namespace, key.name, field, reason)]
        )
    parse_kind = parser_for(api_version, kind)
    problems = Problems()
    root = Fields(manifest, "", problems)
    meta = object_meta(root, namespaced=kind not in CLUSTER_SCOPED)
    spec = parse_kind(root, meta)

    def report(pairs: list[tuple[str, str]], severity: str) -> list[ValidationError]:
        return [
            ValidationError(origin, kind, meta.namespace, meta.name, path, reason, severity)
            for path, reason in pairs
        ]

    if problems.errors or spec is None:
        errors = report(problems.errors or [("spec", "invalid")], "error")
        raise InvalidObject(errors + report(problems.warnings, "warning"))
    obj: Object[Any] = Object(
        kind=kind,
        api_version=api_version,
        meta=meta,
        spec=spec,
        origin=origin,
        revision=revision(manifest, meta),
        seq=seq,
    )
    return obj, report(problems.warnings, "warning")
