"""Trust domain aliases as Istio applies them: AuthorizationPolicy principals replaced in
every trust domain of the bundle (the cases of Istio's trustdomain bundle_test.go), client
SANs expanded into every alias (spiffe.ExpandWithTrustDomains), and both reaching the RBAC
policies and the cluster TLS contexts a proxy gets."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict

from meshplane.api.security.authorization_policy import Condition, Rule, Source
from meshplane.translators.filters.rbac import rule_policy
from meshplane.translators.trust_domains import TrustDomainBundle, expand_spiffe_ids


@pytest.mark.parametrize(
    ("trust_domain", "aliases", "principals", "want"),
    [
        ("cluster.local", (), ["cluster.local/ns/foo/sa/bar"], ["cluster.local/ns/foo/sa/bar"]),
        ("cluster.local", (), ["*"], ["*"]),
        ("cluster.local", (), ["*/ns/foo/sa/bar"], ["*/ns/foo/sa/bar"]),
        ("td2", ("td1",), ["td1/ns/foo/sa/bar"], ["td2/ns/foo/sa/bar", "td1/ns/foo/sa/bar"]),
        (
            "td1",
            ("cluster.local",),
            ["cluster.local/ns/foo/sa/bar", "cluster.local/ns/yyy/sa/zzz"],
            [
                "td1/ns/foo/sa/bar",
                "cluster.local/ns/foo/sa/bar",
                "td1/ns/yyy/sa/zzz",
                "cluster.local/ns/yyy/sa/zzz",
            ],
        ),
        (
            "td1",
            ("cluster.local",),
            ["*/ns/foo/sa/bar", "*sa/zzz", "*"],
            ["*/ns/foo/sa/bar", "*sa/zzz", "*"],
        ),
        (
            "td2",
            ("td1", "cluster.local"),
            ["cluster.local/ns/foo/sa/bar", "td1/ns/yyy/sa/zzz"],
            [
                "td2/ns/foo/sa/bar",
                "td1/ns/foo/sa/bar",
                "cluster.local/ns/foo/sa/bar",
                "td2/ns/yyy/sa/zzz",
                "td1/ns/yyy/sa/zzz",
                "cluster.local/ns/yyy/sa/zzz",
            ],
        ),
        (
            "td2",
            ("foo-td1", "cluster.local"),
            ["*-td1/ns/foo/sa/bar"],
            ["td2/ns/foo/sa/bar", "*-td1/ns/foo/sa/bar", "cluster.local/ns/foo/sa/bar"],
        ),
        ("td1", ("td2",), ["some-td/ns/foo/sa/bar"], ["some-td/ns/foo/sa/bar"]),
        (
            "td1",
            ("td2", "some-td"),
            ["some-td/ns/foo/sa/bar"],
            ["td1/ns/foo/sa/bar", "td2/ns/foo/sa/bar", "some-td/ns/foo/sa/bar"],
        ),
        (
            "new-td",
            ("td2", "td3"),
            ["td1/ns/some-ns/sa/some-sa", "td2/ns/foo/sa/bar"],
            [
                "td1/ns/some-ns/sa/some-sa",
                "new-td/ns/foo/sa/bar",
                "td2/ns/foo/sa/bar",
                "td3/ns/foo/sa/bar",
            ],
        ),
        # cluster.local names the mesh even when it is not in the bundle.
        ("corp.example", (), ["cluster.local/ns/a/sa/b"], ["corp.example/ns/a/sa/b"]),
        # A prefix pattern on the trust domain is replaced by the domains it covers.
        ("td1", ("td2",), ["td*/ns/a/sa/b"], ["td1/ns/a/sa/b", "td2/ns/a/sa/b"]),
    ],
)
def test_principals_in_every_trust_domain_of_the_bundle(
    trust_domain: str, aliases: tuple[str, ...], principals: list[str], want: list[str]
) -> None:
    assert TrustDomainBundle.of(trust_domain, aliases).principals(principals) == tuple(want)


def test_client_sans_are_expanded_into_every_alias() -> None:
    ids = ["spiffe://td1/ns/def/sa/a", "spiffe://td1/ns/def/sa/b", "ledger.internal"]
    assert expand_spiffe_ids(ids, ("td2",)) == (
        "ledger.internal",  # not a SPIFFE ID: as is
        "spiffe://td1/ns/def/sa/a",
        "spiffe://td1/ns/def/sa/b",
        "spiffe://td2/ns/def/sa/a",
        "spiffe://td2/ns/def/sa/b",
    )
    assert expand_spiffe_ids(["spiffe://td1/ns/def/sa/def"], ("td1", "td2")) == (
        "spiffe://td1/ns/def/sa/def",
        "spiffe://td2/ns/def/sa/def",
    )
    # Other SPIFFE paths are not workload identities: kept, never rewritten.
    assert expand_spiffe_ids(["spiffe://td1/custom"], ("td2",)) == ("spiffe://td1/custom",)
    assert expand_spiffe_ids(["spiffe://td1/ns/a/sa/b"], ()) == ("spiffe://td1/ns/a/sa/b",)


def _principal(rule: Rule, aliases: tuple[str, ...]) -> dict[str, Any]:
    policy = rule_policy(
        rule, tcp=False, action="ALLOW", trust_domain="new.example", aliases=aliases
    )
    assert policy is not None
    return dict(MessageToDict(policy.principals[0], preserving_proto_field_name=True))


def _exact(uri: str) -> dict[str, Any]:
    return {"authenticated": {"principal_name": {"exact": uri}}}


def test_policy_principals_match_the_same_account_in_each_alias() -> None:
    rule = Rule(sources=(Source(principals=("old.example/ns/a/sa/b",)),))
    assert _principal(rule, ()) == _exact("spiffe://old.example/ns/a/sa/b")
    assert _principal(rule, ("old.example",)) == {
        "or_ids": {
            "ids": [
                _exact("spiffe://new.example/ns/a/sa/b"),
                _exact("spiffe://old.example/ns/a/sa/b"),
            ]
        }
    }


def test_not_principals_and_source_principal_conditions_are_expanded_too() -> None:
    negated = Rule(sources=(Source(not_principals=("cluster.local/ns/a/sa/b",)),))
    ids = _principal(negated, ("old.example",))["not_id"]["or_ids"]["ids"]
    assert ids == [
        _exact("spiffe://new.example/ns/a/sa/b"),
        _exact("spiffe://old.example/ns/a/sa/b"),
    ]
    when = Rule(when=(Condition(key="source.principal", values=("new.example/ns/a/sa/b",)),))
    ids = _principal(when, ("old.example",))["or_ids"]["ids"]
    assert ids == [
        _exact("spiffe://new.example/ns/a/sa/b"),
        _exact("spiffe://old.example/ns/a/sa/b"),
    ]
