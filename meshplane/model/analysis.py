"""Checks across objects (what `istioctl analyze` reports): conflicts and dangling references.

Single-object validation happens when parsing; these need the whole model. They are warnings:
the config is still applied (Istio semantics decide who wins), but a user should know.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from meshplane.api.errors import ValidationError
from meshplane.api.meta import Object
from meshplane.api.networking.destination_rule import DestinationRuleSpec
from meshplane.api.networking.virtual_service import Destination, VirtualServiceSpec
from meshplane.model.client_credentials import client_credential_warnings
from meshplane.model.delegates import delegate_lookup, delegate_warnings
from meshplane.model.ext_authz import custom_policy_errors
from meshplane.model.gateway_credentials import credential_warnings
from meshplane.model.hosts import host_matches
from meshplane.model.mesh import MeshModel

if TYPE_CHECKING:
    from meshplane.model.store import ConfigStore


def analyze(store: ConfigStore) -> list[ValidationError]:
    """Everything `meshplane analyze` prints: errors first, then warnings."""
    return store.errors() + store.warnings()


def _warn(obj: Object[Any], field: str, reason: str) -> ValidationError:
    return ValidationError(obj.origin, obj.kind, obj.namespace, obj.name, field, reason, "warning")


def exported_to(obj: Object[Any], export_to: tuple[str, ...]) -> frozenset[str]:
    """Namespaces an object is visible in ("*" = all); Istio's default is "*"."""
    if not export_to or "*" in export_to:
        return frozenset({"*"})
    return frozenset(obj.namespace if e == "." else e for e in export_to if e != "~")


def exported_more_widely(scope: frozenset[str], than: frozenset[str]) -> bool:
    """True when `scope` reaches every namespace `than` does, and more (exported_to sets)."""
    return scope != than and ("*" in scope or ("*" not in than and than <= scope))


def merges_into(older: Object[DestinationRuleSpec], younger: Object[DestinationRuleSpec]) -> bool:
    """Istio's enhanced merge: a younger DestinationRule for the same host (neither with a
    workload selector) merges into an older one exported to the same namespaces, or to
    fewer than it is."""
    scope = exported_to(younger, younger.spec.export_to)
    into = exported_to(older, older.spec.export_to)
    return scope == into or exported_more_widely(scope, into)


def _scopes_overlap(a: frozenset[str], b: frozenset[str]) -> bool:
    return "*" in a or "*" in b or bool(a & b)


def gateway_refs(vs: Object[VirtualServiceSpec]) -> tuple[str, ...]:
    """The VirtualService's gateways as "mesh" or "ns/name" (names are relative to its ns)."""
    refs = vs.spec.gateways or ("mesh",)
    return tuple(r if r == "mesh" or "/" in r else f"{vs.namespace}/{r}" for r in refs)


def cross_object_warnings(
    model: MeshModel, host_claims: Mapping[str, list[Object[Any]]]
) -> list[ValidationError]:
    """`host_claims`: hosts declared by several objects, the one in use first."""
    found = list(_virtual_service_conflicts(model.virtual_services))
    found += _dangling_references(model)
    found += _destination_rule_checks(model)
    found += credential_warnings(model)
    found += client_credential_warnings(model)
    found += custom_policy_errors(model)
    found += delegate_warnings(model.virtual_services, delegate_lookup(model.virtual_services))
    for host, objs in sorted(host_claims.items()):
        winner = objs[0]
        for loser in objs[1:]:
            reason = (
                f"host {host} is also declared by {winner.kind} "
                f"{winner.namespace}/{winner.name}, which is used"
            )
            found.append(_warn(loser, "spec.hosts", reason))
    return found


def _virtual_service_conflicts(
    services: tuple[Object[VirtualServiceSpec], ...],
) -> Iterator[ValidationError]:
    """Two VirtualServices for one host on one gateway: on the mesh the oldest wins (Istio);
    on a gateway Istio merges their routes in order. Both are reported (IST0109)."""
    seen: dict[tuple[str, str], list[Object[VirtualServiceSpec]]] = {}
    for vs in services:  # oldest first
        scope = exported_to(vs, vs.spec.export_to)
        for gw in gateway_refs(vs):
            for host in vs.spec.hosts:
                older = [
                    o
                    for o in seen.get((host, gw), [])
                    if _scopes_overlap(scope, exported_to(o, o.spec.export_to))
                ]
                if older:
                    first = older[0]
                    what = (
                        "the older one wins, this one is ignored for that host"
                        if gw == "mesh"
                        else "their routes are merged, the older one's first"
                    )
                    yield _warn(
                        vs,
                        "spec.hosts",
                        f"host {host} on {gw} is also routed by VirtualService "
                        f"{first.namespace}/{first.name}: {what}",
                    )
                seen.setdefault((host, gw), []).append(vs)


