"""Delta (incremental) ADS over real gRPC: rules of shared/reference/xds-protocol.md §1."""

from __future__ import annotations

from xds_testkit import (
    CDS,
    EDS,
    LDS,
    Server,
    base_snapshot,
    cla,
    cluster,
    eventually,
    node,
    snap,
)


def versions(resp: object) -> dict[str, str]:
    return {r.name: r.version for r in resp.resources}  # type: ignore[attr-defined]


async def test_rule_3_delta_node_only_on_first_request(xds: Server) -> None:
    """Rule 3 (Delta): requests after the first need no node."""
    xds.cache.set("default", base_snapshot())
    d = await xds.delta(node("delta-node"))
    d.request(CDS)
    d.ack(await d.recv_type(CDS))
    d.request(EDS, ["a"])
    assert list(versions(await d.recv_type(EDS))) == ["a"]
    assert xds.sync.rows()[0]["proxy"] == "delta-node"


async def test_rule_4_delta_nonces_unique(xds: Server) -> None:
    """Rule 4 (Delta): every response carries a nonce, unique on the stream."""
    xds.cache.set("default", base_snapshot())
    d = await xds.delta()
    d.request(CDS)
    d.request(EDS, ["a", "b"])
    d.request(LDS)
    got = [await d.recv() for _ in range(3)]
    assert all(r.nonce for r in got) and len({r.nonce for r in got}) == 3


async def test_rule_6_delta_any_type_urls_match(xds: Server) -> None:
    """Rule 6 (Delta): each Resource's Any has the response type URL."""
    xds.cache.set("default", base_snapshot())
    d = await xds.delta()
    d.request(EDS, ["a", "b"])
    resp = await d.recv_type(EDS)
    assert all(r.resource.type_url == EDS for r in resp.resources)


async def test_rule_7_delta_name_never_both_sent_and_removed(xds: Server) -> None:
    """Rule 7 (Delta): no duplicates, and no name in resources and removed_resources."""
    xds.cache.set("default", base_snapshot())
    d = await xds.delta()
    d.request(EDS, ["a", "a", "zz"])
    resp = await d.recv_type(EDS)
    assert [r.name for r in resp.resources] == ["a"]
    assert list(resp.removed_resources) == ["zz"]
    d.ack(resp)
    xds.cache.set("default", snap(endpoints=[cla("zz")]))
    swap = await d.recv_type(EDS)
    assert [r.name for r in swap.resources] == ["zz"] and list(swap.removed_resources) == ["a"]


async def test_rule_10_delta_nack_detected_by_error_detail(xds: Server) -> None:
    """Rules 10 and 11 (Delta): error_detail = NACK, shown in sync status; parked."""
    xds.cache.set("default", base_snapshot())
    d = await xds.delta()
    d.request(CDS)
    resp = await d.recv_type(CDS)
    d.nack(resp, "cluster b: bad")
    await eventually(lambda: xds.sync.rows()[0]["types"]["cds"]["status"] == "ERROR")
    assert xds.sync.rows()[0]["types"]["cds"]["error"] == "cluster b: bad"
    assert await d.silent()


async def test_rule_11_delta_nack_parks_until_change(xds: Server) -> None:
    """Rule 11 (Delta): the rejected version is not resent; a later change is."""
    xds.cache.set("default", base_snapshot())
    d = await xds.delta()
    d.request(CDS)
    resp = await d.recv_type(CDS)
    d.nack(resp, "nope")
    xds.cache.set("default", base_snapshot())
    assert await d.silent()
    xds.cache.set("default", snap(clusters=[cluster("a"), cluster("b", timeout_s=4)]))
    again = await d.recv_type(CDS)
    assert list(versions(again)) == ["b"]


async def test_rule_12_delta_partial_nack_sends_only_changes(xds: Server) -> None:
    """Rule 12 (Delta): after a NACK, valid resources count as applied: only changes go."""
    xds.cache.set("default", base_snapshot())
    d = await xds.delta()
    d.request(CDS)
    d.nack(await d.recv_type(CDS), "b rejected")
    xds.cache.set("default", snap(clusters=[cluster("a"), cluster("b", timeout_s=2)]))
    assert list(versions(await d.recv_type(CDS))) == ["b"]


