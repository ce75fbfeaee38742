"""ObjectMeta: name, namespace, labels and annotations, checked as Kubernetes does."""

from __future__ import annotations

from meshplane.api import formats
from meshplane.api.fields import Fields
from meshplane.api.meta import ObjectMeta

DEFAULT_NAMESPACE = "default"


def object_meta(root: Fields, *, namespaced: bool) -> ObjectMeta:
    """Read `metadata`; a namespaced object without a namespace lands in "default"."""
    f = root.obj("metadata", required=True) or Fields({}, "metadata", root.problems)
    name = f.text("name", required=True, empty_ok=False) or ""
    if name and (reason := formats.dns1123_subdomain_problem(name)):
        f.error("name", reason)
    ns = f.text("namespace") or ""
    if ns and (reason := formats.dns1123_label_problem(ns)):
        f.error("namespace", reason)
    if namespaced and not ns:
        ns = DEFAULT_NAMESPACE
    created = f.data.get("creationTimestamp")
    generation = f.integer("generation", lo=0)
    return ObjectMeta(
        name=name,
        namespace=ns if namespaced else "",
        labels=f.str_map("labels", labels=True) or {},
        annotations=f.str_map("annotations") or {},
        # YAML reads an unquoted timestamp as a datetime; keep Kubernetes' RFC 3339 text.
        creation_timestamp=_timestamp(created),
        resource_version=str(f.data.get("resourceVersion") or ""),
        generation=generation or 0,
    )


def _timestamp(value: object) -> str:
    if value is None:
        return ""
    iso = getattr(value, "isoformat", None)
    if iso is not None:
        return str(iso()).replace("+00:00", "Z")
    return str(value)
