"""VirtualService `match` -> Envoy RouteMatch: uri, headers (including the pseudo-headers
:method, :scheme and :authority), query parameters and case sensitivity."""

from __future__ import annotations

from envoy.config.route.v3.route_components_pb2 import (
    HeaderMatcher,
    QueryParameterMatcher,
    RouteMatch,
)
from envoy.type.matcher.v3.regex_pb2 import RegexMatcher
from envoy.type.matcher.v3.string_pb2 import StringMatcher
from google.protobuf.wrappers_pb2 import BoolValue

from meshplane.api.networking.virtual_service import HTTPMatchRequest, StringMatch


def string_matcher(match: StringMatch) -> StringMatcher | None:
    """exact / prefix / regex (RE2); None for a match with no field set ("present")."""
    if match.exact is not None:
        return StringMatcher(exact=match.exact)
    if match.prefix is not None:
        return StringMatcher(prefix=match.prefix)
    if match.regex is not None:
        return StringMatcher(safe_regex=RegexMatcher(regex=match.regex))
    return None


def header_matcher(name: str, match: StringMatch, invert: bool = False) -> HeaderMatcher:
    matcher = string_matcher(match)
    result = HeaderMatcher(name=name, invert_match=invert)
    if matcher is None:
        result.present_match = True
    else:
        result.string_match.CopyFrom(matcher)
    return result


def query_parameter_matcher(name: str, match: StringMatch) -> QueryParameterMatcher:
    matcher = string_matcher(match)
    if matcher is None:
        return QueryParameterMatcher(name=name, present_match=True)
    return QueryParameterMatcher(name=name, string_match=matcher)


def _path_match(route_match: RouteMatch, uri: StringMatch | None) -> None:
    if uri is None or (uri.exact is None and uri.prefix is None and uri.regex is None):
        route_match.prefix = "/"
    elif uri.exact is not None:
        route_match.path = uri.exact
    elif uri.prefix is not None:
        route_match.prefix = uri.prefix
    else:
        route_match.safe_regex.CopyFrom(RegexMatcher(regex=uri.regex or ""))


def route_match(match: HTTPMatchRequest | None) -> RouteMatch:
    """The RouteMatch for one VirtualService match block (None: match everything)."""
    result = RouteMatch()
    _path_match(result, match.uri if match else None)
    if match is None:
        return result
    if match.ignore_uri_case:
        result.case_sensitive.CopyFrom(BoolValue(value=False))
    pseudo = {":method": match.method, ":scheme": match.scheme, ":authority": match.authority}
    for name, value in pseudo.items():
        if value is not None:
            result.headers.append(header_matcher(name, value))
    for name in sorted(match.headers):
        result.headers.append(header_matcher(name.lower(), match.headers[name]))
    for name in sorted(match.without_headers):
        result.headers.append(header_matcher(name.lower(), match.without_headers[name], True))
    for name in sorted(match.query_params):
        result.query_parameters.append(query_parameter_matcher(name, match.query_params[name]))
    return result
