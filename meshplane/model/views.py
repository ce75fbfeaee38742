"""view_for: what one proxy sees of the mesh, as Istio scopes it (exportTo, Sidecar egress,
DestinationRule lookup, VirtualService binding).

This runs for every connected proxy on every push, so the work is shared: per MeshModel an
index is built once, and per scope (namespace, proxy type, interception mode, Sidecar,
selected workload DestinationRules, Gateways) the visible config and its key are computed
once. Only the inbound ports are per proxy; proxies with equal views get the same
ProxyView object (and the same key, the snapshot cache key).
"""

from __future__ import annotations

import dataclasses
import hashlib
import weakref
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from meshplane.api.meta import ConfigKey, Object
from meshplane.api.networking.destination_rule import DestinationRuleSpec
from meshplane.api.networking.gateway import GatewaySpec
from meshplane.api.networking.sidecar import SidecarSpec
from meshplane.api.networking.virtual_service import VirtualServiceSpec
from meshplane.api.security.peer_authentication import PeerAuthenticationSpec
from meshplane.model.analysis import exported_more_widely, exported_to, gateway_refs
from meshplane.model.delegates import delegate_lookup, resolve
from meshplane.model.gateway_credentials import credential_names
from meshplane.model.gateway_ports import GatewayPorts, gateway_ports
from meshplane.model.hosts import host_matches, specificity
from meshplane.model.mesh import MeshModel
from meshplane.model.peer_authentication import inbound_mtls
from meshplane.model.proxy import Proxy
from meshplane.model.scope import InboundMtls, InboundPort, LabelKey, ProxyView, label_key
from meshplane.model.security_policies import SecuredViews, secured_view
from meshplane.model.services import Endpoint, Service
from meshplane.model.workloads import selects

__all__ = ["merge_destination_rules", "view_for"]

DR = Object[DestinationRuleSpec]
VS = Object[VirtualServiceSpec]
ScopeId = tuple[Any, ...]
# What, besides its scope, makes one proxy's view: inbound ports, matched sourceLabels, mTLS
# modes and gateway listen ports.
ViewId = tuple[ScopeId, tuple[InboundPort, ...], frozenset[LabelKey], InboundMtls, GatewayPorts]


def view_for(mesh: MeshModel, proxy: Proxy) -> ProxyView:
    """The ProxyView of `proxy` in `mesh` (cached per model version and scope)."""
    index = _INDEXES.get(mesh)
    if index is None:
        index = _INDEXES[mesh] = _MeshIndex(mesh)
    return index.view(proxy)


_INDEXES: weakref.WeakKeyDictionary[MeshModel, _MeshIndex] = weakref.WeakKeyDictionary()


def _oldest_selecting(
    objs: Iterable[Object[Any]], labels: Mapping[str, str], selector_of: Any
) -> Object[Any] | None:
    """First (oldest: the model is sorted) object whose selector matches; None if none."""
    return next((o for o in objs if selects(selector_of(o) or {}, labels)), None)


