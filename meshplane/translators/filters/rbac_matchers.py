"""Istio's AuthorizationPolicy attributes as Envoy RBAC principals and permissions (the
generators of istio pilot/pkg/security/authz/model), one builder per attribute.

Value patterns follow Istio: ``*`` is "present", ``abc*`` a prefix, ``*abc`` a suffix,
anything else exact. Principals are matched against the peer certificate's SPIFFE URI SAN
(``spiffe://`` + value; rbac.py has already put it in each of the mesh's trust domains);
namespaces and service accounts by a regex on that SAN. Request principals
(``iss/sub``) and claims are matched against the payload that jwt_authn stores in dynamic
metadata (`jwt_authn.PAYLOAD_KEY`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from envoy.config.core.v3.address_pb2 import CidrRange
from envoy.config.rbac.v3.rbac_pb2 import Permission, Principal, SourcedMetadata
from envoy.config.route.v3.route_components_pb2 import HeaderMatcher
from envoy.type.matcher.v3.metadata_pb2 import MetadataMatcher
from envoy.type.matcher.v3.path_pb2 import PathMatcher
from envoy.type.matcher.v3.regex_pb2 import RegexMatcher
from envoy.type.matcher.v3.string_pb2 import StringMatcher
from envoy.type.matcher.v3.value_pb2 import ListMatcher, ValueMatcher

from meshplane.translators.filters.jwt_authn import NAME as JWT_AUTHN
from meshplane.translators.filters.jwt_authn import PAYLOAD_KEY
from meshplane.translators.protos import u32

SPIFFE = "spiffe://"


def string_matcher(value: str, prefix: str = "", ignore_case: bool = False) -> StringMatcher:
    """Istio's StringMatcherWithPrefix: `*` any non-empty, `a*` prefix, `*a` suffix (after
    `prefix`, so ``*/sa/x`` on a principal still requires ``spiffe://``)."""
    if value == "*":
        return StringMatcher(safe_regex=RegexMatcher(regex=".+"))
    if value.startswith("*") and prefix:
        regex = f"{re.escape(prefix)}.*{re.escape(value[1:])}"
        return StringMatcher(safe_regex=RegexMatcher(regex=regex))
    if value.endswith("*"):
        return StringMatcher(prefix=prefix + value[:-1], ignore_case=ignore_case)
    if value.startswith("*"):
        return StringMatcher(suffix=value[1:], ignore_case=ignore_case)
    return StringMatcher(exact=prefix + value, ignore_case=ignore_case)


def _glob_regex(value: str) -> str:
    return ".*".join(re.escape(part) for part in value.split("*"))


def _authenticated(matcher: StringMatcher) -> Principal:
    return Principal(authenticated=Principal.Authenticated(principal_name=matcher))


def _cidr(value: str) -> CidrRange:
    address, _, length = value.partition("/")
    if not length:
        length = "128" if ":" in address else "32"
    return CidrRange(address_prefix=address, prefix_len=u32(int(length)))


def _payload(path: Sequence[str], value: ValueMatcher) -> Principal:
    segments = [MetadataMatcher.PathSegment(key=k) for k in (PAYLOAD_KEY, *path)]
    matcher = MetadataMatcher(filter=JWT_AUTHN, path=segments, value=value)
    # `sourced_metadata` (dynamic metadata by default): the plain `metadata` is deprecated.
    return Principal(sourced_metadata=SourcedMetadata(metadata_matcher=matcher))


def _any_id(ids: Sequence[Principal]) -> Principal:
    return ids[0] if len(ids) == 1 else Principal(or_ids=Principal.Set(ids=list(ids)))


def _all_ids(ids: Sequence[Principal]) -> Principal:
    return ids[0] if len(ids) == 1 else Principal(and_ids=Principal.Set(ids=list(ids)))


def _claim_string(path: Sequence[str], matcher: StringMatcher) -> Principal:
    return _payload(path, ValueMatcher(string_match=matcher))


def principal_name(value: str) -> Principal:
    return _authenticated(string_matcher(value, SPIFFE))


def namespace(value: str) -> Principal:
    return _authenticated(
        StringMatcher(safe_regex=RegexMatcher(regex=f".*/ns/{_glob_regex(value)}/.*"))
    )


def service_account(value: str) -> Principal:
    ns, _, sa = value.partition("/")
    regex = f"spiffe://.+/ns/{re.escape(ns)}/(.+/|)sa/{re.escape(sa)}(/.+)?"
    return _authenticated(StringMatcher(safe_regex=RegexMatcher(regex=regex)))


