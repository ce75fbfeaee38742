"""Snapshot, interning, versions, consistency checks and the pre-encoded wire format."""

from __future__ import annotations

import gc

import pytest
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryResponse, DiscoveryResponse
from xds_testkit import (
    CDS,
    EDS,
    base_snapshot,
    cla,
    cluster,
    listener,
    resources,
    route,
)

from meshplane.xds import encoding
from meshplane.xds.snapshot import Interner, Snapshot


def test_interner_shares_one_copy_per_content() -> None:
    """Identical resources in different snapshots share one CachedResource."""
    interner = Interner()
    one = Snapshot.from_resources(resources(clusters=[cluster("a")]), interner=interner)
    two = Snapshot.from_resources(
        resources(clusters=[cluster("a"), cluster("b")]), interner=interner
    )
    assert one.get(CDS).resources["a"] is two.get(CDS).resources["a"]
    del one, two
    gc.collect()
    assert len(interner) == 0  # weak: gone with the last snapshot


def test_resource_version_tracks_content() -> None:
    """Rule 28: a per-resource version changes iff the content changes."""
    a1 = Snapshot.from_resources(resources(clusters=[cluster("a")])).get(CDS).resources["a"]
    a2 = Snapshot.from_resources(resources(clusters=[cluster("a")])).get(CDS).resources["a"]
    a3 = (
        Snapshot.from_resources(resources(clusters=[cluster("a", timeout_s=3)]))
        .get(CDS)
        .resources["a"]
    )
    assert a1.version == a2.version != a3.version


def test_type_version_and_with_endpoints() -> None:
    """with_endpoints replaces EDS only; the other types keep their objects and versions."""
    base = base_snapshot()
    moved = base.with_endpoints({"a": cla("a", 9999), "b": cla("b", 18081)})
    assert moved.get(CDS) is base.get(CDS)
    assert moved.type_versions()["eds"] != base.type_versions()["eds"]
    assert moved.type_versions()["cds"] == base.type_versions()["cds"]
    assert moved.version != base.version


def test_consistent_flags_orphans() -> None:
    """go-control-plane's rule: EDS names are EDS clusters; RDS names are referenced."""
    assert base_snapshot().consistent() == []
    bad = Snapshot.from_resources(
        resources(
            clusters=[cluster("static", eds=False)],
            endpoints=[cla("static"), cla("nobody")],
            listeners=[listener("l", 1, "r1")],
            routes=[route("r1", "static"), route("orphan", "static")],
        )
    )
    problems = bad.consistent()
    assert "endpoints 'nobody' belong to no EDS cluster" in problems
    assert "endpoints 'static' belong to no EDS cluster" in problems
    assert "route configuration 'orphan' is referenced by no listener" in problems
    assert len(problems) == 3


def test_consistent_uses_eds_service_name() -> None:
    c = cluster("outbound|80||svc")
    c.eds_cluster_config.service_name = "svc-endpoints"
    s = Snapshot.from_resources(resources(clusters=[c], endpoints=[cla("svc-endpoints")]))
    assert s.consistent() == []
    assert s.get(CDS).resources["outbound|80||svc"].eds_name == "svc-endpoints"


def test_sotw_body_plus_nonce_decodes() -> None:
    """Rule 6: pre-encoded body + appended nonce is a valid DiscoveryResponse."""
    view = base_snapshot().get(EDS).view(frozenset({"b", "a", "missing"}))
    data = view.sotw_body() + encoding.text_field(encoding.SOTW_NONCE, "42")
    resp = DiscoveryResponse.FromString(data)
    assert resp.nonce == "42" and resp.type_url == EDS and resp.version_info == view.version
    assert len(resp.resources) == 2 and all(r.type_url == EDS for r in resp.resources)
    assert view.sotw_body() is view.sotw_body()  # built once


def test_delta_entry_decodes() -> None:
    r = base_snapshot().get(CDS).resources["a"]
    body = encoding.delta_body("v", CDS, [r.delta_entry], ["gone"])
    resp = DeltaDiscoveryResponse.FromString(body)
    assert resp.resources[0].name == "a" and resp.resources[0].version == r.version
    unpacked = Cluster()
    resp.resources[0].resource.Unpack(unpacked)
    assert unpacked == cluster("a")
    assert list(resp.removed_resources) == ["gone"] and resp.system_version_info == "v"


def test_varint_matches_protobuf() -> None:
    for n in (0, 1, 127, 128, 300, 2**21, 2**35):
        msg = DiscoveryResponse(version_info="x" * (n % 5000))
        assert encoding.text_field(1, msg.version_info) == msg.SerializeToString()
    assert encoding.varint(300) == b"\xac\x02"


def test_ttls_only_for_named_types_and_kept_by_endpoint_pushes() -> None:
    """Rule 42: TTLs for EDS/RDS/SDS only; versions ignore them; endpoint pushes keep them."""
    res = resources(clusters=[cluster("a")], endpoints=[cla("a")])
    with pytest.raises(ValueError, match="cds"):
        Snapshot.from_resources(res, ttls={CDS: 5.0})
    with pytest.raises(ValueError, match="> 0"):
        Snapshot.from_resources(res, ttls={EDS: 0.0})
    plain = Snapshot.from_resources(res)
    timed = Snapshot.from_resources(res, ttls={EDS: 5.0})
    assert timed.version == plain.version and timed.ttls() == {EDS: 5.0} and plain.ttls() == {}
    assert timed.with_endpoints({"a": cla("a", 1)}).ttls() == {EDS: 5.0}
    assert timed.with_changed_endpoints({"a": cla("a", 1)}).ttls() == {EDS: 5.0}
    assert timed.with_ttls(None).ttls() == {}
