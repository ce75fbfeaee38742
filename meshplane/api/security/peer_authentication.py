"""PeerAuthentication: whether a workload's inbound side accepts plaintext, mutual TLS, or
both (security.istio.io v1 and v1beta1)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# UNSET inherits the mode of the next policy up (namespace, then mesh, then PERMISSIVE).
MTLS_MODES = ("UNSET", "DISABLE", "PERMISSIVE", "STRICT")


@dataclass(frozen=True)
class PeerAuthenticationSpec:
    """`selector` None: the policy covers its whole namespace (the mesh, in the root
    namespace). `port_mtls` maps a workload port to its own mode (only with a selector)."""

    selector: Mapping[str, str] | None = None
    mode: str = "UNSET"
    port_mtls: Mapping[int, str] = field(default_factory=dict)
