"""Per-route policies: retries (Istio's default and VirtualService `retries`), timeouts and
consistent-hash policies from the destination's DestinationRule."""

from __future__ import annotations

from envoy.config.route.v3.route_components_pb2 import RetryPolicy, RouteAction
from envoy.extensions.retry.host.previous_hosts.v3.previous_hosts_pb2 import (
    PreviousHostsPredicate,
)

from meshplane.api.networking.destination_rule import LoadBalancer
from meshplane.api.networking.virtual_service import HTTPRetry
from meshplane.translators.protos import any_of, duration, u32

# istio@1.30.3:pilot/pkg/networking/core/route/retry/retry.go DefaultPolicy.
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
DEFAULT_RETRY_ATTEMPTS = 2
DEFAULT_RETRIABLE_STATUS_CODES = (503,)
HOST_SELECTION_RETRY_MAX_ATTEMPTS = 5


def _previous_hosts() -> RetryPolicy.RetryHostPredicate:
    return RetryPolicy.RetryHostPredicate(
        name="envoy.retry_host_predicates.previous_hosts",
        typed_config=any_of(PreviousHostsPredicate()),
    )


def default_retry_policy() -> RetryPolicy:
    """Istio's default: 2 retries on connection-level failures and 503, each on a new host."""
    return RetryPolicy(
        retry_on=DEFAULT_RETRY_ON,
        num_retries=u32(DEFAULT_RETRY_ATTEMPTS),
        retriable_status_codes=DEFAULT_RETRIABLE_STATUS_CODES,
        retry_host_predicate=[_previous_hosts()],
        host_selection_retry_max_attempts=HOST_SELECTION_RETRY_MAX_ATTEMPTS,
    )


def parse_retry_on(retry_on: str) -> tuple[str, list[int]]:
    """Split Istio's `retryOn` into Envoy's retry_on and status codes: numbers are status
    codes and imply ``retriable-status-codes`` (Istio's parseRetryOn)."""
    conditions: list[str] = []
    codes: list[int] = []
    for part in (p.strip() for p in retry_on.split(",")):
        if part.isdigit():
            codes.append(int(part))
        elif part and part not in conditions:
            conditions.append(part)
    if codes and "retriable-status-codes" not in conditions:
        conditions.append("retriable-status-codes")
    return ",".join(conditions), codes


def retry_policy(retries: HTTPRetry | None) -> RetryPolicy | None:
    """Istio's default when `retries` is absent; None (no retries) for ``attempts: 0``."""
    policy = default_retry_policy()
    if retries is None:
        return policy
    if retries.attempts == 0:
        return None
    policy.num_retries.CopyFrom(u32(retries.attempts))
    if retries.retry_on:
        retry_on, codes = parse_retry_on(retries.retry_on)
        policy.retry_on = retry_on
        del policy.retriable_status_codes[:]
        policy.retriable_status_codes.extend(codes)
    if retries.per_try_timeout is not None:
        policy.per_try_timeout.CopyFrom(duration(retries.per_try_timeout))
    return policy


def hash_policies(lb: LoadBalancer | None) -> list[RouteAction.HashPolicy]:
    """What a RING_HASH/MAGLEV destination hashes on (header, cookie, source IP, query)."""
    ch = lb.consistent_hash if lb else None
    if ch is None:
        return []
    policy = RouteAction.HashPolicy()
    if ch.http_header_name:
        policy.header.header_name = ch.http_header_name
    elif ch.http_cookie is not None:
        policy.cookie.name = ch.http_cookie.name
        policy.cookie.path = ch.http_cookie.path
        if ch.http_cookie.ttl is not None:
            policy.cookie.ttl.CopyFrom(duration(ch.http_cookie.ttl))
    elif ch.use_source_ip:
        policy.connection_properties.source_ip = True
    elif ch.http_query_parameter_name:
        policy.query_parameter.name = ch.http_query_parameter_name
    else:
        return []
    return [policy]
