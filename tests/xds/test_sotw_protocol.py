"""State-of-the-World ADS over real gRPC: rules of shared/reference/xds-protocol.md §1.

Each test names the rule it checks. "No response" is shown deterministically where a
later event can prove it (the next response must be the later one), and otherwise by
`silent()`, a short wait that fails the test if anything arrives.
"""

from __future__ import annotations

from xds_testkit import (
    CDS,
    EDS,
    LDS,
    RDS,
    Server,
    base_snapshot,
    cla,
    cluster,
    eventually,
    listener,
    names,
    node,
    route,
    snap,
)


async def test_rule_3_node_only_on_first_request(xds: Server) -> None:
    """Rule 3: later requests without node are served under the first request's node."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw(node("first-node"))
    c.request(CDS)
    resp = await c.recv_type(CDS)
    c.ack(resp)  # carries no node
    c.request(EDS, ["a"])  # neither
    eds = await c.recv_type(EDS)
    assert names(eds) == ["a"]
    assert [row["proxy"] for row in xds.sync.rows()] == ["first-node"]


async def test_rule_4_nonces_unique_across_types(xds: Server) -> None:
    """Rule 4: every response on a stream has its own nonce, whatever its type."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    for type_url, subscribe in ((CDS, []), (EDS, ["a"]), (LDS, []), (RDS, ["r1"])):
        c.request(type_url, subscribe)
    seen = [await c.recv() for _ in range(4)]
    nonces = [r.nonce for r in seen]
    assert all(nonces) and len(set(nonces)) == 4


async def test_rule_5_types_are_independent_substreams(xds: Server) -> None:
    """Rule 5: a NACK of CDS leaves EDS's ACK state alone (and vice versa)."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(CDS)
    c.request(EDS, ["a"])
    cds = await c.recv_type(CDS)
    eds = await c.recv_type(EDS)
    c.nack(cds, "bad cluster")
    c.ack(eds, ["a"])
    await eventually(lambda: xds.sync.rows()[0]["types"]["eds"]["status"] == "SYNCED")
    assert xds.sync.rows()[0]["types"]["cds"]["status"] == "ERROR"
    # An EDS-only change is pushed although CDS is parked on its NACK.
    xds.cache.set("default", base_snapshot().with_endpoints({"a": cla("a", 4242)}))
    assert names(await c.recv_type(EDS)) == ["a"]


async def test_rule_6_any_type_urls_match_response(xds: Server) -> None:
    """Rule 6: every Any in a response has the response's type URL."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    for type_url, subscribe in ((CDS, []), (EDS, ["a", "b"]), (LDS, []), (RDS, ["r1"])):
        c.request(type_url, subscribe)
        resp = await c.recv_type(type_url)
        assert resp.resources and all(r.type_url == type_url for r in resp.resources)


async def test_rule_7_no_duplicate_names(xds: Server) -> None:
    """Rule 7: a name appears once per response, even if requested twice."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(EDS, ["a", "a", "b"])
    resp = await c.recv_type(EDS)
    assert sorted(names(resp)) == ["a", "b"]


async def test_rule_8_version_changes_with_content_only(xds: Server) -> None:
    """Rule 8: version_info changes iff content changes; identical content is not resent."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(CDS)
    first = await c.recv_type(CDS)
    c.ack(first)
    xds.cache.set("default", base_snapshot())  # same content, new object
    xds.cache.set("default", snap(clusters=[cluster("a", timeout_s=7)]))
    second = await c.recv_type(CDS)
    assert second.version_info != first.version_info
    assert names(second) == ["a"]


async def test_rule_9_ack_records_accepted_version(xds: Server) -> None:
    """Rule 9: an ACK (latest nonce, no error_detail) sets the acked version: SYNCED."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(CDS)
    resp = await c.recv_type(CDS)
    assert xds.sync.rows()[0]["types"]["cds"]["status"] == "STALE"
    c.ack(resp)
    await eventually(lambda: xds.sync.rows()[0]["types"]["cds"]["status"] == "SYNCED")
    cds = xds.sync.rows()[0]["types"]["cds"]
    assert cds["acked"] == cds["sent"] == resp.version_info
    assert cds["status"] == "SYNCED" and cds["nonce"] == resp.nonce


async def test_rule_10_nack_is_error_detail_not_version(xds: Server) -> None:
    """Rule 10: same version, latest nonce, new names, no error_detail: not a NACK."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(EDS, ["a"])
    resp = await c.recv_type(EDS)
    # Version still the previous (empty) one, as Envoy does when its subscription grows.
    c.request(EDS, ["a", "b"], version="", nonce=resp.nonce)
    grown = await c.recv_type(EDS)
    assert names(grown) == ["b"]  # rule 22: only what the client lacks
    assert xds.metrics.total_rejects.value() == 0
    assert xds.sync.rows()[0]["types"]["eds"]["error"] is None


