"""PeerAuthentication parser, with Istio's validation: known modes only, and
`portLevelMtls` only on a policy that selects workloads (ports are a workload's)."""

from __future__ import annotations

from meshplane.api.fields import Fields
from meshplane.api.security.peer_authentication import MTLS_MODES, PeerAuthenticationSpec


def _mode(f: Fields | None) -> str:
    if f is None:
        return "UNSET"
    f.keys(("mode",))
    return f.enum("mode", MTLS_MODES) or "UNSET"


def _port_modes(f: Fields, has_selector: bool) -> dict[int, str]:
    raw = f.obj("portLevelMtls")
    if raw is None:
        return {}
    if not has_selector:
        f.error("portLevelMtls", "portLevelMtls requires a workload selector")
        return {}
    if not raw.data:
        f.error("portLevelMtls", "must not be empty when present")
    modes: dict[int, str] = {}
    for key in raw.data:
        port = int(key) if isinstance(key, int) or str(key).isdigit() else 0
        if not 0 < port < 65536:
            raw.error(str(key), f"port {key!r} must be a number in [1, 65535]")
            continue
        sub = raw.obj(str(key)) if isinstance(key, str) else None
        if sub is None and isinstance(key, int):
            value = raw.data[key]
            sub = Fields(value, raw.at(str(key)), raw.problems) if isinstance(value, dict) else None
            if sub is None:
                raw.error(str(key), "must be an object")
        if sub is not None:
            modes[port] = _mode(sub)
    return modes


def peer_authentication(f: Fields) -> PeerAuthenticationSpec:
    f.keys(("selector", "mtls", "portLevelMtls"), ignored=("targetRef", "targetRefs"))
    selector = None
    sel = f.obj("selector")
    if sel is not None:
        sel.keys(("matchLabels",))
        selector = sel.str_map("matchLabels", labels=True) or {}
    return PeerAuthenticationSpec(
        selector=selector or None,
        mode=_mode(f.obj("mtls")),
        port_mtls=_port_modes(f, bool(selector)),
    )
