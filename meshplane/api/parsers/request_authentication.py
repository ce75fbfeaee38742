"""RequestAuthentication parser with Istio's validation: an issuer per rule, non-empty
audiences, parameters and cookies, named headers, valid claim-to-header names.

JWKS: meshplane never fetches at run time, so a rule gives its keys inline (`jwks`) or as
a local file (`jwksUri: file:///path`, read by Envoy itself); an http(s) `jwksUri`, or no
keys at all (Istio would use OpenID discovery on the issuer), is an error that says so.
"""

from __future__ import annotations

import json
import re

from meshplane.api.fields import Fields
from meshplane.api.parsers.security_selector import match_labels
from meshplane.api.security.request_authentication import (
    ClaimToHeader,
    JwtHeader,
    JwtRule,
    RequestAuthenticationSpec,
)

NO_FETCH = "cannot fetch at run time here; give jwks inline (or jwksUri: file:///path)"
_HEADER_NAME = re.compile(r"^[-_A-Za-z0-9]+$")


def _not_empty(value: str) -> str:
    return "" if value else "empty value not allowed"


def _jwks_problem(text: str) -> str:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return f"jwks is not valid JSON: {exc}"
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or not keys:
        return 'jwks must be a JSON Web Key Set: an object with a non-empty "keys" list'
    if not all(isinstance(k, dict) and isinstance(k.get("kty"), str) for k in keys):
        return 'every key in jwks must be an object with a "kty"'
    return ""


def _jwks_file(f: Fields) -> str | None:
    uri = f.text("jwksUri", empty_ok=False)
    if uri is None:
        return None
    if uri.startswith(("http://", "https://")):
        f.error("jwksUri", f"{uri!r}: {NO_FETCH}")
        return None
    path = uri.removeprefix("file://")
    if not uri.startswith("file://") or not path.startswith("/"):
        f.error("jwksUri", f"{uri!r} must be file:///absolute/path (or give jwks inline)")
        return None
    return path


def _header(f: Fields) -> JwtHeader | None:
    f.keys(("name", "prefix"))
    name = f.text("name", required=True, empty_ok=False)
    prefix = f.text("prefix") or ""
    return JwtHeader(name, prefix) if name else None


def _claim_to_header(f: Fields) -> ClaimToHeader | None:
    f.keys(("header", "claim"))
    header = f.text("header", required=True, empty_ok=False)
    claim = f.text("claim", required=True, empty_ok=False)
    if header and not _HEADER_NAME.match(header):
        f.error("header", f"{header!r} is not a valid header name")
        return None
    return ClaimToHeader(header, claim) if header and claim else None


def _jwt_rule(f: Fields) -> JwtRule | None:
    f.keys(
        (
            "issuer",
            "audiences",
            "jwksUri",
            "jwks",
            "fromHeaders",
            "fromParams",
            "fromCookies",
            "outputPayloadToHeader",
            "forwardOriginalToken",
            "outputClaimToHeaders",
        ),
        ignored=("timeout",),
    )
    issuer = f.text("issuer", required=True, empty_ok=False)
    jwks = f.text("jwks", empty_ok=False)
    if jwks is not None and (reason := _jwks_problem(jwks)):
        f.error("jwks", reason)
        jwks = None
    jwks_file = None if f.has("jwks") else _jwks_file(f)
    if not f.has("jwks") and not f.has("jwksUri"):
        f.problems.error(f.path, f"set jwks or jwksUri: OpenID discovery {NO_FETCH}")
    payload_header = f.text("outputPayloadToHeader", empty_ok=False)
    if payload_header and not _HEADER_NAME.match(payload_header):
        f.error("outputPayloadToHeader", f"{payload_header!r} is not a valid header name")
    rule = JwtRule(
        issuer=issuer or "",
        audiences=f.str_list("audiences", check=_not_empty),
        jwks=jwks,
        jwks_file=jwks_file,
        from_headers=f.each("fromHeaders", _header),
        from_params=f.str_list("fromParams", check=_not_empty),
        from_cookies=f.str_list("fromCookies", check=_not_empty),
        output_payload_to_header=payload_header,
        forward_original_token=bool(f.flag("forwardOriginalToken")),
        output_claim_to_headers=f.each("outputClaimToHeaders", _claim_to_header),
    )
    return rule if issuer and (jwks or jwks_file) else None


def request_authentication(f: Fields) -> RequestAuthenticationSpec:
    f.keys(("selector", "jwtRules", "targetRef", "targetRefs"))
    selector = match_labels(f)
    return RequestAuthenticationSpec(selector=selector, jwt_rules=f.each("jwtRules", _jwt_rule))