def direct_remote_ip(value: str) -> Principal:
    return Principal(direct_remote_ip=_cidr(value))


def remote_ip(value: str) -> Principal:
    return Principal(remote_ip=_cidr(value))


def request_principal(value: str) -> Principal:
    """``iss/sub`` against the verified payload. The issuer may contain "/", so each split
    of the pattern at a "/" is tried: exactly the tokens whose ``iss + "/" + sub`` match."""
    if value == "*":
        return _payload(("iss",), ValueMatcher(present_match=True))
    splits = [m.start() for m in re.finditer("/", value)]
    options: list[Principal] = []
    if value.endswith("*"):  # "iss-prefix..." or "iss/sub-prefix*"
        pattern = value[:-1]
        options.append(_all_ids([_claim_string(("iss",), StringMatcher(prefix=pattern))]))
        for at in splits:
            iss, sub = pattern[:at], pattern[at + 1 :]
            sub_match = StringMatcher(prefix=sub) if sub else None
            options.append(_iss_sub(iss, sub_match))
    elif value.startswith("*"):  # "*sub-suffix" or "*iss-suffix/sub"
        pattern = value[1:]
        options.append(_claim_string(("sub",), StringMatcher(suffix=pattern)))
        for at in splits:
            iss, sub = pattern[: at - 1], pattern[at:]
            iss_ok = _claim_string(("iss",), StringMatcher(suffix=iss)) if iss else None
            sub_ok = _claim_string(("sub",), StringMatcher(exact=sub))
            options.append(_all_ids([p for p in (iss_ok, sub_ok) if p is not None]))
    else:
        for at in splits:
            sub_exact = StringMatcher(exact=value[at + 1 :])
            options.append(_iss_sub(value[:at], sub_exact))
    if not options:  # no "/" in an exact value: no token can have that principal
        return Principal(not_id=Principal(any=True))
    return _any_id(options)


def _iss_sub(iss: str, sub: StringMatcher | None) -> Principal:
    ids = [_claim_string(("iss",), StringMatcher(exact=iss))]
    ids.append(
        _claim_string(("sub",), sub)
        if sub is not None
        else _payload(("sub",), ValueMatcher(present_match=True))
    )
    return _all_ids(ids)


def claim(path: Sequence[str]) -> Callable[[str], Principal]:
    """A claim (string or list of strings) at `path` in the payload has this value."""

    def build(value: str) -> Principal:
        if value == "*":
            return _payload(path, ValueMatcher(present_match=True))
        matcher = string_matcher(value)
        listed = ValueMatcher(list_match=ListMatcher(one_of=ValueMatcher(string_match=matcher)))
        return _any_id([_claim_string(path, matcher), _payload(path, listed)])

    return build


def request_header(name: str) -> Callable[[str], Principal]:
    def build(value: str) -> Principal:
        if value == "*":
            return Principal(header=HeaderMatcher(name=name, present_match=True))
        return Principal(header=HeaderMatcher(name=name, string_match=string_matcher(value)))

    return build


# --- permission side ---


def _header_permission(name: str, matcher: StringMatcher) -> Permission:
    return Permission(header=HeaderMatcher(name=name, string_match=matcher))


def host(value: str) -> Permission:
    return _header_permission(":authority", string_matcher(value, ignore_case=True))


def method(value: str) -> Permission:
    return _header_permission(":method", string_matcher(value))


def path(value: str) -> Permission:
    """The path without its query string (Envoy's url_path)."""
    return Permission(url_path=PathMatcher(path=string_matcher(value)))


def destination_port(value: str) -> Permission:
    return Permission(destination_port=int(value))


def destination_ip(value: str) -> Permission:
    return Permission(destination_ip=_cidr(value))


def server_name(value: str) -> Permission:
    return Permission(requested_server_name=string_matcher(value))


def filter_metadata(key: str) -> Callable[[str], Permission]:
    """``experimental.envoy.filters.NAME[PATH]``: a string in the list that the network
    filter NAME writes at PATH of its dynamic metadata (Istio's shape)."""
    name, _, rest = key.removeprefix("experimental.").partition("[")
    segments = [MetadataMatcher.PathSegment(key=k) for k in rest.removesuffix("]").split("][")]

    def build(value: str) -> Permission:
        one = ValueMatcher(string_match=string_matcher(value))
        matcher = MetadataMatcher(
            filter=name, path=segments, value=ValueMatcher(list_match=ListMatcher(one_of=one))
        )
        return Permission(sourced_metadata=SourcedMetadata(metadata_matcher=matcher))

    return build
