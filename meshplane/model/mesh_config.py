"""The MeshConfig in force: `serve`'s options overlaid with the `istio` ConfigMap.

Without the ConfigMap the translators see meshplane's defaults (JSON access log on stdout,
no tracing). Once the ConfigMap exists, Istio's defaults apply to every telemetry field it
leaves out, as they would in Istio: no access log, TEXT encoding, tracing enabled at 1%
sampling (tracing also needs a Zipkin address: without one nothing is traced).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from meshplane.api.core.mesh_config import MeshConfigSpec
from meshplane.api.errors import ValidationError
from meshplane.api.meta import Object
from meshplane.model.mesh import MeshConfig

__all__ = ["effective_mesh_config"]

# Istio's values for the fields a ConfigMap leaves out (its DefaultMeshConfig).
ISTIO_DEFAULTS: dict[str, Any] = {
    "access_log_file": "",
    "access_log_encoding": "TEXT",
    "enable_tracing": True,
    "zipkin_address": "",
    "trace_sampling": 1.0,
    "outbound_traffic_policy": "ALLOW_ANY",
    "num_trusted_proxies": 0,
}


def effective_mesh_config(
    base: MeshConfig, configmap: Object[MeshConfigSpec] | None
) -> tuple[MeshConfig, list[ValidationError]]:
    """`base` with the ConfigMap's settings applied, and warnings about ones not applied."""
    if configmap is None:
        return base, []
    spec = configmap.spec
    values = {
        name: default if (value := getattr(spec, name)) is None else value
        for name, default in ISTIO_DEFAULTS.items()
    }
    if spec.root_namespace is not None:
        values["root_namespace"] = spec.root_namespace
    # Aliases are about policy and peers, not certificates, so the ConfigMap's apply.
    values["trust_domain_aliases"] = spec.trust_domain_aliases or ()
    values["extension_providers"] = spec.extension_providers or ()
    warnings = []

    def warn(field: str, reason: str) -> None:
        warnings.append(
            ValidationError(
                configmap.origin,
                configmap.kind,
                configmap.namespace,
                configmap.name,
                f"data.mesh.{field}",
                reason,
                "warning",
            )
        )

    if spec.trust_domain is not None and spec.trust_domain != base.trust_domain:
        warn(
            "trustDomain",
            f"ignored: certificates use serve --trust-domain ({base.trust_domain!r}); "
            "list other trust domains in trustDomainAliases",
        )
    if spec.enable_tracing and not spec.zipkin_address:
        warn(
            "enableTracing",
            "no effect without defaultConfig.tracing.zipkin.address (nothing is traced)",
        )
    return dataclasses.replace(base, **values), warnings
