"""The Kubernetes resources meshplane watches, and where each lives in the API.

The list mirrors what istiod's Kubernetes controller reads: the registry (Services,
EndpointSlices, Pods, Namespaces), the Istio CRDs, the TLS Secrets that `credentialName`
names, and the mesh config ConfigMap istio-system/istio. Each Istio kind is tried at v1
first and at older versions when a cluster's CRDs do not serve v1 yet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RESOURCES", "Resource", "is_tls_secret"]

Keep = Callable[[Mapping[str, Any]], bool]

# The keys the model reads a TLS credential from (Istio's two layouts, and a CA alone).
_CREDENTIAL_KEYS = frozenset({"tls.crt", "tls.key", "ca.crt", "cert", "key", "cacert"})


def is_tls_secret(secret: Mapping[str, Any]) -> bool:
    """Whether a Secret holds a certificate, key or CA the mesh could serve.

    Others (tokens, registry credentials, Helm releases) are never held in memory.
    """
    for section in ("data", "stringData"):
        values = secret.get(section)
        if isinstance(values, Mapping) and _CREDENTIAL_KEYS.intersection(values):
            return True
    return False


def _always(_obj: Mapping[str, Any]) -> bool:
    return True


@dataclass(frozen=True)
class Resource:
    """One resource type: its group, the versions tried in order, kind and plural."""

    group: str
    versions: tuple[str, ...]
    kind: str
    plural: str
    namespace: str = ""
    """Watch one namespace only ("" for all, and for cluster-scoped kinds)."""
    field_selector: str = ""
    keep: Keep = _always
    """Objects it rejects are treated as absent (a Secret that stops holding a certificate is
    deleted from the mesh)."""

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    def path(self, version: str) -> str:
        """The collection URL path, e.g. /apis/networking.istio.io/v1/virtualservices."""
        root = f"/apis/{self.group}/{version}" if self.group else f"/api/{version}"
        if self.namespace:
            root += f"/namespaces/{self.namespace}"
        return f"{root}/{self.plural}"

    def __str__(self) -> str:
        return f"{self.kind} ({self.group or 'core'})"


_NETWORKING = ("v1", "v1beta1", "v1alpha3")
_SECURITY = ("v1", "v1beta1")

RESOURCES: tuple[Resource, ...] = (
    Resource("", ("v1",), "Namespace", "namespaces"),
    Resource("", ("v1",), "Service", "services"),
    Resource("discovery.k8s.io", ("v1",), "EndpointSlice", "endpointslices"),
    Resource("", ("v1",), "Pod", "pods"),
    Resource(
        "",
        ("v1",),
        "Secret",
        "secrets",
        # Istio's credential controller excludes these two types on the server side too.
        field_selector="type!=kubernetes.io/service-account-token,type!=helm.sh/release.v1",
        keep=is_tls_secret,
    ),
    Resource(
        "",
        ("v1",),
        "ConfigMap",
        "configmaps",
        namespace="istio-system",
        field_selector="metadata.name=istio",
    ),
    *(
        Resource("networking.istio.io", _NETWORKING, kind, plural)
        for kind, plural in (
            ("ServiceEntry", "serviceentries"),
            ("WorkloadEntry", "workloadentries"),
            ("DestinationRule", "destinationrules"),
            ("VirtualService", "virtualservices"),
            ("Gateway", "gateways"),
            ("Sidecar", "sidecars"),
        )
    ),
    *(
        Resource("security.istio.io", _SECURITY, kind, plural)
        for kind, plural in (
            ("PeerAuthentication", "peerauthentications"),
            ("AuthorizationPolicy", "authorizationpolicies"),
            ("RequestAuthentication", "requestauthentications"),
        )
    ),
)
