"""Per-route policies: retries (Istio's default and VirtualService `retries`) and
consistent-hash policies from the destination's DestinationRule, header operations and
request mirroring."""

from __future__ import annotations

from collections.abc import Callable

from envoy.config.core.v3.base_pb2 import (
    HeaderValue,
    HeaderValueOption,
    RuntimeFractionalPercent,
)
from envoy.config.route.v3.route_components_pb2 import (
    RetryPolicy,
    Route,
    RouteAction,
    WeightedCluster,
)
from envoy.extensions.retry.host.previous_hosts.v3.previous_hosts_pb2 import (
    PreviousHostsPredicate,
)
from envoy.extensions.retry.priority.previous_priorities.v3.previous_priorities_config_pb2 import (
    PreviousPrioritiesConfig,
)
from envoy.type.v3.percent_pb2 import FractionalPercent
from google.protobuf.wrappers_pb2 import BoolValue

from meshplane.api.networking.destination_rule import LoadBalancer
from meshplane.api.networking.virtual_service import (
    Destination,
    HeaderOperations,
    Headers,
    HTTPMirrorPolicy,
    HTTPRetry,
)
from meshplane.translators.filters.fault import per_million
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
    if retries.retry_ignore_previous_hosts is False:
        del policy.retry_host_predicate[:]
    if retries.backoff is not None:
        # Istio: `backoff` is Envoy's base interval (its max stays Envoy's 10x default).
        policy.retry_back_off.base_interval.CopyFrom(duration(retries.backoff))
    retry_priority(retries, policy)
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


def retry_priority(retries: HTTPRetry | None, policy: RetryPolicy) -> None:
    """`retryRemoteLocalities`: retry in other localities (priorities) once the local one
    failed, via Envoy's previous_priorities (Istio: update frequency = retries + 1)."""
    if retries is None or not retries.retry_remote_localities:
        return
    config = PreviousPrioritiesConfig(update_frequency=policy.num_retries.value + 1)
    policy.retry_priority.CopyFrom(
        RetryPolicy.RetryPriority(
            name="envoy.retry_priorities.previous_priorities", typed_config=any_of(config)
        )
    )


def is_authority(name: str) -> bool:
    """Istio turns a request header op on Host / :authority into a host rewrite (Envoy
    refuses to set those through headers_to_add)."""
    return name.lower() in ("host", ":authority")


def _header_options(ops: HeaderOperations) -> list[HeaderValueOption]:
    """`set` overwrites (or adds), `add` appends (or adds): Istio's append actions."""
    out = [
        HeaderValueOption(
            header=HeaderValue(key=name, value=ops.set[name]),
            append_action=HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
        )
        for name in sorted(ops.set)
        if not is_authority(name)
    ]
    out += [
        HeaderValueOption(
            header=HeaderValue(key=name, value=ops.add[name]),
            append_action=HeaderValueOption.APPEND_IF_EXISTS_OR_ADD,
        )
        for name in sorted(ops.add)
        if not is_authority(name)
    ]
    return out


def apply_headers(target: Route | WeightedCluster.ClusterWeight, headers: Headers | None) -> str:
    """Add `headers` (request and response set/add/remove) to a route or a weighted cluster;
    returns the authority a request op sets ("" if none), for the caller's host rewrite."""
    if headers is None:
        return ""
    authority = ""
    if headers.request is not None:
        req = headers.request
        target.request_headers_to_add.extend(_header_options(req))
        target.request_headers_to_remove.extend(req.remove)
        for name, value in (*sorted(req.add.items()), *sorted(req.set.items())):
            if is_authority(name):
                authority = value  # set wins over add, as it is applied last
    if headers.response is not None:
        resp = headers.response
        target.response_headers_to_add.extend(_header_options(resp))
        target.response_headers_to_remove.extend(resp.remove)
    return authority


def mirror_policies(
    mirrors: tuple[HTTPMirrorPolicy, ...], cluster_of: Callable[[Destination], str]
) -> list[RouteAction.RequestMirrorPolicy]:
    """One policy per mirror; no percentage means all requests, 0% means no policy
    (Istio's MirrorPercent). Mirrored requests do not force trace sampling (Istio)."""
    out = []
    for mirror in mirrors:
        if mirror.percentage is None:
            fraction = FractionalPercent(numerator=100, denominator=FractionalPercent.HUNDRED)
        elif mirror.percentage > 0:
            fraction = per_million(mirror.percentage)
        else:
            continue
        out.append(
            RouteAction.RequestMirrorPolicy(
                cluster=cluster_of(mirror.destination),
                runtime_fraction=RuntimeFractionalPercent(default_value=fraction),
                trace_sampled=BoolValue(value=False),
            )
        )
    return out