async def test_rule_14_stale_nonce_still_updates_subscriptions(xds: Server) -> None:
    """Rule 14: a Delta request with an old nonce still subscribes."""
    xds.cache.set("default", base_snapshot())
    d = await xds.delta()
    d.request(EDS, ["a"])
    resp = await d.recv_type(EDS)
    d.ack(resp)
    d.request(EDS, ["b"], nonce="old-nonce")
    assert list(versions(await d.recv_type(EDS))) == ["b"]
    assert xds.metrics.expired_nonce.value("eds") == 1


async def test_rule_15_delta_ack_gets_no_response(xds: Server) -> None:
    """Rule 15 (Delta): an ACK is not answered; the next response is the next change."""
    xds.cache.set("default", base_snapshot())
    d = await xds.delta()
    d.request(CDS)
    d.ack(await d.recv_type(CDS))
    xds.cache.set("default", snap(clusters=[cluster("a"), cluster("b"), cluster("c")]))
    nxt = await d.recv_type(CDS)
    assert list(versions(nxt)) == ["c"]


async def test_rule_16_delta_newer_request_supersedes(xds: Server) -> None:
    """Rule 16 (Delta): subscribe a then unsubscribe a before config exists: a is not sent."""
    d = await xds.delta()
    d.request(EDS, ["a"])
    d.request(EDS, ["b"], ["a"])
    assert await d.silent()
    xds.cache.set("default", base_snapshot())
    resp = await d.recv_type(EDS)
    assert list(versions(resp)) == ["b"] and list(resp.removed_resources) == []


async def test_rule_17_delta_one_in_flight_and_coalesced(xds: Server) -> None:
    """Rule 17 (Delta): no push before the ACK; several updates become one."""
    xds.cache.set("default", base_snapshot())
    d = await xds.delta()
    d.request(CDS)
    first = await d.recv_type(CDS)
    xds.cache.set("default", snap(clusters=[cluster("a"), cluster("x")]))
    xds.cache.set("default", snap(clusters=[cluster("a"), cluster("y")]))
    assert await d.silent()
    d.ack(first)
    latest = await d.recv_type(CDS)
    assert list(versions(latest)) == ["y"] and list(latest.removed_resources) == ["b"]


async def test_rule_19_delta_wildcard_forms(xds: Server) -> None:
    """Rule 19: legacy empty first request, explicit "*", and unsubscribing "*"."""
    xds.cache.set("default", base_snapshot())
    legacy = await xds.delta()
    legacy.request(CDS)
    assert sorted(versions(await legacy.recv_type(CDS))) == ["a", "b"]
    explicit = await xds.delta(node("explicit"))
    explicit.request(CDS, ["*", "a"])
    resp = await explicit.recv_type(CDS)
    assert sorted(versions(resp)) == ["a", "b"]
    explicit.request(CDS, [], ["*"], nonce=resp.nonce)
    assert await explicit.silent()
    xds.cache.set("default", snap(clusters=[cluster("a", timeout_s=5), cluster("b", timeout_s=5)]))
    kept = await explicit.recv_type(CDS)
    assert list(versions(kept)) == ["a"]  # explicit names survive the wildcard's end


async def test_rule_20_delta_eds_empty_first_request_is_not_wildcard(xds: Server) -> None:
    """Rule 20 (Delta): an empty first EDS request subscribes to nothing."""
    xds.cache.set("default", base_snapshot())
    d = await xds.delta()
    d.request(EDS)
    assert await d.silent()


async def test_rule_24_delta_missing_name_pushed_when_created(xds: Server) -> None:
    """Rules 24 and 25: absent name -> removed_resources now, resource once it exists."""
    xds.cache.set("default", base_snapshot())
    d = await xds.delta()
    d.request(EDS, ["later"])
    first = await d.recv_type(EDS)
    assert list(first.removed_resources) == ["later"] and not first.resources
    d.ack(first)
    assert await d.silent()
    xds.cache.set("default", snap(endpoints=[cla("later")]))
    assert list(versions(await d.recv_type(EDS))) == ["later"]


async def test_rule_25_subscribed_but_absent_in_removed_resources(xds: Server) -> None:
    """Rule 25: a subscribed name that does not exist is answered in removed_resources."""
    xds.cache.set("default", base_snapshot())
    d = await xds.delta()
    d.request(EDS, ["a", "ghost"])
    resp = await d.recv_type(EDS)
    assert list(versions(resp)) == ["a"] and list(resp.removed_resources) == ["ghost"]


