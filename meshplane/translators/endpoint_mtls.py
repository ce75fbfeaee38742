"""Which endpoints auto mTLS reaches over mTLS: those with a sidecar (the tlsMode label)
whose own PeerAuthentication does not DISABLE mTLS on that port.

Auto mTLS clusters pick their transport socket per endpoint by its ``tlsMode: istio``
metadata (mtls.py). Istio's pilot drops that metadata in EDS (its mtlsChecker) when the
destination cannot take mTLS, so the client speaks plaintext to it:
- the DestinationRule's TLS mode for the endpoint (the traffic policy's, per port, then the
  first subset whose labels the endpoint carries, if that subset sets one) is DISABLE (when
  it is ISTIO_MUTUAL, no PeerAuthentication is consulted);
- the endpoint has no sidecar (no ``security.istio.io/tlsMode: istio`` label);
- the workload's effective PeerAuthentication (Istio precedence, portLevelMtls for the
  endpoint's own port) is DISABLE. STRICT and PERMISSIVE change nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshplane.api.networking.destination_rule import DestinationRuleSpec, TrafficPolicy
from meshplane.model.peer_authentication import inbound_mtls
from meshplane.model.scope import ProxyView, label_key
from meshplane.model.services import Endpoint
from meshplane.translators.mtls import TLS_MODE_LABEL

__all__ = ["EndpointMtls", "dr_tls_mode"]


def _policy_mode(policy: TrafficPolicy | None, port: int) -> str | None:
    """The TLS mode a traffic policy sets for `port` (its port-level setting wins)."""
    if policy is None:
        return None
    mode = policy.tls.mode.upper() if policy.tls is not None else None
    for settings in policy.port_level_settings:
        if settings.port == port and settings.tls is not None:
            return settings.tls.mode.upper()
    return mode


def dr_tls_mode(dr: DestinationRuleSpec | None, port: int, labels: Mapping[str, str]) -> str | None:
    """The DestinationRule's TLS mode for an endpoint with `labels` behind service `port`:
    the first subset the labels fall in overrides the rule's own policy if it sets a mode
    (Istio's mtlsModeForDestinationRule)."""
    if dr is None:
        return None
    mode = _policy_mode(dr.traffic_policy, port)
    for subset in dr.subsets:
        if all(labels.get(k) == v for k, v in subset.labels.items()):
            return _policy_mode(subset.traffic_policy, port) or mode
    return mode


class EndpointMtls:
    """Per view: whether each endpoint keeps its ``tlsMode: istio`` metadata. PeerAuthentication
    outcomes are computed once per (namespace, labels, port)."""

    def __init__(self, view: ProxyView) -> None:
        self._view = view
        self._disabled: dict[tuple[str, tuple[tuple[str, str], ...], int], bool] = {}

    def istio(self, hostname: str, endpoint: Endpoint) -> bool:
        """True if auto mTLS should use mTLS to `endpoint` (of service `hostname`)."""
        rule = self._view.destination_rules.get(hostname)
        mode = dr_tls_mode(rule.spec if rule else None, endpoint.service_port, endpoint.labels)
        if mode == "DISABLE":
            return False
        sidecar = endpoint.labels.get(TLS_MODE_LABEL) == "istio"
        if mode == "ISTIO_MUTUAL":
            return sidecar  # Istio keeps the label's word whatever the policy says
        return sidecar and not self._peer_disabled(endpoint)

    def _peer_disabled(self, endpoint: Endpoint) -> bool:
        policies = self._view.peer_authentications
        if not policies:
            return False
        key = (endpoint.namespace, label_key(endpoint.labels), endpoint.port)
        found = self._disabled.get(key)
        if found is None:
            root = self._view.mesh.root_namespace
            mtls = inbound_mtls(policies, endpoint.namespace, endpoint.labels, root)
            found = self._disabled[key] = mtls.mode_for(endpoint.port) == "DISABLE"
        return found
