"""PeerAuthentication parsing and precedence, and the mTLS translation choices that the
golden cases (pa-*, auto-mtls, dr-istio-mutual) do not pin one by one."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.extensions.transport_sockets.tls.v3.tls_pb2 import UpstreamTlsContext

from meshplane.model.load import load_paths
from meshplane.model.proxy import WORKLOAD_CERTS_METADATA, Proxy
from meshplane.model.store import ConfigStore
from meshplane.model.views import view_for
from meshplane.translators import translate

BASE = """
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  selector: {app: db}
  ports: [{name: tcp-db, port: 5432}, {name: http-admin, port: 8081}]
---
apiVersion: v1
kind: Pod
metadata:
  name: db-1
  namespace: shop
  labels: {app: db}
  annotations: {sidecar.istio.io/status: "{}"}
spec: {serviceAccountName: db}
status: {podIP: 10.1.0.2}
"""


def _pa(name: str, ns: str, spec: str, created: str = "") -> str:
    ts = f", creationTimestamp: '{created}'" if created else ""
    return (
        "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        f"metadata: {{name: {name}, namespace: {ns}{ts}}}\nspec: {spec}\n"
    )


def _db_proxy(certs: bool = True) -> Proxy:
    md: dict[str, object] = {"NAMESPACE": "shop", "LABELS": {"app": "db"}, "SERVICE_ACCOUNT": "db"}
    if certs:
        md[WORKLOAD_CERTS_METADATA] = True
    return Proxy.from_node("sidecar~10.1.0.2~db-1.shop~shop.svc.cluster.local", md)


def _load(tmp_path: Path, extra: str) -> ConfigStore:
    (tmp_path / "in.yaml").write_text(BASE + extra)
    return load_paths([tmp_path])


@pytest.mark.parametrize(
    ("policies", "mode", "ports"),
    [
        ("", "PERMISSIVE", ()),
        (_pa("default", "istio-system", "{mtls: {mode: STRICT}}"), "STRICT", ()),
        (
            _pa("default", "istio-system", "{mtls: {mode: STRICT}}")
            + _pa("default", "shop", "{mtls: {mode: DISABLE}}"),
            "DISABLE",
            (),
        ),
        (
            _pa("default", "istio-system", "{mtls: {mode: DISABLE}}")
            + _pa("default", "shop", "{mtls: {mode: UNSET}}"),
            "DISABLE",
            (),
        ),
        (  # workload policy: UNSET inherits the namespace's, ports override
            _pa("default", "shop", "{mtls: {mode: STRICT}}")
            + _pa(
                "db",
                "shop",
                "{selector: {matchLabels: {app: db}}, portLevelMtls: "
                "{8081: {mode: DISABLE}, '5432': {mode: UNSET}}}",
            ),
            "STRICT",
            ((5432, "STRICT"), (8081, "DISABLE")),
        ),
        (  # two workload policies: the oldest wins
            _pa(
                "new",
                "shop",
                "{selector: {matchLabels: {app: db}}, mtls: {mode: STRICT}}",
                "2024-02-01T00:00:00Z",
            )
            + _pa(
                "old",
                "shop",
                "{selector: {matchLabels: {app: db}}, mtls: {mode: DISABLE}}",
                "2024-01-01T00:00:00Z",
            ),
            "DISABLE",
            (),
        ),
        (  # a selector that does not match, and another namespace's policy: no effect
            _pa("x", "shop", "{selector: {matchLabels: {app: web}}, mtls: {mode: STRICT}}")
            + _pa("default", "other", "{mtls: {mode: STRICT}}"),
            "PERMISSIVE",
            (),
        ),
    ],
)
def test_precedence(tmp_path: Path, policies: str, mode: str, ports: tuple[object, ...]) -> None:
    store = _load(tmp_path, policies)
    assert store.errors() == []
    mtls = view_for(store.mesh(), _db_proxy()).inbound_mtls
    assert (mtls.mode, mtls.ports) == (mode, ports)


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        ("{portLevelMtls: {8081: {mode: DISABLE}}}", "spec.portLevelMtls", "requires a workload"),
        ("{mtls: {mode: MUTUAL}}", "spec.mtls.mode", "is not one of"),
        (
            "{selector: {matchLabels: {app: db}}, portLevelMtls: {0: {mode: STRICT}}}",
            "spec.portLevelMtls.0",
            "must be a number",
        ),
        ("{mtls: {mode: STRICT, extra: 1}}", "spec.mtls.extra", "unknown field"),
    ],
)
def test_bad_input(tmp_path: Path, spec: str, field: str, reason: str) -> None:
    errors = _load(tmp_path, _pa("bad", "shop", spec)).errors()
    assert [(e.field, reason in e.reason) for e in errors] == [(field, True)]


def _chains(tmp_path: Path, policies: str, certs: bool) -> dict[str, str]:
    view = view_for(_load(tmp_path, policies).mesh(), _db_proxy(certs))
    inbound = translate(view).listeners["virtualInbound"]
    return {
        c.name: c.filter_chain_match.transport_protocol
        for c in inbound.filter_chains
        if c.name != "virtualInbound-blackhole"
    }


def test_without_certificates_permissive_is_plaintext_and_strict_stays_strict(
    tmp_path: Path,
) -> None:
    assert _chains(tmp_path, "", certs=False) == {"0.0.0.0_5432": "", "0.0.0.0_8081": ""}
    strict = _chains(tmp_path, _pa("default", "shop", "{mtls: {mode: STRICT}}"), certs=False)
    assert strict == {"0.0.0.0_5432": "tls", "0.0.0.0_8081": "tls", "PassthroughFilterChain": "tls"}


@pytest.mark.parametrize(
    ("mode", "chain", "default"),
    [
        ("STRICT", "PassthroughFilterChain", False),
        ("PERMISSIVE", "PassthroughFilterChain-mtls", True),
        ("DISABLE", None, True),
    ],
)
def test_undeclared_ports_follow_the_workload_mode(
    tmp_path: Path, mode: str, chain: str | None, default: bool
) -> None:
    """Istio's inbound passthrough chains: STRICT leaves no plaintext way in, even on a port
    no service declares."""
    policy = _pa("default", "shop", f"{{mtls: {{mode: {mode}}}}}")
    view = view_for(_load(tmp_path, policy).mesh(), _db_proxy())
    inbound = translate(view).listeners["virtualInbound"]
    portless = [
        c for c in inbound.filter_chains if not c.filter_chain_match.HasField("destination_port")
    ]
    assert [c.name for c in portless] == ([chain] if chain else [])
    for c in portless:
        assert c.filter_chain_match.transport_protocol == "tls"
        assert c.transport_socket.name == "envoy.transport_sockets.tls"
    assert inbound.HasField("default_filter_chain") == default


def test_strict_http_chain_forwards_client_identity(tmp_path: Path) -> None:
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2 as hcm_pb2,
    )

    view = view_for(
        _load(tmp_path, _pa("default", "shop", "{mtls: {mode: STRICT}}")).mesh(), _db_proxy()
    )
    inbound = translate(view).listeners["virtualInbound"]
    chain = next(c for c in inbound.filter_chains if c.name == "0.0.0.0_8081")
    hcm = hcm_pb2.HttpConnectionManager()
    assert chain.filters[0].typed_config.Unpack(hcm)
    assert hcm.forward_client_cert_details == hcm.APPEND_FORWARD
    assert hcm.set_current_client_cert_details.uri
    assert chain.transport_socket.name == "envoy.transport_sockets.tls"


def test_auto_mtls_only_with_certificates(tmp_path: Path) -> None:
    store = _load(tmp_path, "")
    name = "outbound|5432||db.shop.svc.cluster.local"
    plain = translate(view_for(store.mesh(), _db_proxy(certs=False))).clusters[name]
    assert not plain.transport_socket_matches and not plain.HasField("transport_socket")
    mtls = translate(view_for(store.mesh(), _db_proxy())).clusters[name]
    assert [m.name for m in mtls.transport_socket_matches] == ["tlsMode-istio", "tlsMode-disabled"]
    context = UpstreamTlsContext()
    assert mtls.transport_socket_matches[0].transport_socket.typed_config.Unpack(context)
    assert context.sni == "outbound_.5432_._.db.shop.svc.cluster.local"
    assert list(context.common_tls_context.alpn_protocols) == ["istio-peer-exchange", "istio"]
    sans = context.common_tls_context.combined_validation_context.default_validation_context
    assert [m.matcher.exact for m in sans.match_typed_subject_alt_names] == [
        "spiffe://cluster.local/ns/shop/sa/db"
    ]


def test_proxy_cannot_claim_certificates_over_plaintext() -> None:
    # Proxy.from_node takes the flag as given; the xDS server overwrites it (ads.py).
    assert not _db_proxy(certs=False).workload_certs
    assert _db_proxy().workload_certs
