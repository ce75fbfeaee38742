"""AuthorizationPolicy rules compiled to RBAC policies: request principals split at every
"/" (issuers contain slashes), and Istio's TCP rule for HTTP-only attributes."""

from __future__ import annotations

from envoy.config.rbac.v3.rbac_pb2 import Principal
from google.protobuf.json_format import MessageToDict

from meshplane.api.security.authorization_policy import Operation, Rule, Source
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
