"""`envoy.filters.http.jwt_authn`: the RequestAuthentications that apply to a workload.

Istio's shape: one provider per `jwtRules` entry (``origins-I``), and one rule for every
path that accepts a token from any provider or none at all (`allow_missing`). So a request
without a token passes here (an AuthorizationPolicy asking for `requestPrincipals` then
refuses it) and a token that fails verification is rejected with 401. The verified payload
goes into dynamic metadata under `PAYLOAD_KEY`, where the RBAC filters read
``iss``/``sub`` and claims. JWKS are never fetched: inline, or a local file Envoy reads.
"""

from __future__ import annotations

from envoy.config.core.v3.base_pb2 import DataSource
from envoy.config.route.v3.route_components_pb2 import RouteMatch
from envoy.extensions.filters.http.jwt_authn.v3.config_pb2 import (
    JwtAuthentication,
    JwtClaimToHeader,
    JwtHeader,
    JwtProvider,
    JwtRequirement,
    JwtRequirementOrList,
    RequirementRule,
)
from envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2 import (  # noqa: E501
    HttpFilter,
)
from google.protobuf.empty_pb2 import Empty

from meshplane.api.security.request_authentication import JwtRule
from meshplane.model.scope import ProxyView
from meshplane.translators.protos import any_of

NAME = "envoy.filters.http.jwt_authn"
PAYLOAD_KEY = "payload"


def jwt_provider(rule: JwtRule) -> JwtProvider:
    """One `jwtRules` entry as an Envoy provider."""
    jwks = (
        DataSource(inline_string=rule.jwks)
        if rule.jwks is not None
        else DataSource(filename=rule.jwks_file or "")
    )
    return JwtProvider(
        issuer=rule.issuer,
        audiences=list(rule.audiences),
        local_jwks=jwks,
        forward=rule.forward_original_token,
        from_headers=[JwtHeader(name=h.name, value_prefix=h.prefix) for h in rule.from_headers],
        from_params=list(rule.from_params),
        from_cookies=list(rule.from_cookies),
        forward_payload_header=rule.output_payload_to_header or "",
        payload_in_metadata=PAYLOAD_KEY,
        claim_to_headers=[
            JwtClaimToHeader(header_name=c.header, claim_name=c.claim)
            for c in rule.output_claim_to_headers
        ],
    )


def jwt_authentication(rules: list[JwtRule]) -> JwtAuthentication:
    providers = {f"origins-{i}": jwt_provider(rule) for i, rule in enumerate(rules)}
    requirements = [JwtRequirement(provider_name=name) for name in providers]
    requirements.append(JwtRequirement(allow_missing=Empty()))
    rule = RequirementRule(
        match=RouteMatch(prefix="/"),
        requires=JwtRequirement(requires_any=JwtRequirementOrList(requirements=requirements)),
    )
    return JwtAuthentication(providers=providers, rules=[rule], bypass_cors_preflight=True)


def jwt_authn_filter(view: ProxyView) -> HttpFilter | None:
    """The filter for `view`'s RequestAuthentications; None when none applies."""
    rules = [r for ra in view.request_authentications for r in ra.spec.jwt_rules]
    if not rules:
        return None
    return HttpFilter(name=NAME, typed_config=any_of(jwt_authentication(rules)))