def _destinations(vs: VirtualServiceSpec) -> Iterator[tuple[str, Destination]]:
    for i, http in enumerate(vs.http):
        for j, r in enumerate(http.route):
            yield f"spec.http[{i}].route[{j}].destination", r.destination
        for j, m in enumerate(http.mirrors):
            yield f"spec.http[{i}].mirrors[{j}].destination", m.destination
    for i, tcp in enumerate(vs.tcp):
        for j, d in enumerate(tcp.route):
            yield f"spec.tcp[{i}].route[{j}].destination", d.destination
    for i, tls in enumerate(vs.tls):
        for j, d in enumerate(tls.route):
            yield f"spec.tls[{i}].route[{j}].destination", d.destination


class _HostIndex:
    """Exact names in a dict, wildcard patterns in a short list: a lookup costs one dict probe
    plus the (few) wildcards, not a scan of every service or rule."""

    def __init__(self, entries: Mapping[str, set[str]]) -> None:
        self.exact = {h: v for h, v in entries.items() if not h.startswith("*")}
        self.wildcards = [(h, v) for h, v in entries.items() if h.startswith("*")]

    def matching(self, host: str) -> Iterator[set[str]]:
        if host in self.exact:
            yield self.exact[host]
        for pattern, value in self.wildcards:
            if host_matches(pattern, host):
                yield value


def _subsets(model: MeshModel) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for dr in model.destination_rules:
        out.setdefault(dr.spec.host, set()).update(s.name for s in dr.spec.subsets)
    return out


def _dangling_references(model: MeshModel) -> Iterator[ValidationError]:
    subsets = _HostIndex(_subsets(model))
    services = _HostIndex({h: set() for h in model.services})
    for vs in model.virtual_services:
        for path, dest in _destinations(vs.spec):
            if next(services.matching(dest.host), None) is None:
                yield _warn(
                    vs,
                    f"{path}.host",
                    f"host {dest.host} is not a known service "
                    "(no Service or ServiceEntry declares it)",
                )
            if dest.subset:
                defined = set().union(*subsets.matching(dest.host))
                if dest.subset not in defined:
                    yield _warn(
                        vs,
                        f"{path}.subset",
                        f"subset {dest.subset!r} of host "
                        f"{dest.host} is not defined by any DestinationRule",
                    )


def _destination_rule_checks(model: MeshModel) -> Iterator[ValidationError]:
    seen: dict[tuple[str, str], list[Object[DestinationRuleSpec]]] = {}
    for dr in model.destination_rules:
        host = dr.spec.host
        if "*" not in host and host not in model.services:
            yield _warn(dr, "spec.host", f"host {host} is not a known service")
        if dr.spec.workload_selector:
            continue
        older = seen.setdefault((dr.namespace, host), [])
        first = next((o for o in older if merges_into(o, dr)), None)
        if first is not None:
            yield from _merge_warnings(first, dr)
        older.append(dr)


def _merge_warnings(
    first: Object[DestinationRuleSpec], dr: Object[DestinationRuleSpec]
) -> Iterator[ValidationError]:
    """Istio merges same-namespace DestinationRules for one host into the oldest: new subset
    names are added, the oldest's trafficPolicy wins. Say what of `dr` is dropped."""
    older = f"DestinationRule {first.namespace}/{first.name}"
    yield _warn(
        dr,
        "spec.host",
        f"{older} also applies to {dr.spec.host} in this namespace; "
        "this one is merged into it (its new subsets are added)",
    )
    if first.spec.traffic_policy is not None and dr.spec.traffic_policy is not None:
        yield _warn(dr, "spec.trafficPolicy", f"ignored: {older} already sets a trafficPolicy")
    names = {s.name for s in first.spec.subsets}
    for i, subset in enumerate(dr.spec.subsets):
        if subset.name in names:
            yield _warn(
                dr,
                f"spec.subsets[{i}]",
                f"ignored: subset {subset.name!r} is already defined by {older}",
            )
