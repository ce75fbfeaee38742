"""A Gateway server whose `credentialName` Secret is missing is left out (with a warning),
so it cannot keep its port's listener warming; adding the Secret brings it back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model_inputs import obj, up, vs

from meshplane.model.proxy import Proxy
from meshplane.model.store import ConfigStore
from meshplane.model.views import view_for
from meshplane.translators.gateways import gateway_listeners_and_routes

CERTS = Path(__file__).parent.parent / "fixtures" / "certs"


def gateway_proxy(ns: str = "istio-system") -> Proxy:
    node = f"router~10.0.9.9~gw.{ns}~{ns}.svc.cluster.local"
    return Proxy.from_node(node, {"LABELS": {"istio": "ingressgateway"}})


def tls_secret(name: str, ns: str = "istio-system", ca: bool = False) -> dict[str, Any]:
    data = {
        "tls.crt": (CERTS / "cert-chain.pem").read_text(),
        "tls.key": (CERTS / "key.pem").read_text(),
    }
    if ca:
        data["ca.crt"] = (CERTS / "root-cert.pem").read_text()
    return obj("Secret", name, ns, api="v1", type="kubernetes.io/tls", stringData=data)


def https(name: str, host: str, cred: str, mode: str = "SIMPLE") -> dict[str, Any]:
    return {
        "port": {"number": 443, "name": name, "protocol": "HTTPS"},
        "hosts": [host],
        "tls": {"mode": mode, "credentialName": cred},
    }


GATEWAY = obj(
    "Gateway",
    "ingress",
    "istio-system",
    {
        "selector": {"istio": "ingressgateway"},
        "servers": [
            https("https-a", "a.example.com", "a-cred"),
            https("https-b", "b.example.com", "b-cred"),
            https("https-m", "m.example.com", "a-cred", mode="MUTUAL"),
        ],
    },
)
ROUTES = vs("front", ["a.example.com", "b.example.com", "m.example.com"], "reviews")
ROUTES["spec"]["gateways"] = ["istio-system/ingress"]


def store_with(*manifests: dict[str, Any]) -> ConfigStore:
    store = ConfigStore()
    for i, m in enumerate((GATEWAY, ROUTES, *manifests)):
        store.apply(up(m, doc=i))
    return store


def served_hosts(store: ConfigStore, proxy: Proxy | None = None) -> list[str]:
    listeners, _ = gateway_listeners_and_routes(view_for(store.mesh(), proxy or gateway_proxy()))
    return sorted(
        name
        for ls in listeners
        for c in ls.filter_chains
        for name in c.filter_chain_match.server_names
    )


def test_view_carries_only_referenced_names_that_exist() -> None:
    store = store_with(tls_secret("a-cred"), tls_secret("unrelated"))
    view = view_for(store.mesh(), gateway_proxy())
    assert view.credential_names == frozenset({"a-cred"})


def test_server_with_missing_secret_is_left_out_and_others_stay() -> None:
    store = store_with(tls_secret("a-cred"))
    assert served_hosts(store) == ["a.example.com"]
    warned = {w.field: w.reason for w in store.warnings() if w.name == "ingress"}
    assert "no Secret b-cred" in warned["spec.servers[1].tls.credentialName"]
    assert "server https-b is left out" in warned["spec.servers[1].tls.credentialName"]
    assert "no CA bundle for a-cred" in warned["spec.servers[2].tls.credentialName"]


def test_adding_the_secrets_brings_the_servers_back_and_changes_the_key() -> None:
    store = store_with(tls_secret("a-cred"))
    before = view_for(store.mesh(), gateway_proxy()).key
    store.apply(up(tls_secret("b-cred"), doc=10))
    store.apply(up(tls_secret("a-cred-cacert", ca=True), doc=11))
    assert view_for(store.mesh(), gateway_proxy()).key != before
    assert served_hosts(store) == ["a.example.com", "b.example.com", "m.example.com"]
    assert not [w for w in store.warnings() if w.name == "ingress"]


def test_only_the_gateway_namespace_secrets_count() -> None:
    store = store_with(tls_secret("a-cred", ns="default"))
    assert served_hosts(store) == []


def test_sidecar_views_do_not_carry_credentials() -> None:
    store = store_with(tls_secret("a-cred"))
    node = "sidecar~10.0.0.1~sleep.default~default.svc.cluster.local"
    assert view_for(store.mesh(), Proxy.from_node(node, {})).credential_names is None
