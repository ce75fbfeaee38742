"""AuthorizationPolicy and RequestAuthentication parsing beyond the golden bad-input case:
what is accepted, and the warnings and errors that tell the user what meshplane does."""

from __future__ import annotations

from typing import Any

import pytest

from meshplane.api.errors import InvalidObject
from meshplane.api.registry import parse
from meshplane.api.security.authorization_policy import AuthorizationPolicySpec
from meshplane.api.security.request_authentication import RequestAuthenticationSpec
from meshplane.sources.events import Origin

ORIGIN = Origin("test.yaml", 0, 1)
JWKS = '{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}'


def manifest(kind: str, spec: Any) -> dict[str, Any]:
    meta = {"name": "x", "namespace": "ns"}
    return {"apiVersion": "security.istio.io/v1", "kind": kind, "metadata": meta, "spec": spec}


def test_authorization_policy_fields_are_typed() -> None:
    spec = {
        "selector": {"matchLabels": {"app": "web"}},
        "action": "DENY",
        "rules": [
            {
                "from": [{"source": {"notNamespaces": ["a"], "remoteIpBlocks": ["1.2.3.4"]}}],
                "to": [{"operation": {"ports": ["8080"], "notMethods": ["GET"]}}],
                "when": [{"key": "request.auth.claims[iss]", "notValues": ["x"]}],
            },
            {},
        ],
    }
    obj, warnings = parse(manifest("AuthorizationPolicy", spec), ORIGIN, 1)
    assert warnings == []
    ap = obj.spec
    assert isinstance(ap, AuthorizationPolicySpec)
    assert ap.selector == {"app": "web"} and ap.action == "DENY"
    assert ap.rules[0].sources[0].not_namespaces == ("a",)
    assert ap.rules[0].operations[0].ports == ("8080",)
    assert ap.rules[0].when[0].not_values == ("x",)
    assert ap.rules[1].sources == () and ap.rules[1].operations == ()


def test_custom_keeps_its_provider_name() -> None:
    spec = {"action": "CUSTOM", "provider": {"name": "ext"}, "rules": [{}]}
    obj, warnings = parse(manifest("AuthorizationPolicy", spec), ORIGIN, 1)
    assert obj.spec.action == "CUSTOM" and obj.spec.provider == "ext"
    assert warnings == []


def test_jwks_file_uri_is_handed_to_envoy() -> None:
    spec = {"jwtRules": [{"issuer": "i", "jwksUri": "file:///etc/jwks.json"}]}
    obj, _ = parse(manifest("RequestAuthentication", spec), ORIGIN, 1)
    assert isinstance(obj.spec, RequestAuthenticationSpec)
    assert obj.spec.jwt_rules[0].jwks_file == "/etc/jwks.json"


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        ({"issuer": "i", "jwksUri": "https://x/jwks"}, "jwksUri", "cannot fetch at run time"),
        ({"issuer": "i", "jwks": "[]"}, "jwks", "JSON Web Key Set"),
        ({"jwks": JWKS}, "issuer", "required"),
    ],
)
def test_bad_jwt_rules(rule: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(InvalidObject) as exc:
        parse(manifest("RequestAuthentication", {"jwtRules": [rule]}), ORIGIN, 1)
    found = {e.field: e.reason for e in exc.value.errors}
    assert words in found[f"spec.jwtRules[0].{field}"]
