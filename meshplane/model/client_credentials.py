"""Warnings for DestinationRule `credentialName`s whose Secret does not exist.

A proxy reads a DestinationRule's credential from its own namespace's Secrets (over SDS on
the TLS port). As in Istio, the cluster does not wait for a missing one forever: it warms
for Envoy's initial-fetch timeout (15 s), then runs without it, so its TLS handshakes fail
(503) until the Secret is created and arrives over SDS. That is worth a warning naming the
Secret; it is checked in the rule's own namespace, where its proxies usually run.
"""

from __future__ import annotations

from collections.abc import Iterator

from meshplane.api.errors import ValidationError
from meshplane.api.meta import Object
from meshplane.api.networking.destination_rule import (
    ClientTLS,
    DestinationRuleSpec,
    TrafficPolicy,
)
from meshplane.model.gateway_credentials import CA_SUFFIX, CREDENTIAL_PREFIX, provided_credentials
from meshplane.model.mesh import MeshModel

__all__ = ["client_credential_warnings"]


def _client_tls(policy: TrafficPolicy | None, path: str) -> Iterator[tuple[str, ClientTLS]]:
    if policy is None:
        return
    if policy.tls is not None:
        yield f"{path}.tls", policy.tls
    for i, port in enumerate(policy.port_level_settings):
        if port.tls is not None:
            yield f"{path}.portLevelSettings[{i}].tls", port.tls


def _all_tls(spec: DestinationRuleSpec) -> Iterator[tuple[str, ClientTLS]]:
    yield from _client_tls(spec.traffic_policy, "spec.trafficPolicy")
    for i, subset in enumerate(spec.subsets):
        yield from _client_tls(subset.traffic_policy, f"spec.subsets[{i}].trafficPolicy")


def needed(tls: ClientTLS) -> tuple[str, ...]:
    """The credential names a client `tls` with `credentialName` reads: the certificate for
    MUTUAL, the CA bundle unless verification is off."""
    if not tls.credential_name or tls.mode.upper() not in ("SIMPLE", "MUTUAL"):
        return ()
    name = tls.credential_name.removeprefix(CREDENTIAL_PREFIX)
    names = [name] if tls.mode.upper() == "MUTUAL" else []
    if not tls.insecure_skip_verify:
        names.append(name + CA_SUFFIX)
    return tuple(names)


def client_credential_warnings(model: MeshModel) -> Iterator[ValidationError]:
    """One warning per DestinationRule TLS block whose credential is missing."""
    for dr in model.destination_rules:
        provided: frozenset[str] | None = None
        for path, tls in _all_tls(dr.spec):
            names = needed(tls)
            if not names:
                continue
            if provided is None:
                provided = provided_credentials(model.credentials, dr.namespace)
            missing = [n for n in names if n not in provided]
            if missing:
                yield _warning(dr, f"{path}.credentialName", missing[0])


def _warning(dr: Object[DestinationRuleSpec], field: str, missing: str) -> ValidationError:
    if missing.endswith(CA_SUFFIX):
        base = missing.removesuffix(CA_SUFFIX)
        what = f"no CA bundle for {base} (Secret {base} or {missing})"
    else:
        what = f"no Secret {missing} with a certificate and key"
    reason = (
        f"{what} in namespace {dr.namespace}: its clusters wait 15 s for it, then fail TLS "
        "(503) until it exists"
    )
    return ValidationError(dr.origin, dr.kind, dr.namespace, dr.name, field, reason, "warning")
