"""Routing decided in the control plane: `sourceLabels` matches and delegate
VirtualServices.

Proxies whose labels match different `sourceLabels` selectors get different views (and
snapshots), proxies that match the same ones share one; a memo shared between such views
never hands one proxy the routes built for another; a delegate's edit changes the root's
view; and what istiod would log about delegates is reported as warnings.
"""

from __future__ import annotations

from pathlib import Path

from meshplane.model.load import load_paths
from meshplane.model.proxy import Proxy
from meshplane.model.views import view_for
from meshplane.translators import TranslationMemo, translate
from meshplane.translators.resources import Resources

GOLDEN = Path(__file__).parent.parent / "golden"


def _proxy(name: str, labels: dict[str, str], namespace: str = "default") -> Proxy:
    node = f"sidecar~10.1.0.9~{name}.{namespace}~{namespace}.svc.cluster.local"
    return Proxy.from_node(node, {"NAMESPACE": namespace, "LABELS": labels})


def _route_names(resources: Resources, vhost_prefix: str) -> list[str]:
    return [
        route.name
        for config in resources.routes.values()
        for vhost in config.virtual_hosts
        if vhost.name.startswith(vhost_prefix)
        for route in vhost.routes
    ]


def test_views_split_only_by_the_selectors_a_proxy_matches() -> None:
    mesh = load_paths([GOLDEN / "vs-source-labels" / "input.yaml"]).mesh()
    stable = view_for(mesh, _proxy("a", {"app": "sleep", "track": "stable"}))
    other = view_for(mesh, _proxy("b", {"app": "web"}))
    canary = view_for(mesh, _proxy("c", {"app": "sleep", "track": "canary"}))
    canary_too = view_for(mesh, _proxy("d", {"app": "sleep", "track": "canary", "x": "y"}))

    assert stable is other, "proxies matching no selector share one view"
    assert canary is canary_too, "proxies matching the same selectors share one view"
    assert canary.key != stable.key
    assert canary.source_labels == {(("app", "sleep"), ("track", "canary"))}
    assert stable.source_labels == frozenset()


def test_memo_never_serves_routes_built_for_other_source_labels() -> None:
    mesh = load_paths([GOLDEN / "vs-source-labels" / "input.yaml"]).mesh()
    memo = TranslationMemo()
    stable = view_for(mesh, _proxy("a", {"app": "sleep", "track": "stable"}))
    canary = view_for(mesh, _proxy("c", {"app": "sleep", "track": "canary"}))
    vhost = "echo.default.svc.cluster.local:"

    assert _route_names(translate(stable, memo), vhost) == ["stable"]
    assert _route_names(translate(canary, memo), vhost) == ["canary", "stable"]
    assert _route_names(translate(stable, memo), vhost) == ["stable"]
    assert _route_names(translate(canary), vhost) == ["canary", "stable"]


def test_delegate_edit_changes_the_root_view(tmp_path: Path) -> None:
    text = (GOLDEN / "vs-delegate" / "input.yaml").read_text()
    (tmp_path / "in.yaml").write_text(text)
    sleep = _proxy("sleep", {"app": "sleep"})
    before = view_for(load_paths([tmp_path]).mesh(), sleep)
    (tmp_path / "in.yaml").write_text(text.replace("timeout: 1s", "timeout: 7s"))
    after = view_for(load_paths([tmp_path]).mesh(), sleep)

    assert before.key != after.key
    timeouts = {
        route.route.timeout.seconds
        for config in translate(after).routes.values()
        for vhost in config.virtual_hosts
        for route in vhost.routes
        if route.name == "reviews-v2"
    }
    assert timeouts == {7}
    # The delegate itself (no hosts) is never bound on its own.
    assert all(vs.spec.hosts for vs in after.virtual_services)


def test_delegate_problems_are_warnings() -> None:
    store = load_paths([GOLDEN / "vs-delegate" / "input.yaml"])
    assert store.errors() == []
    warnings = [(w.name, w.field, w.reason) for w in store.warnings()]
    found = {(name, field) for name, field, _ in warnings}
    assert ("bookinfo", "spec.http[2].delegate") in found  # missing
    assert ("bookinfo", "spec.http[3].delegate") in found  # not exported to default
    assert ("reviews", "spec.http[1].match") in found  # conflicts with the root's match
    reasons = " ".join(reason for _, _, reason in warnings)
    assert "default/nowhere not found" in reasons
    assert "route dropped" in reasons
