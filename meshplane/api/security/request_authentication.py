"""RequestAuthentication (security.istio.io v1/v1beta1) as a typed value: which JWTs a
workload accepts. The translators compile it to Envoy's jwt_authn filter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class JwtHeader:
    """`fromHeaders[]`: where a token is read; `prefix` (e.g. "Bearer ") is stripped."""

    name: str
    prefix: str = ""


@dataclass(frozen=True)
class ClaimToHeader:
    """`outputClaimToHeaders[]`: copy a verified claim into a request header."""

    header: str
    claim: str


@dataclass(frozen=True)
class JwtRule:
    issuer: str
    audiences: tuple[str, ...] = ()
    jwks: str | None = None  # inline JWKS JSON
    jwks_file: str | None = None  # from `jwksUri: file:///path`: Envoy reads the file
    from_headers: tuple[JwtHeader, ...] = ()
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()
    output_payload_to_header: str | None = None
    forward_original_token: bool = False
    output_claim_to_headers: tuple[ClaimToHeader, ...] = ()


@dataclass(frozen=True)
class RequestAuthenticationSpec:
    selector: Mapping[str, str] | None = None  # None: every workload of the namespace
    jwt_rules: tuple[JwtRule, ...] = ()
