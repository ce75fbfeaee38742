"""Encoding once: a message object interned before is not serialized again, and an
endpoint-only update replaces just the assignments it names."""

from __future__ import annotations

import gc

from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryResponse
from xds_testkit import CDS, EDS, LDS, cla, cluster, listener, resources, route

from meshplane.xds.snapshot import Interner, Snapshot


def test_the_same_object_is_encoded_once_across_snapshots() -> None:
    interner = Interner()
    a, b = cluster("a"), cluster("b")
    one = Snapshot.from_resources(resources(clusters=[a, b]), interner=interner)
    assert interner.encoded == 2
    two = Snapshot.from_resources(resources(clusters=[a, cluster("c")]), interner=interner)
    assert interner.encoded == 3  # only c is new
    assert two.get(CDS).resources["a"] is one.get(CDS).resources["a"]


def test_an_equal_but_distinct_object_is_encoded_and_shared_by_content() -> None:
    interner = Interner()
    first = Snapshot.from_resources(resources(clusters=[cluster("a")]), interner=interner)
    again = Snapshot.from_resources(resources(clusters=[cluster("a")]), interner=interner)
    assert interner.encoded == 2
    assert again.get(CDS).resources["a"] is first.get(CDS).resources["a"]


def test_identity_entries_go_with_their_snapshots() -> None:
    """Once no snapshot holds a resource, a new object at a reused address is encoded."""
    interner = Interner()
    Snapshot.from_resources(resources(clusters=[cluster("a")]), interner=interner)
    gc.collect()
    assert len(interner) == 0
    fresh = cluster("a", timeout_s=7)
    made = Snapshot.from_resources(resources(clusters=[fresh]), interner=interner)
    assert made.get(CDS).resources["a"].message is fresh
    assert interner.encoded == 2


def test_with_changed_endpoints_replaces_only_the_named_assignments() -> None:
    interner = Interner()
    base = Snapshot.from_resources(
        resources(
            clusters=[cluster("a"), cluster("b")],
            endpoints=[cla("a"), cla("b")],
            listeners=[listener("l1", 15001, "r1")],
            routes=[route("r1", "a")],
        ),
        interner=interner,
    )
    moved = base.with_changed_endpoints({"b": cla("b", 9999)}, interner=interner)
    assert moved.get(EDS).resources["a"] is base.get(EDS).resources["a"]
    assert moved.get(EDS).resources["b"] is not base.get(EDS).resources["b"]
    assert moved.get(EDS).version != base.get(EDS).version
    for other in (CDS, LDS):
        assert moved.get(other) is base.get(other)
    body = DiscoveryResponse.FromString(moved.get(EDS).view(None).sotw_body())
    ports = {}
    for packed in body.resources:
        assignment = ClusterLoadAssignment()
        packed.Unpack(assignment)
        ports[assignment.cluster_name] = (
            assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value
        )
    assert ports == {"a": 18080, "b": 9999}
    assert base.with_changed_endpoints({}) is base
    assert moved.consistent() == []
