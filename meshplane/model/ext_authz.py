"""Which external authorizer a CUSTOM AuthorizationPolicy uses, and why it cannot be used.

A CUSTOM policy names a MeshConfig `extensionProviders` entry, whose `service` must be a
host of the registry (a Kubernetes Service or a ServiceEntry host) with the provider's
`port`: Envoy calls it through that host's outbound cluster. When any of this does not
hold, Istio keeps failing closed (it denies what the policy's rules match) and reports the
problem; the same resolution serves the translator (what to build) and the analysis (the
error on the policy), so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from meshplane.api.core.mesh_config import ExtensionProvider
from meshplane.api.errors import ValidationError
from meshplane.api.meta import Object
from meshplane.api.security.authorization_policy import AuthorizationPolicySpec
from meshplane.model.mesh import MeshConfig, MeshModel
from meshplane.model.services import Service

__all__ = ["custom_policy_errors", "provider_problem", "resolve_provider"]


def resolve_provider(
    name: str | None, mesh: MeshConfig, services: Iterable[Service]
) -> tuple[ExtensionProvider | None, str]:
    """(the provider named `name`, "") when it can be used with `services`, else (None, the
    reason)."""
    providers = {p.name: p for p in mesh.extension_providers}
    provider = providers.get(name or "")
    if provider is None:
        known = ", ".join(sorted(providers)) or "none"
        return None, (
            f"extension provider {name!r} is not in the mesh config's extensionProviders "
            f"(known: {known}); the requests its rules match are denied"
        )
    reason = provider_problem(provider, services)
    return (None, reason) if reason else (provider, "")


def provider_problem(provider: ExtensionProvider, services: Iterable[Service]) -> str:
    """Why `provider`'s service cannot be reached through `services` ("" when it can)."""
    for service in services:
        if service.hostname == provider.service:
            if any(p.number == provider.port for p in service.ports):
                return ""
            return (
                f"extension provider {provider.name!r}: service {provider.service} has no "
                f"port {provider.port}; the requests its rules match are denied"
            )
    return (
        f"extension provider {provider.name!r}: no Service or ServiceEntry has host "
        f"{provider.service}; the requests its rules match are denied"
    )


def custom_policy_errors(model: MeshModel) -> Iterator[ValidationError]:
    """An error on each CUSTOM policy whose provider cannot be used (the policy stays
    applied, failing closed)."""
    for policy in model.authorization_policies:
        if policy.spec.action != "CUSTOM" or policy.spec.provider is None:
            continue
        _, reason = resolve_provider(
            policy.spec.provider, model.mesh_config, model.services.values()
        )
        if reason:
            yield _error(policy, "spec.provider.name", reason)


def _error(obj: Object[AuthorizationPolicySpec], field: str, reason: str) -> ValidationError:
    return ValidationError(obj.origin, obj.kind, obj.namespace, obj.name, field, reason, "error")
