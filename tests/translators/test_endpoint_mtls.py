"""Auto mTLS and the destination's own PeerAuthentication: EDS keeps an endpoint's tlsMode
metadata unless its effective policy (Istio precedence, portLevelMtls) is DISABLE, and with a
shared TranslationMemo the assignment follows every input it depends on: a policy edit (a new
view key), an endpoint's labels (an endpoint-only change, same key), and nothing else."""

from __future__ import annotations

from pathlib import Path

from meshplane.api.networking.destination_rule import (
    ClientTLS,
    DestinationRuleSpec,
    PortTrafficPolicy,
    Subset,
    TrafficPolicy,
)
from meshplane.model.load import load_paths
from meshplane.model.proxy import WORKLOAD_CERTS_METADATA, Proxy
from meshplane.model.store import ConfigStore
from meshplane.model.views import view_for
from meshplane.sources.files import read_file
from meshplane.translators import TranslationMemo
from meshplane.translators.endpoint_mtls import dr_tls_mode
from meshplane.translators.endpoints import cluster_load_assignments
from meshplane.translators.mtls import TRANSPORT_SOCKET_MATCH

DB = "outbound|5432||db.shop.svc.cluster.local"

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  selector: {app: db}
  ports: [{name: tcp-db, port: 5432}]
"""


def _pod(tier: str) -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata:
  name: db-1
  namespace: shop
  labels: {{app: db, tier: {tier}, security.istio.io/tlsMode: istio}}
spec: {{serviceAccountName: db}}
status: {{podIP: 10.1.0.2, phase: Running}}
"""


def _policy(mode: str, selector: str = "") -> str:
    sel = f"\n  selector: {{matchLabels: {{{selector}}}}}" if selector else ""
    return f"""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: db, namespace: shop}}
spec:{sel}
  mtls: {{mode: {mode}}}
"""


CLIENT = Proxy.from_node(
    "sidecar~10.1.0.9~web-1.shop~shop.svc.cluster.local",
    {"NAMESPACE": "shop", "LABELS": {"app": "web"}, WORKLOAD_CERTS_METADATA: True},
)


class Mesh:
    def __init__(self, root: Path, policy: str) -> None:
        self.root = root
        for name, text in (("svc", SERVICE), ("pod", _pod("gold")), ("pa", policy)):
            (root / f"{name}.yaml").write_text(text)
        self.store: ConfigStore = load_paths([root])

    def edit(self, name: str, text: str) -> None:
        path = self.root / f"{name}.yaml"
        path.write_text(text)
        assert not self.store.apply_all(read_file(path)).is_empty

    def mtls(self, memo: TranslationMemo | None = None) -> list[bool]:
        """Per endpoint of the db cluster: does it carry tlsMode istio?"""
        view = view_for(self.store.mesh(), CLIENT)
        cla = cluster_load_assignments(view, memo)[DB]
        return [
            TRANSPORT_SOCKET_MATCH in e.metadata.filter_metadata
            for group in cla.endpoints
            for e in group.lb_endpoints
        ]

    def key(self) -> str:
        return view_for(self.store.mesh(), CLIENT).key


def test_strict_and_permissive_keep_mtls_and_disable_drops_it(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path, _policy("STRICT"))
    assert mesh.mtls() == [True]
    mesh.edit("pa", _policy("PERMISSIVE"))
    assert mesh.mtls() == [True]
    mesh.edit("pa", _policy("DISABLE"))
    assert mesh.mtls() == [False]


def test_policy_edit_changes_the_view_key_and_the_memoised_assignment(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path, _policy("DISABLE", "app: db"))
    memo = TranslationMemo()
    before = mesh.key()
    assert mesh.mtls(memo) == [False]
    mesh.edit("pa", _policy("STRICT", "app: db"))
    assert mesh.key() != before  # a full push re-translates this client's EDS
    assert mesh.mtls(memo) == [True]


def test_endpoint_labels_alone_decide_under_the_same_key(tmp_path: Path) -> None:
    """An endpoint-only change keeps the key (EDS-only push): the memo must still see it."""
    mesh = Mesh(tmp_path, _policy("DISABLE", "tier: legacy"))
    memo = TranslationMemo()
    key = mesh.key()
    assert mesh.mtls(memo) == [True]
    mesh.edit("pod", _pod("legacy"))
    assert mesh.key() == key
    assert mesh.mtls(memo) == [False]
    mesh.edit("pod", _pod("gold"))
    assert mesh.mtls(memo) == [True]


def test_policies_that_never_disable_stay_out_of_views(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path, _policy("STRICT", "app: other"))
    view = view_for(mesh.store.mesh(), CLIENT)
    assert view.peer_authentications == ()
    key = view.key
    mesh.edit("pa", _policy("PERMISSIVE", "app: other"))
    assert mesh.key() == key  # no proxy of this view changed: no re-translation


def _tls(mode: str) -> ClientTLS:
    return ClientTLS(mode=mode)


def test_destination_rule_mode_per_endpoint_follows_istio() -> None:
    rule = DestinationRuleSpec(
        host="db",
        traffic_policy=TrafficPolicy(
            tls=_tls("DISABLE"),
            port_level_settings=(PortTrafficPolicy(port=8081, tls=_tls("ISTIO_MUTUAL")),),
        ),
        subsets=(
            Subset("v1", {"version": "v1"}),
            Subset("v2", {"version": "v2"}, TrafficPolicy(tls=_tls("ISTIO_MUTUAL"))),
        ),
    )
    assert dr_tls_mode(None, 5432, {}) is None
    assert dr_tls_mode(rule, 5432, {}) == "DISABLE"
    assert dr_tls_mode(rule, 8081, {}) == "ISTIO_MUTUAL"  # port level wins
    assert dr_tls_mode(rule, 5432, {"version": "v1"}) == "DISABLE"  # subset sets none
    assert dr_tls_mode(rule, 5432, {"version": "v2"}) == "ISTIO_MUTUAL"  # subset wins
