"""`envoy.filters.http.ext_authz` (and `envoy.filters.network.ext_authz` for gRPC providers
on TCP chains): AuthorizationPolicies with action CUSTOM, compiled as Istio does
(pilot/pkg/security/authz/builder, extauthz.go).

- The CUSTOM rules go into an RBAC filter as `shadow_rules` (action DENY, policies named
  ``istio-ext-authz-ns[NS]-policy[NAME]-rule[I]``, `shadow_rules_stat_prefix`
  ``istio_ext_authz_``): it decides nothing, but when a rule matches it writes the policy
  name into its dynamic metadata under ``istio_ext_authz_shadow_effective_policy_id``.
- The ext_authz filter right after it is enabled only for requests whose metadata holds
  such a name (`filter_enabled_metadata`, prefix ``istio-ext-authz``): only the requests
  the rules select reach the external authorizer.
- The authorizer is the provider's `service` through its outbound cluster
  ``outbound|PORT||HOST``. When the provider cannot be used (unknown name, host or port,
  several providers on one workload) the rules become a plain DENY filter whose policies
  end in ``-deny-due-to-bad-CUSTOM-action`` (Istio fails closed); the model reports the
  error on the policy (model/ext_authz.py).
- HTTP providers do nothing on TCP chains (Istio ignores them there).
"""

from __future__ import annotations

from envoy.config.core.v3.config_source_pb2 import ApiVersion
from envoy.config.core.v3.grpc_service_pb2 import GrpcService
from envoy.config.core.v3.http_uri_pb2 import HttpUri
from envoy.config.listener.v3.listener_components_pb2 import Filter
from envoy.config.rbac.v3.rbac_pb2 import RBAC as RBACConfig
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2 as http_ext_authz
from envoy.extensions.filters.http.rbac.v3.rbac_pb2 import RBAC as HttpRBAC
from envoy.extensions.filters.network.ext_authz.v3 import ext_authz_pb2 as tcp_ext_authz
from envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2 import (  # noqa: E501
    HttpFilter,
)
from envoy.extensions.filters.network.rbac.v3.rbac_pb2 import RBAC as NetworkRBAC
from envoy.type.matcher.v3.metadata_pb2 import MetadataMatcher
from envoy.type.matcher.v3.string_pb2 import ListStringMatcher, StringMatcher
from envoy.type.matcher.v3.value_pb2 import ValueMatcher
from envoy.type.v3.http_status_pb2 import HttpStatus

from meshplane.api.core.mesh_config import ExtensionProvider
from meshplane.model.ext_authz import resolve_provider
from meshplane.model.scope import ProxyView
from meshplane.translators.names import outbound_cluster_name
from meshplane.translators.protos import any_of, duration

HTTP_NAME = "envoy.filters.http.ext_authz"
NETWORK_NAME = "envoy.filters.network.ext_authz"
HTTP_RBAC_NAME = "envoy.filters.http.rbac"
NETWORK_RBAC_NAME = "envoy.filters.network.rbac"
MATCH_PREFIX = "istio-ext-authz"
SHADOW_STAT_PREFIX = "istio_ext_authz_"
BAD_CUSTOM_SUFFIX = "-deny-due-to-bad-CUSTOM-action"
TCP_STAT_PREFIX = "tcp."
# Istio's placeholder: the authorizer's own timeout belongs in a DestinationRule.
DEFAULT_TIMEOUT = 600.0


def _provider(view: ProxyView) -> ExtensionProvider | None:
    """The one provider every CUSTOM policy of `view` names, when it can be used."""
    names = {p.spec.provider for p in view.authorization_policies if p.spec.action == "CUSTOM"}
    if len(names) != 1:
        return None
    provider, _ = resolve_provider(names.pop(), view.mesh, view.services)
    return provider


def _bad_custom(rules: RBACConfig) -> RBACConfig:
    policies = {f"{name}{BAD_CUSTOM_SUFFIX}": p for name, p in rules.policies.items()}
    return RBACConfig(action=RBACConfig.DENY, policies=policies)


def _shadow(rules: RBACConfig) -> RBACConfig:
    policies = {f"{MATCH_PREFIX}-{name}": p for name, p in rules.policies.items()}
    return RBACConfig(action=RBACConfig.DENY, policies=policies)


def _enabled_when(rbac_filter: str) -> MetadataMatcher:
    """Match requests the shadow rules selected (one of them wrote its policy name)."""
    return MetadataMatcher(
        filter=rbac_filter,
        path=[MetadataMatcher.PathSegment(key=f"{SHADOW_STAT_PREFIX}shadow_effective_policy_id")],
        value=ValueMatcher(string_match=StringMatcher(prefix=MATCH_PREFIX)),
    )


