"""`envoy.filters.http.cors`: VirtualService `corsPolicy` as per-route config.

Current Envoy reads CORS policies only from `typed_per_filter_config` (the route's `cors`
field is deprecated), so the HCM carries the filter with an empty config and each route
with a `corsPolicy` carries a CorsPolicy (Istio's TranslateCORSPolicy).
"""

from __future__ import annotations

from envoy.config.core.v3.base_pb2 import RuntimeFractionalPercent
from envoy.extensions.filters.http.cors.v3.cors_pb2 import Cors, CorsPolicy
from envoy.type.v3.percent_pb2 import FractionalPercent
from google.protobuf.wrappers_pb2 import BoolValue

from meshplane.api.networking.virtual_service import CorsPolicy as CorsPolicySpec
from meshplane.translators.route_match import string_matcher

NAME = "envoy.filters.http.cors"


def hcm_config() -> Cors:
    """The filter as it sits in the HCM: inert until a route carries a policy."""
    return Cors()


def route_config(policy: CorsPolicySpec) -> CorsPolicy:
    """The per-route CorsPolicy for a VirtualService `corsPolicy`."""
    out = CorsPolicy(
        allow_methods=",".join(policy.allow_methods),
        allow_headers=",".join(policy.allow_headers),
        expose_headers=",".join(policy.expose_headers),
        filter_enabled=RuntimeFractionalPercent(
            default_value=FractionalPercent(numerator=100, denominator=FractionalPercent.HUNDRED)
        ),
    )
    for origin in policy.allow_origins:
        matcher = string_matcher(origin)
        if matcher is not None:
            out.allow_origin_string_match.append(matcher)
    if policy.max_age is not None:
        out.max_age = str(int(policy.max_age))
    if policy.allow_credentials is not None:
        out.allow_credentials.CopyFrom(BoolValue(value=policy.allow_credentials))
    if policy.unmatched_preflights == "IGNORE":
        out.forward_not_matching_preflights.CopyFrom(BoolValue(value=False))
    return out
