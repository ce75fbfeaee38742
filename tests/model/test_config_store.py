"""ConfigStore: last good version in force, errors kept and cleared, duplicates, versions."""

from __future__ import annotations

import logging

import pytest
from model_inputs import down, dr, endpoint_slice, obj, pod, service, up, vs

from meshplane.api.meta import ConfigKey
from meshplane.sources.events import Origin, SourceCleared, SourceError

KEY = ConfigKey("DestinationRule", "default", "r")


def test_invalid_update_keeps_last_good_and_reports() -> None:
    from meshplane.model.store import ConfigStore

    store = ConfigStore()
    good = dr("r", "reviews", subsets=("v1",))
    assert store.apply(up(good)).configs == {KEY}
    v1 = store.mesh()
    bad = dr("r", "reviews", subsets=("v1", "v1"))
    assert store.apply(up(bad)).is_empty
    assert store.mesh() is v1  # unchanged model, same object
    assert [(e.field, e.name) for e in store.errors()] == [("spec.subsets[1].name", "r")]
    assert store.mesh().destination_rules[0].spec.subsets[0].name == "v1"
    # A later good version clears the error.
    store.apply(up(dr("r", "reviews", subsets=("v2",))))
    assert store.errors() == []
    assert store.mesh().version == v1.version + 1


def test_delete_clears_errors_and_object() -> None:
    from meshplane.model.store import ConfigStore

    store = ConfigStore()
    store.apply(up(dr("r", "reviews")))
    store.apply(up(dr("r", "reviews", trafficPolicy={"loadBalancer": {"simple": "NOPE"}})))
    assert len(store.errors()) == 1
    change = store.apply(down(dr("r", "reviews")))
    assert change.configs == {KEY}
    assert store.errors() == [] and store.objects() == []


def test_same_revision_is_a_noop() -> None:
    from meshplane.model.store import ConfigStore

    store = ConfigStore()
    store.apply(up(dr("r", "reviews")))
    version = store.version
    assert store.apply(up(dr("r", "reviews"), doc=3)).is_empty
    assert store.version == version


def test_duplicate_from_other_file_first_wins_then_takes_over() -> None:
    from meshplane.model.store import ConfigStore

    store = ConfigStore()
    store.apply(up(dr("r", "reviews"), path="a.yaml"))
    assert store.apply(up(dr("r", "ratings"), path="b.yaml")).is_empty
    errors = store.errors()
    assert [(e.origin.path, e.field) for e in errors] == [("b.yaml", "metadata.name")]
    assert "duplicate" in errors[0].reason
    assert store.mesh().destination_rules[0].spec.host.startswith("reviews.")
    # The owner's file drops it: the duplicate takes over.
    store.apply(down(dr("r", "reviews"), path="a.yaml"))
    assert store.errors() == []
    assert store.mesh().destination_rules[0].spec.host.startswith("ratings.")


def test_source_errors_until_cleared(caplog: pytest.LogCaptureFixture) -> None:
    from meshplane.model.store import ConfigStore

    store = ConfigStore()
    with caplog.at_level(logging.ERROR, logger="meshplane.config"):
        store.apply(SourceError(Origin("x.yaml", 0, 3), "not valid YAML: boom"))
        store.apply(SourceError(Origin("x.yaml", 0, 3), "not valid YAML: boom"))
    assert [str(e) for e in store.errors()] == ["x.yaml:3: error: not valid YAML: boom"]
    assert len(caplog.records) == 1  # logged once
    store.apply(SourceCleared("x.yaml"))
    assert store.errors() == []


def test_change_kinds() -> None:
    from meshplane.model.store import ConfigStore

    store = ConfigStore()
    full = store.apply(up(service("reviews", selector={"app": "reviews"})))
    host = "reviews.default.svc.cluster.local"
    assert full.service_hosts == {host} and not full.endpoints_only
    eps = store.apply(up(endpoint_slice("reviews-1", "reviews", [("10.1.0.1", "p1")])))
    assert eps.endpoints_only and eps.endpoint_hosts == {host}
    pod_change = store.apply(up(pod("p1", "10.1.0.1", {"app": "reviews", "version": "v1"})))
    assert pod_change.endpoints_only and pod_change.endpoint_hosts == {host}
    assert store.apply(up(vs("r", ["reviews"], "reviews"))).configs
    unrelated = store.apply(up(pod("other", "10.9.0.1", {"app": "x"}, ns="other")))
    assert unrelated.is_empty  # no host depends on it
    merged = eps.merge(full)
    assert merged.service_hosts == {host} and not merged.endpoints_only


def test_unsupported_and_security_kinds() -> None:
    from meshplane.model.store import ConfigStore

    store = ConfigStore()
    store.apply(up(obj("Deployment", "d", api="apps/v1", spec={})))
    store.apply(up(obj("EnvoyFilter", "f", api="networking.istio.io/v1alpha3", spec={})))
    pa = obj(
        "PeerAuthentication", "p", api="security.istio.io/v1", spec={"mtls": {"mode": "STRICT"}}
    )
    assert not store.apply(up(pa)).is_empty  # enforced: part of the model
    assert [p.spec.mode for p in store.mesh().peer_authentications] == ["STRICT"]
    assert store.errors() == []
    reasons = sorted(w.reason for w in store.warnings())
    assert len(reasons) == 1 and "not supported yet" in reasons[0]
    assert [o.kind for o in store.objects()] == ["PeerAuthentication"]