async def test_rule_11_nack_parks_watch_until_change(xds: Server) -> None:
    """Rule 11: after a NACK nothing is resent, not even for a republished equal snapshot."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(CDS)
    good = await c.recv_type(CDS)
    c.ack(good)
    xds.cache.set("default", snap(clusters=[cluster("bad")]))
    bad = await c.recv_type(CDS)
    c.nack(bad, "cluster bad: invalid", prev_version=good.version_info)
    assert await c.silent()
    xds.cache.set("default", snap(clusters=[cluster("bad")]))  # same content again
    assert await c.silent()
    cds = xds.sync.rows()[0]["types"]["cds"]
    assert cds["status"] == "ERROR" and cds["error"] == "cluster bad: invalid"
    assert xds.metrics.rejects_by_type["cds"].value() == 1
    xds.cache.set("default", snap(clusters=[cluster("fixed")]))
    fixed = await c.recv_type(CDS)
    assert names(fixed) == ["fixed"]
    c.ack(fixed)
    await eventually(lambda: xds.sync.rows()[0]["types"]["cds"]["status"] == "SYNCED")


async def test_rule_12_after_partial_nack_full_state_is_resent(xds: Server) -> None:
    """Rule 12: a NACK may be partial; the next CDS push carries the full state again."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(CDS)
    resp = await c.recv_type(CDS)
    c.nack(resp, "b rejected")
    xds.cache.set("default", snap(clusters=[cluster("a"), cluster("b", timeout_s=3)]))
    again = await c.recv_type(CDS)
    assert sorted(names(again)) == ["a", "b"]


async def test_rule_13_stale_nonce_is_ignored(xds: Server) -> None:
    """Rule 13: a request with an outdated nonce changes nothing and gets no answer."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(EDS, ["a"])
    resp = await c.recv_type(EDS)
    c.request(EDS, ["a", "b"], nonce="not-the-latest")
    assert await c.silent()
    assert xds.metrics.expired_nonce.value("eds") == 1
    c.request(EDS, ["a", "b"], version=resp.version_info, nonce=resp.nonce)
    grown = await c.recv_type(EDS)
    assert names(grown) == ["b"]


async def test_rule_15_ack_gets_no_response(xds: Server) -> None:
    """Rule 15: a plain ACK is not answered; the next response is the next change."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(CDS)
    first = await c.recv_type(CDS)
    c.ack(first)
    c.ack(first)  # a duplicate ACK is stale-free and still not answered
    xds.cache.set("default", snap(clusters=[cluster("z")]))
    nxt = await c.recv_type(CDS)
    assert names(nxt) == ["z"] and nxt.version_info != first.version_info


async def test_rule_16_newer_request_supersedes_older(xds: Server) -> None:
    """Rule 16: two requests before any answer: only the latest subscription is answered."""
    c = await xds.sotw()
    c.request(EDS, ["a"])
    c.request(EDS, ["b"])
    await c.silent()  # no snapshot yet (rule 34)
    xds.cache.set("default", base_snapshot())
    resp = await c.recv_type(EDS)
    assert names(resp) == ["b"]


async def test_rule_17_one_response_in_flight_updates_coalesce(xds: Server) -> None:
    """Rule 17: no second response before the ACK; three updates become one push."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(CDS)
    first = await c.recv_type(CDS)
    for i in range(3):
        xds.cache.set("default", snap(clusters=[cluster(f"c{i}")]))
    assert await c.silent()
    c.ack(first)
    latest = await c.recv_type(CDS)
    assert names(latest) == ["c2"]
    c.ack(latest)
    assert await c.silent()


async def test_rule_18_sotw_wildcard_forms(xds: Server) -> None:
    """Rule 18: [] = legacy wildcard, ["*", "a"] = wildcard, then [] = nothing."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(CDS)
    legacy = await c.recv_type(CDS)
    assert sorted(names(legacy)) == ["a", "b"]
    c.request(CDS, ["a"], version=legacy.version_info, nonce=legacy.nonce)
    only_a = await c.recv_type(CDS)
    assert names(only_a) == ["a"]
    c.request(CDS, ["*", "a"], version=only_a.version_info, nonce=only_a.nonce)
    explicit = await c.recv_type(CDS)
    assert sorted(names(explicit)) == ["a", "b"]
    # After a non-empty list, [] unsubscribes from everything: no answer, ever.
    c.request(CDS, [], version=explicit.version_info, nonce=explicit.nonce)
    xds.cache.set("default", snap(clusters=[cluster("new")]))
    assert await c.silent()


