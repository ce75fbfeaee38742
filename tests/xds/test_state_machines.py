"""The SotW and Delta state machines as plain classes, without gRPC."""

from __future__ import annotations

from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest, DiscoveryRequest
from google.rpc.status_pb2 import Status
from xds_testkit import CDS, EDS, base_snapshot, cluster, snap

from meshplane.xds.delta import DeltaSession
from meshplane.xds.progress import RequestKind
from meshplane.xds.sotw import SotwSession


def test_rule_11_sotw_state_parks_after_nack() -> None:
    """Rule 11: the NACK's old version_info does not make the state resend."""
    s = SotwSession()
    s.handle(DiscoveryRequest(type_url=CDS))
    snapshot = base_snapshot()
    out = s.next_response(snapshot.get(CDS))
    assert out is not None
    nack = DiscoveryRequest(type_url=CDS, response_nonce=out.nonce, version_info="")
    nack.error_detail.CopyFrom(Status(message="no"))
    assert s.handle(nack).kind is RequestKind.NACK
    assert s.next_response(snapshot.get(CDS)) is None
    assert s.next_response(snap(clusters=[cluster("z")]).get(CDS)) is not None


def test_rule_13_sotw_stale_nonce_changes_nothing() -> None:
    s = SotwSession()
    s.handle(DiscoveryRequest(type_url=EDS, resource_names=["a"]))
    assert s.next_response(base_snapshot().get(EDS)) is not None
    stale = DiscoveryRequest(type_url=EDS, resource_names=["b"], response_nonce="0")
    assert s.handle(stale).kind is RequestKind.STALE
    assert s.states[EDS].names == {"a"}


def test_rule_17_pending_blocks_until_reply() -> None:
    s = SotwSession()
    s.handle(DiscoveryRequest(type_url=CDS))
    first = s.next_response(base_snapshot().get(CDS))
    assert first is not None
    changed = snap(clusters=[cluster("q")]).get(CDS)
    assert s.next_response(changed) is None
    s.handle(DiscoveryRequest(type_url=CDS, response_nonce=first.nonce, version_info="x"))
    assert s.next_response(changed) is not None


def test_rule_4_nonces_shared_counter_across_types() -> None:
    s = DeltaSession()
    s.handle(DeltaDiscoveryRequest(type_url=CDS))
    s.handle(DeltaDiscoveryRequest(type_url=EDS, resource_names_subscribe=["a"]))
    snapshot = base_snapshot()
    one = s.next_response(snapshot.get(CDS))
    two = s.next_response(snapshot.get(EDS))
    assert one is not None and two is not None and one.nonce != two.nonce


def test_rule_27_delta_unsubscribe_forgets_without_answer() -> None:
    s = DeltaSession()
    s.handle(DeltaDiscoveryRequest(type_url=EDS, resource_names_subscribe=["a", "b"]))
    snapshot = base_snapshot()
    out = s.next_response(snapshot.get(EDS))
    assert out is not None
    s.handle(
        DeltaDiscoveryRequest(
            type_url=EDS, response_nonce=out.nonce, resource_names_unsubscribe=["a"]
        )
    )
    assert s.next_response(snapshot.get(EDS)) is None
    assert set(s.states[EDS].held) == {"b"}


def test_rule_36_delta_cds_push_forces_its_endpoints() -> None:
    s = DeltaSession()
    s.handle(DeltaDiscoveryRequest(type_url=CDS))
    s.handle(DeltaDiscoveryRequest(type_url=EDS, resource_names_subscribe=["a", "b"]))
    snapshot = base_snapshot()
    cds = s.next_response(snapshot.get(CDS))
    eds = s.next_response(snapshot.get(EDS))
    assert cds is not None and eds is not None
    s.handle(DeltaDiscoveryRequest(type_url=EDS, response_nonce=eds.nonce))
    assert s.next_response(snapshot.get(EDS)) is None
    changed = snap(clusters=[cluster("a", timeout_s=9)])
    s.handle(DeltaDiscoveryRequest(type_url=CDS, response_nonce=cds.nonce))
    pushed = s.next_response(changed.get(CDS))
    assert pushed is not None
    s.clusters_sent(pushed)
    again = s.next_response(snapshot.get(EDS))
    assert again is not None and [r.name for r in again.resources] == ["a"]