def _headers(names: tuple[str, ...]) -> ListStringMatcher | None:
    if not names:
        return None
    return ListStringMatcher(patterns=[StringMatcher(exact=n) for n in names])


def _grpc_service(provider: ExtensionProvider) -> GrpcService:
    cluster = outbound_cluster_name(provider.port, provider.service)
    # `|` is not valid in an :authority, and the cluster name would be the default one.
    service = GrpcService(
        envoy_grpc=GrpcService.EnvoyGrpc(cluster_name=cluster, authority=cluster.replace("|", "_."))
    )
    if provider.timeout is not None:
        service.timeout.CopyFrom(duration(provider.timeout))
    return service


def _http_service(provider: ExtensionProvider) -> http_ext_authz.HttpService:
    service = http_ext_authz.HttpService(
        path_prefix=provider.path_prefix,
        server_uri=HttpUri(
            uri=f"http://{provider.service}",
            cluster=outbound_cluster_name(provider.port, provider.service),
            timeout=duration(provider.timeout or DEFAULT_TIMEOUT),
        ),
    )
    upstream = _headers(provider.headers_to_upstream_on_allow)
    client = _headers(provider.headers_to_downstream_on_deny)
    on_success = _headers(provider.headers_to_downstream_on_allow)
    if upstream or client or on_success:
        response = service.authorization_response
        for field, matcher in (
            ("allowed_upstream_headers", upstream),
            ("allowed_client_headers", client),
            ("allowed_client_headers_on_success", on_success),
        ):
            if matcher is not None:
                getattr(response, field).CopyFrom(matcher)
    return service


def http_ext_authz_config(provider: ExtensionProvider) -> http_ext_authz.ExtAuthz:
    """The ext_authz filter config calling `provider` for requests the shadow rules chose."""
    config = http_ext_authz.ExtAuthz(
        failure_mode_allow=provider.fail_open,
        transport_api_version=ApiVersion.V3,
        filter_enabled_metadata=_enabled_when(HTTP_RBAC_NAME),
    )
    if provider.grpc:
        config.grpc_service.CopyFrom(_grpc_service(provider))
    else:
        config.http_service.CopyFrom(_http_service(provider))
        allowed = _headers(provider.include_request_headers_in_check)
        if allowed is not None:
            config.allowed_headers.CopyFrom(allowed)
    if provider.status_on_error is not None:
        config.status_on_error.CopyFrom(HttpStatus(code=provider.status_on_error))  # type: ignore[arg-type]
    return config


def custom_http_filters(view: ProxyView, rules: RBACConfig) -> list[HttpFilter]:
    """The shadow RBAC and ext_authz filters for the compiled CUSTOM `rules` of `view`, or
    the fail-closed DENY filter when its provider cannot be used."""
    provider = _provider(view)
    if provider is None:
        bad = HttpRBAC(rules=_bad_custom(rules))
        return [HttpFilter(name=HTTP_RBAC_NAME, typed_config=any_of(bad))]
    shadow = HttpRBAC(shadow_rules=_shadow(rules), shadow_rules_stat_prefix=SHADOW_STAT_PREFIX)
    return [
        HttpFilter(name=HTTP_RBAC_NAME, typed_config=any_of(shadow)),
        HttpFilter(name=HTTP_NAME, typed_config=any_of(http_ext_authz_config(provider))),
    ]


def custom_network_filters(view: ProxyView, rules: RBACConfig) -> list[Filter]:
    """The TCP-chain counterpart: gRPC providers only; HTTP providers are skipped."""
    provider = _provider(view)
    if provider is None:
        bad = NetworkRBAC(rules=_bad_custom(rules), stat_prefix=TCP_STAT_PREFIX)
        return [Filter(name=NETWORK_RBAC_NAME, typed_config=any_of(bad))]
    if not provider.grpc:
        return []
    shadow = NetworkRBAC(
        shadow_rules=_shadow(rules),
        shadow_rules_stat_prefix=SHADOW_STAT_PREFIX,
        stat_prefix=TCP_STAT_PREFIX,
    )
    authz = tcp_ext_authz.ExtAuthz(
        stat_prefix=TCP_STAT_PREFIX,
        failure_mode_allow=provider.fail_open,
        transport_api_version=ApiVersion.V3,
        grpc_service=_grpc_service(provider),
        filter_enabled_metadata=_enabled_when(NETWORK_RBAC_NAME),
    )
    return [
        Filter(name=NETWORK_RBAC_NAME, typed_config=any_of(shadow)),
        Filter(name=NETWORK_NAME, typed_config=any_of(authz)),
    ]
