"""AuthorizationPolicy rules compiled to RBAC policies: request principals split at every
"/" (issuers contain slashes), Istio's TCP rule for HTTP-only attributes, and peer
identities (principals in the mesh's trust domain, namespace and service-account regexes)."""

from __future__ import annotations

from typing import Any

from envoy.config.rbac.v3.rbac_pb2 import Principal
from google.protobuf.json_format import MessageToDict

from meshplane.api.security.authorization_policy import Condition, Operation, Rule, Source
from meshplane.translators.filters.rbac import rule_policy
from meshplane.translators.filters.rbac_matchers import request_principal


def _claims(p: Principal) -> list[dict[str, str]]:
    """Every (claim -> string match) conjunction the principal ORs together."""
    d = MessageToDict(p, preserving_proto_field_name=True)
    options = d["or_ids"]["ids"] if "or_ids" in d else [d]
    out = []
    for option in options:
        ids = option["and_ids"]["ids"] if "and_ids" in option else [option]
        found = {}
        for i in ids:
            matcher = i["sourced_metadata"]["metadata_matcher"]
            claim = matcher["path"][1]["key"]
            found[claim] = str(matcher["value"].get("string_match", "present"))
        out.append(found)
    return out


def test_exact_request_principal_tries_every_split() -> None:
    options = _claims(request_principal("https://a.test/realm/alice"))
    assert {"iss": "{'exact': 'https://a.test/realm'}", "sub": "{'exact': 'alice'}"} in options
    assert {"iss": "{'exact': 'https://a.test'}", "sub": "{'exact': 'realm/alice'}"} in options
    assert len(options) == 4  # one per "/"


def test_issuer_wildcard_matches_any_subject_of_that_issuer() -> None:
    options = _claims(request_principal("https://a.test/*"))
    assert {"iss": "{'exact': 'https://a.test'}", "sub": "present"} in options


def test_tcp_allow_rule_with_http_fields_is_dropped_and_deny_widened() -> None:
    rule = Rule(
        sources=(Source(ip_blocks=("10.0.0.0/8",)),),
        operations=(Operation(ports=("80",), methods=("GET",)),),
    )
    assert rule_policy(rule, tcp=True, action="ALLOW") is None
    deny = rule_policy(rule, tcp=True, action="DENY")
    assert deny is not None
    assert MessageToDict(deny.permissions[0]) == {"destinationPort": 80}
    http = rule_policy(rule, tcp=False, action="ALLOW")
    assert http is not None and "andRules" in MessageToDict(http.permissions[0])


def _principal_matcher(rule: Rule, trust_domain: str = "cluster.local") -> dict[str, Any]:
    policy = rule_policy(rule, tcp=False, action="ALLOW", trust_domain=trust_domain)
    assert policy is not None
    principal = MessageToDict(policy.principals[0], preserving_proto_field_name=True)
    return dict(principal["authenticated"]["principal_name"])


def test_cluster_local_principals_stand_for_the_mesh_trust_domain() -> None:
    rule = Rule(sources=(Source(principals=("cluster.local/ns/a/sa/b",)),))
    assert _principal_matcher(rule) == {"exact": "spiffe://cluster.local/ns/a/sa/b"}
    assert _principal_matcher(rule, "corp.example") == {"exact": "spiffe://corp.example/ns/a/sa/b"}
    other = Rule(sources=(Source(principals=("other.td/ns/a/sa/b",)),))
    assert _principal_matcher(other, "corp.example") == {"exact": "spiffe://other.td/ns/a/sa/b"}
    when = Rule(when=(Condition(key="source.principal", values=("cluster.local/ns/a/sa/b",)),))
    assert _principal_matcher(when, "corp.example") == {"exact": "spiffe://corp.example/ns/a/sa/b"}


def test_principal_suffix_still_requires_a_spiffe_id() -> None:
    rule = Rule(sources=(Source(principals=("*/sa/b",)),))
    assert _principal_matcher(rule) == {"safe_regex": {"regex": "spiffe://.*/sa/b"}}


def test_namespaces_and_service_accounts_match_the_spiffe_path() -> None:
    rule = Rule(sources=(Source(namespaces=("de*",)),))
    assert _principal_matcher(rule) == {"safe_regex": {"regex": ".*/ns/de.*/.*"}}
    accounts = Rule(sources=(Source(service_accounts=("demo/web",)),))
    regex = "spiffe://.+/ns/demo/(.+/|)sa/web(/.+)?"
    assert _principal_matcher(accounts) == {"safe_regex": {"regex": regex}}