async def test_rule_26_every_subscribed_name_is_answered(xds: Server) -> None:
    """Rule 26: subscribing again to a name the client holds resends it."""
    xds.cache.set("default", base_snapshot())
    d = await xds.delta()
    d.request(EDS, ["a"])
    resp = await d.recv_type(EDS)
    d.ack(resp)
    d.request(EDS, ["a"], nonce=resp.nonce)
    again = await d.recv_type(EDS)
    assert versions(again) == versions(resp)


async def test_rule_27_unsubscribe_needs_no_answer_except_under_wildcard(xds: Server) -> None:
    """Rule 27: unsubscribe is silent; with "*" plus explicit X, dropping X is answered."""
    xds.cache.set("default", base_snapshot())
    d = await xds.delta()
    d.request(EDS, ["a", "b"])
    resp = await d.recv_type(EDS)
    d.request(EDS, [], ["b", "never-subscribed"], nonce=resp.nonce)
    assert await d.silent()
    w = await xds.delta(node("wild"))
    w.request(CDS, ["*", "a"])
    first = await w.recv_type(CDS)
    w.request(CDS, [], ["a"], nonce=first.nonce)
    answer = await w.recv_type(CDS)
    assert list(versions(answer)) == ["a"]  # still in the wildcard set


async def test_rule_28_only_changes_with_per_resource_versions(xds: Server) -> None:
    """Rule 28: responses carry changed resources only; versions track content."""
    xds.cache.set("default", base_snapshot())
    d = await xds.delta()
    d.request(EDS, ["a", "b"])
    first = await d.recv_type(EDS)
    d.ack(first)
    xds.cache.set("default", base_snapshot(b_port=7777))
    second = await d.recv_type(EDS)
    assert list(versions(second)) == ["b"]
    assert versions(second)["b"] != versions(first)["b"]
    d.ack(second)
    xds.cache.set("default", snap(endpoints=[cla("b", 7777)]))
    third = await d.recv_type(EDS)
    assert not third.resources and list(third.removed_resources) == ["a"]


async def test_rule_29_reconnect_with_initial_resource_versions(xds: Server) -> None:
    """Rule 29: unchanged held resources are skipped, changed sent, gone ones removed;
    named (EDS) subscriptions are resent on reconnect (envoy#22418)."""
    xds.cache.set("default", base_snapshot())
    d = await xds.delta()
    d.request(CDS)
    d.request(EDS, ["a"])
    cds = await d.recv_type(CDS)
    eds = await d.recv_type(EDS)
    await d.close()
    held = versions(cds)
    held["gone"] = "v0"
    held["b"] = "outdated"
    again = await xds.delta()
    again.request(CDS, initial=held)
    again.request(EDS, ["a"], initial=versions(eds))
    cds2 = await again.recv_type(CDS)
    assert list(versions(cds2)) == ["b"] and list(cds2.removed_resources) == ["gone"]
    assert list(versions(await again.recv_type(EDS))) == ["a"]


async def test_rule_30_system_version_info_is_set(xds: Server) -> None:
    """Rule 30: system_version_info carries the per-type version."""
    s = base_snapshot()
    xds.cache.set("default", s)
    d = await xds.delta()
    d.request(CDS)
    resp = await d.recv_type(CDS)
    assert resp.system_version_info == s.type_versions()["cds"]
    d.ack(resp)
    await eventually(lambda: xds.sync.rows()[0]["types"]["cds"]["status"] == "SYNCED")
    assert xds.sync.rows()[0]["types"]["cds"]["acked"] == resp.system_version_info


async def test_rule_31_delta_first_wildcard_answered_when_empty(xds: Server) -> None:
    """Rule 31 (Delta): an empty wildcard state is still answered."""
    xds.cache.set("default", snap())
    d = await xds.delta()
    d.request(LDS)
    resp = await d.recv_type(LDS)
    assert not resp.resources and resp.nonce


async def test_rule_40_delta_unknown_names_do_not_hold_the_answer(xds: Server) -> None:
    """Rule 40 (Delta): known names are answered at once alongside unknown ones."""
    xds.cache.set("default", base_snapshot())
    d = await xds.delta()
    d.request(EDS, ["b", "unknown"])
    resp = await d.recv_type(EDS)
    assert list(versions(resp)) == ["b"]