def _digest(parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


class _MeshIndex:
    """Per-model lookups and the scope cache; dropped with its model."""

    def __init__(self, mesh: MeshModel) -> None:
        self.mesh = mesh
        self.root = mesh.mesh_config.root_namespace
        self.sidecars: dict[str, list[Object[SidecarSpec]]] = defaultdict(list)
        for sc in mesh.sidecars:
            self.sidecars[sc.namespace].append(sc)
        self.drs: dict[str, list[DR]] = defaultdict(list)
        for dr in mesh.destination_rules:
            self.drs[dr.namespace].append(dr)
        self._by_address: dict[str, list[Endpoint]] | None = None
        self._scopes: dict[ScopeId, _Scope] = {}
        self._views: dict[ViewId, ProxyView] = {}
        self._identities: dict[str, tuple[str, ...]] = {}
        self._secured: SecuredViews = {}
        self._rule_tables: dict[tuple[str, str, tuple[Any, ...]], _RuleTable] = {}
        self._delegates = delegate_lookup(mesh.virtual_services)
        self._resolved: dict[int, tuple[VS, tuple[VS, ...]]] = {}

    def resolved(self, vs: VS) -> tuple[VS, tuple[VS, ...]]:
        """`vs` with its delegate routes merged in, and the delegates used (once per model)."""
        found = self._resolved.get(id(vs))
        if found is None:
            found = self._resolved[id(vs)] = resolve(vs, self._delegates)
        return found

    def view(self, proxy: Proxy) -> ProxyView:
        router = proxy.type == "router"
        sidecar = None if router else self._sidecar_for(proxy)
        selected_drs = tuple(
            dr
            for dr in self.drs.get(proxy.namespace, ())
            if dr.spec.workload_selector and selects(dr.spec.workload_selector, proxy.labels)
        )
        gateways = tuple(
            gw for gw in self.mesh.gateways if router and selects(gw.spec.selector, proxy.labels)
        )
        scope_id: ScopeId = (
            proxy.type,
            proxy.namespace,
            proxy.interception_mode,
            sidecar.key if sidecar else None,
            tuple(dr.key for dr in selected_drs),
            tuple(gw.key for gw in gateways),
            proxy.workload_certs,
        )
        scope = self._scopes.get(scope_id)
        if scope is None:
            scope = _Scope(self, proxy, sidecar, selected_drs, gateways)
            self._scopes[scope_id] = scope
        inbound = () if router else self._inbound_for(proxy)
        matched = frozenset(s for s in scope.selectors if selects(dict(s), proxy.labels))
        mtls = InboundMtls()
        if not router:
            mesh = self.mesh
            mtls = inbound_mtls(mesh.peer_authentications, proxy.namespace, proxy.labels, self.root)
        ports = gateway_ports(proxy, self.mesh, self.by_address()) if gateways else ()
        view = self._views.get((scope_id, inbound, matched, mtls, ports))
        if view is None:
            view = scope.view(inbound, matched, mtls, ports)
            self._views[(scope_id, inbound, matched, mtls, ports)] = view
        return secured_view(view, self.mesh, proxy, self._secured)

    def disabling_peer_authentications(self) -> tuple[Object[PeerAuthenticationSpec], ...]:
        """Every PeerAuthentication if any sets DISABLE (for a workload or a port), else none:
        without one, no endpoint's policy can make auto mTLS fall back to plaintext, and
        views need not change when policies do."""
        policies = self.mesh.peer_authentications
        disabling = any(
            p.spec.mode == "DISABLE" or "DISABLE" in p.spec.port_mtls.values() for p in policies
        )
        return policies if disabling else ()

    def identities(self, hostname: str) -> tuple[str, ...]:
        """SPIFFE IDs of the service accounts of `hostname`'s endpoints (once per model)."""
        found = self._identities.get(hostname)
        if found is None:
            td = self.mesh.mesh_config.trust_domain
            found = tuple(
                sorted(
                    {
                        f"spiffe://{td}/ns/{ep.namespace}/sa/{ep.service_account}"
                        for ep in self.mesh.endpoints.get(hostname, ())
                        if ep.service_account and ep.namespace
                    }
                )
            )
            self._identities[hostname] = found
        return found

    def _sidecar_for(self, proxy: Proxy) -> Object[SidecarSpec] | None:
        """Istio's choice: a selector Sidecar in the proxy's namespace matching its labels,
        else that namespace's selector-less one, else the root namespace's (oldest wins)."""
        local = self.sidecars.get(proxy.namespace, [])
        with_selector = [s for s in local if s.spec.workload_selector]
        found = _oldest_selecting(with_selector, proxy.labels, lambda s: s.spec.workload_selector)
        if found is not None:
            return found
        for ns in (proxy.namespace, self.root):
            plain = [s for s in self.sidecars.get(ns, []) if not s.spec.workload_selector]
            if plain:
                return plain[0]
        return None

    def by_address(self) -> dict[str, list[Endpoint]]:
        if self._by_address is None:
            found: dict[str, list[Endpoint]] = defaultdict(list)
            for eps in self.mesh.endpoints.values():
                for ep in eps:
                    found[ep.address].append(ep)
            self._by_address = found
        return self._by_address

    def _inbound_for(self, proxy: Proxy) -> tuple[InboundPort, ...]:
        """Ports of the services whose endpoints are this proxy. When several workloads share
        an address (loopback on one machine), only the endpoints of the proxy's own workload
        count if any carry its name."""
        index = self.by_address()
        ips = proxy.instance_ips or (proxy.ip,)
        found = [ep for ip in dict.fromkeys(ips) for ep in index.get(ip, ())]
        own = [ep for ep in found if ep.workload and ep.workload == proxy.workload_name]
        by_port: dict[int, list[Endpoint]] = defaultdict(list)
        for ep in own or found:
            by_port[ep.port].append(ep)
        ports: list[InboundPort] = []
        for port, eps in sorted(by_port.items()):
            eps.sort(key=lambda e: (e.hostname, e.service_port))
            first = eps[0]
            svc = self.mesh.services.get(first.hostname)
            svc_port = svc.port(first.service_port) if svc else None
            hostnames = tuple(sorted({e.hostname for e in eps}))
            protocol = svc_port.protocol if svc_port else "TCP"
            ports.append(InboundPort(port, protocol, first.service_port, hostnames))
        return tuple(ports)

    def destination_rule(self, svc: Service, proxy_ns: str, selected: tuple[DR, ...]) -> DR | None:
        """Istio's lookup: proxy namespace (workload-selected rules first), then the
        service's namespace, then the root namespace; exportTo honoured outside the proxy's
        own namespace; the most specific host wins within a namespace."""
        found = self._rule_table(proxy_ns, proxy_ns, selected).lookup(svc.hostname)
        if found is not None:
            return found
        for ns in dict.fromkeys((svc.namespace, self.root)):
            if ns != proxy_ns:
                found = self._rule_table(ns, proxy_ns, ()).lookup(svc.hostname)
                if found is not None:
                    return found
        return None

    def _rule_table(self, ns: str, proxy_ns: str, selected: tuple[DR, ...]) -> _RuleTable:
        key = (ns, proxy_ns, tuple(d.key for d in selected))
        table = self._rule_tables.get(key)
        if table is None:
            # Istio's namespace-local rules are those exported to their own namespace too.
            plain = [
                d
                for d in self.drs.get(ns, ())
                if not d.spec.workload_selector and _visible(d, d.spec.export_to, proxy_ns)
            ]
            table = self._rule_tables[key] = _RuleTable([*selected, *plain])
        return table


class _RuleTable:
    """DestinationRules of one namespace as one proxy namespace sees them, by host: exact
    hosts first, then wildcards from most to least specific (ties: the older one)."""

    def __init__(self, rules: list[DR]) -> None:
        self.exact: dict[str, DR] = {}
        wildcards: list[tuple[tuple[int, int], int, DR]] = []
        for i, d in enumerate(merge_destination_rules(rules)):
            if d.spec.host.startswith("*"):
                wildcards.append((specificity(d.spec.host), i, d))
            else:
                self.exact.setdefault(d.spec.host, d)
        wildcards.sort(key=lambda t: (t[0], t[1]))
        self.wildcards = [d for _, _, d in wildcards]

    def lookup(self, host: str) -> DR | None:
        found = self.exact.get(host)
        if found is not None:
            return found
        return next((d for d in self.wildcards if host_matches(d.spec.host, host)), None)


def merge_destination_rules(rules: list[DR]) -> list[DR]:
    """Istio's mergeDestinationRule (with its enhanced merge, the default since 1.24): rules
    for the same host without a workload selector merge only when their exportTo covers the
    same namespaces; the oldest's fields win, the younger ones add subsets of new names and
    their trafficPolicy only if the oldest has none. A younger rule exported more widely
    than an older one merges into it and also stays on its own (for the namespaces only it
    reaches); any other younger rule stays on its own. Order is kept, so a lookup taking
    the first match takes the oldest. exportTo is compared by meaning ("." is the rule's
    namespace, none is "*"), not as written."""
    out: list[DR] = []
    scopes: list[frozenset[str] | None] = []  # None: a workload-selector rule, never merged
    for d in rules:
        if d.spec.workload_selector:
            out.append(d)
            scopes.append(None)
            continue
        scope = exported_to(d, d.spec.export_to)
        absorbed = False
        for i, (into, into_scope) in enumerate(zip(out, scopes, strict=True)):
            if into_scope is None or into.spec.host != d.spec.host:
                continue
            if scope == into_scope:
                absorbed = True
            elif not exported_more_widely(scope, into_scope):
                continue
            out[i] = _merged(into, d)
        if not absorbed:
            out.append(d)
            scopes.append(scope)
    return out


def _merged(into: DR, d: DR) -> DR:
    names = {s.name for s in into.spec.subsets}
    spec = dataclasses.replace(
        into.spec,
        subsets=into.spec.subsets + tuple(s for s in d.spec.subsets if s.name not in names),
        traffic_policy=into.spec.traffic_policy or d.spec.traffic_policy,
    )
    # The merged rule keeps the oldest's name (as Istio does) but its revision covers
    # both, so a change to either one changes every scope key that includes it.
    return dataclasses.replace(into, spec=spec, revision=_digest((into.revision, d.revision)))


def _visible(obj: Object[Any], export_to: tuple[str, ...], namespace: str) -> bool:
    scope = exported_to(obj, export_to)
    return "*" in scope or namespace in scope


def _service_visible(svc: Service, namespace: str) -> bool:
    export = svc.export_to
    if not export or "*" in export:
        return True
    return namespace in export or ("." in export and svc.namespace == namespace)


def _egress_hosts(sidecar: Object[SidecarSpec], proxy_ns: str) -> list[tuple[str, str]]:
    """(namespace or "*", dnsName) pairs; no egress at all means "*/*" (Istio's default).
    "." is the proxy's namespace: a root-namespace default Sidecar's "./*" imports each
    proxy's own namespace, not the root one (Istio's docs)."""
    pairs: list[tuple[str, str]] = []
    for listener in sidecar.spec.egress or ():
        for entry in listener.hosts:
            ns, _, dns = entry.rpartition("/")
            if ns == "~":
                continue
            pairs.append((proxy_ns if ns == "." else (ns or "*"), dns))
    return pairs if sidecar.spec.egress else [("*", "*")]


def _egress_allows(pairs: list[tuple[str, str]], namespace: str, host: str) -> bool:
    return any((ns in ("*", namespace)) and host_matches(dns, host) for ns, dns in pairs)


class _Scope:
    """Everything in a view except inbound ports, shared by the proxies of one scope."""

    def __init__(
        self,
        index: _MeshIndex,
        proxy: Proxy,
        sidecar: Object[SidecarSpec] | None,
        selected_drs: tuple[DR, ...],
        gateways: tuple[Object[GatewaySpec], ...],
    ) -> None:
        mesh = index.mesh
        ns = proxy.namespace
        egress = _egress_hosts(sidecar, ns) if sidecar else None
        self.proxy_type = proxy.type
        self.namespace = ns
        self.interception_mode = proxy.interception_mode
        self.sidecar = sidecar
        self.gateways = gateways
        self.mesh_config = mesh.mesh_config
        self.services = tuple(
            svc
            for svc in mesh.services.values()
            if _service_visible(svc, ns)
            and (egress is None or _egress_allows(egress, svc.namespace, svc.hostname))
        )
        rules = {s.hostname: index.destination_rule(s, ns, selected_drs) for s in self.services}
        self.destination_rules = {h: dr for h, dr in rules.items() if dr is not None}
        self.virtual_services, delegates = self._bind_virtual_services(index, ns, egress, gateways)
        self.configs = _configs_used(index, ns, self, delegates, selected_drs)
        self.selectors = _source_label_selectors(self.virtual_services)
        self.endpoints = {s.hostname: mesh.endpoints.get(s.hostname, ()) for s in self.services}
        self.workload_certs = proxy.workload_certs
        self.peer_authentications = index.disabling_peer_authentications()
        router = self.proxy_type == "router"
        self.credential_names = credential_names(mesh.credentials, ns, gateways) if router else None
        # Only proxies doing mTLS check peers' SANs; for the others endpoint churn must not
        # change the key.
        self.identities = (
            {s.hostname: ids for s in self.services if (ids := index.identities(s.hostname))}
            if self.workload_certs
            else {}
        )
        self.key = _digest(
            (
                self.proxy_type,
                ns,
                self.interception_mode,
                [(s.hostname, s.revision) for s in self.services],
                [(h, str(d.key), d.revision) for h, d in sorted(self.destination_rules.items())],
                [(str(v.key), v.revision, v.spec.hosts) for v in self.virtual_services],
                [(str(d.key), d.revision) for d in delegates],
                [(str(g.key), g.revision) for g in gateways],
                (str(sidecar.key), sidecar.revision) if sidecar else None,
                repr(self.mesh_config),
                self.workload_certs,
                sorted(self.identities.items()),
                sorted(self.credential_names or ()),
                [(str(p.key), p.revision) for p in self.peer_authentications],
            )
        )

    def _bind_virtual_services(
        self,
        index: _MeshIndex,
        ns: str,
        egress: list[tuple[str, str]] | None,
        gateways: tuple[Object[GatewaySpec], ...],
    ) -> tuple[tuple[VS, ...], list[VS]]:
        """The VirtualServices bound here, delegates merged in, and the delegates used.
        A VirtualService without hosts is a delegate: never bound on its own."""
        visible = [
            vs
            for vs in index.mesh.virtual_services
            if vs.spec.hosts and _visible(vs, vs.spec.export_to, ns)
        ]
        if self.proxy_type == "router":
            names = {f"{g.namespace}/{g.name}" for g in gateways}
            chosen = [vs for vs in visible if names.intersection(gateway_refs(vs))]
        else:
            chosen = [
                vs
                for vs in visible
                if "mesh" in gateway_refs(vs)
                and (
                    egress is None
                    or any(_egress_allows(egress, vs.namespace, h) for h in vs.spec.hosts)
                )
            ]
        resolved = [index.resolved(vs) for vs in chosen]
        delegates = [d for _, used in resolved for d in used]
        roots = [vs for vs, _ in resolved]
        bound = tuple(roots) if self.proxy_type == "router" else _oldest_wins(roots)
        return bound, delegates

    def view(
        self,
        inbound: tuple[InboundPort, ...],
        matched: frozenset[LabelKey],
        mtls: InboundMtls,
        ports: GatewayPorts = (),
    ) -> ProxyView:
        key = self.key if not inbound else _digest((self.key, inbound))
        if ports:
            key = _digest((key, ports))
        if matched:
            key = _digest((key, sorted(matched)))
        if mtls != InboundMtls():
            key = _digest((key, mtls))
        return ProxyView(
            key=key,
            proxy_type=self.proxy_type,
            namespace=self.namespace,
            interception_mode=self.interception_mode,
            services=self.services,
            destination_rules=self.destination_rules,
            virtual_services=self.virtual_services,
            gateways=self.gateways,
            sidecar=self.sidecar,
            inbound=inbound,
            mesh=self.mesh_config,
            endpoints=self.endpoints,
            source_labels=matched,
            workload_certs=self.workload_certs,
            inbound_mtls=mtls,
            service_identities=self.identities,
            credential_names=self.credential_names,
            peer_authentications=self.peer_authentications,
            gateway_ports=ports,
            configs=self.configs,
        )


def _configs_used(
    index: _MeshIndex, ns: str, scope: _Scope, delegates: list[VS], selected: tuple[DR, ...]
) -> frozenset[ConfigKey]:
    """Keys of the networking config a scope was built from (once per scope and model).
    A merged DestinationRule carries its oldest part's key, so the rules of the same host
    and namespace visible here are counted too: those are the ones merged into it."""
    keys: set[ConfigKey] = {vs.key for vs in (*scope.virtual_services, *delegates)}
    keys.update(gw.key for gw in scope.gateways)
    if scope.sidecar is not None:
        keys.add(scope.sidecar.key)
    for dr in {id(d): d for d in scope.destination_rules.values()}.values():
        keys.update(
            d.key
            for d in index.drs.get(dr.namespace, ())
            if d.spec.host == dr.spec.host
            and (d in selected or not d.spec.workload_selector)
            and _visible(d, d.spec.export_to, ns)
        )
    return frozenset(keys)


def _source_label_selectors(services: tuple[VS, ...]) -> frozenset[LabelKey]:
    """Every `sourceLabels` selector of these VirtualServices' matches (http, tcp, tls):
    which of them a proxy's labels satisfy is all a view needs of those labels."""
    found: set[LabelKey] = set()
    for vs in services:
        spec = vs.spec
        matches = [
            *(m.source_labels for r in spec.http for m in r.match),
            *(m.source_labels for r in spec.tcp for m in r.match),
            *(m.source_labels for r in spec.tls for m in r.match),
        ]
        found.update(label_key(labels) for labels in matches if labels)
    return frozenset(found)


def _oldest_wins(bound: list[VS]) -> tuple[VS, ...]:
    """On the mesh, a host routed by several VirtualServices goes to the oldest (Istio); the
    younger ones keep only their unclaimed hosts, and drop out when none is left. The input
    is already oldest first, so translators can take the view's order as is."""
    claimed: set[str] = set()
    out: list[VS] = []
    for vs in bound:
        hosts = tuple(h for h in vs.spec.hosts if h not in claimed)
        claimed.update(hosts)
        if hosts == vs.spec.hosts:
            out.append(vs)
        elif hosts:
            out.append(dataclasses.replace(vs, spec=dataclasses.replace(vs.spec, hosts=hosts)))
    return tuple(out)