async def test_rule_20_named_types_are_never_legacy_wildcard(xds: Server) -> None:
    """Rule 20: an empty first EDS/RDS request subscribes to nothing."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(EDS)
    c.request(RDS)
    c.request(CDS)
    assert (await c.recv()).type_url == CDS
    assert await c.silent()
    assert xds.metrics.pushes.value("eds") == 0


async def test_rule_21_full_state_for_cds_and_lds(xds: Server) -> None:
    """Rule 21: unchanged resources are repeated; absence deletes; [] deletes all."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(CDS)
    c.ack(await c.recv_type(CDS))
    xds.cache.set("default", snap(clusters=[cluster("a"), cluster("b", timeout_s=9)]))
    changed = await c.recv_type(CDS)
    assert sorted(names(changed)) == ["a", "b"]
    c.ack(changed)
    xds.cache.set("default", snap(clusters=[cluster("a")]))
    removed = await c.recv_type(CDS)
    assert names(removed) == ["a"]
    c.ack(removed)
    xds.cache.set("default", snap())
    empty = await c.recv_type(CDS)
    assert names(empty) == []


async def test_rule_22_named_responses_carry_only_requested(xds: Server) -> None:
    """Rule 22: EDS/RDS answers hold the subscribed names only."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(EDS, ["b"])
    assert names(await c.recv_type(EDS)) == ["b"]


async def test_rule_23_new_names_sent_even_at_same_version(xds: Server) -> None:
    """Rule 23: added names are answered at an unchanged version; resubscribe resends."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(EDS, ["a"])
    r1 = await c.recv_type(EDS)
    c.request(EDS, ["a", "b"], version=r1.version_info, nonce=r1.nonce)
    r2 = await c.recv_type(EDS)
    assert r2.version_info == r1.version_info and names(r2) == ["b"]
    c.request(EDS, ["b"], version=r2.version_info, nonce=r2.nonce)
    assert await c.silent()  # dropping a name needs no answer
    c.request(EDS, ["a", "b"], version=r2.version_info, nonce=r2.nonce)
    r3 = await c.recv_type(EDS)
    assert names(r3) == ["a"]


async def test_rule_24_subscription_to_missing_name_is_kept(xds: Server) -> None:
    """Rule 24: a name requested before it exists is pushed once it appears."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(EDS, ["later"])
    assert await c.silent()
    xds.cache.set("default", snap(clusters=[cluster("later")], endpoints=[cla("later")]))
    assert names(await c.recv_type(EDS)) == ["later"]


async def test_rule_31_first_wildcard_answered_even_if_empty(xds: Server) -> None:
    """Rule 31: an empty CDS/LDS state is still answered, so Envoy leaves init."""
    xds.cache.set("default", snap())
    c = await xds.sotw()
    c.request(CDS)
    c.request(LDS)
    cds = await c.recv_type(CDS)
    lds = await c.recv_type(LDS)
    assert names(cds) == [] and names(lds) == [] and cds.version_info


async def test_rule_32_reconnect_with_current_version(xds: Server) -> None:
    """Rule 32: a reconnect presenting the current CDS version is not re-sent CDS; named
    EDS is re-sent anyway."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(CDS)
    c.request(EDS, ["a"])
    cds = await c.recv_type(CDS)
    eds = await c.recv_type(EDS)
    await c.close()
    again = await xds.sotw()
    again.request(CDS, version=cds.version_info)
    again.request(EDS, ["a"], version=eds.version_info)
    resent = await again.recv()
    assert resent.type_url == EDS and names(resent) == ["a"]
    again.ack(resent, ["a"])
    assert await again.silent()
    assert xds.sync.rows()[-1]["types"]["cds"]["status"] == "SYNCED"
    stale = await xds.sotw()
    stale.request(CDS, version="some-old-version")
    assert sorted(names(await stale.recv_type(CDS))) == ["a", "b"]


async def test_rule_40_unknown_names_do_not_hold_the_answer(xds: Server) -> None:
    """Rule 40: a request naming resources we lack is answered with those we have."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(EDS, ["a", "not-here"])
    assert names(await c.recv_type(EDS)) == ["a"]


async def test_rule_41_no_response_for_unwatched_type(xds: Server) -> None:
    """Rule 41: once the client unsubscribes from every EDS name, EDS is never pushed."""
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(EDS, ["a"])
    resp = await c.recv_type(EDS)
    c.request(EDS, [], version=resp.version_info, nonce=resp.nonce)
    xds.cache.set("default", base_snapshot(b_port=9))
    xds.cache.set("default", snap(endpoints=[cla("a", 1)], listeners=[listener("l", 1, "r")]))
    c.request(LDS)
    assert (await c.recv()).type_url == LDS
    assert await c.silent()


async def test_rule_22_route_subset(xds: Server) -> None:
    """Rule 22 (RDS): only the named route configurations are sent."""
    xds.cache.set(
        "default",
        snap(routes=[route("r1", "a"), route("r2", "b")], listeners=[listener("l", 1, "r1")]),
    )
    c = await xds.sotw()
    c.request(RDS, ["r2"])
    assert names(await c.recv_type(RDS)) == ["r2"]
