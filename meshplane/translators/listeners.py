"""Listener building blocks shared by sidecars and gateways: the listener itself, filter
chains, the HTTP connection manager and the TCP proxy network filters."""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.core.v3.address_pb2 import CidrRange
from envoy.config.core.v3.base_pb2 import INBOUND, OUTBOUND, TrafficDirection
from envoy.config.listener.v3.listener_components_pb2 import (
    Filter,
    FilterChain,
    FilterChainMatch,
    ListenerFilter,
)
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.extensions.filters.listener.tls_inspector.v3.tls_inspector_pb2 import TlsInspector
from envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2 import (  # noqa: E501
    HttpConnectionManager,
    HttpFilter,
    Rds,
)
from envoy.extensions.filters.network.tcp_proxy.v3.tcp_proxy_pb2 import TcpProxy
from google.protobuf.wrappers_pb2 import BoolValue

from meshplane.translators.clusters import ads_config_source
from meshplane.translators.http_filters import FilterContext, http_filters
from meshplane.translators.protos import any_of, socket_address, u32
from meshplane.translators.telemetry import stdout_access_log

HCM_FILTER = "envoy.filters.network.http_connection_manager"
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"

_DIRECTIONS: dict[str, TrafficDirection.ValueType] = {"inbound": INBOUND, "outbound": OUTBOUND}


def http_connection_manager(
    stat_prefix: str,
    direction: str,
    *,
    rds_name: str = "",
    route_config: RouteConfiguration | None = None,
    security_filters: Sequence[HttpFilter] = (),
    xff_num_trusted_hops: int = 0,
) -> HttpConnectionManager:
    """An HCM routing by `rds_name` (over ADS) or by an inline `route_config`.

    `direction` is "inbound", "outbound" or "gateway"; gateways trust the peer address as
    the client's (`use_remote_address`), sidecars keep the X-Forwarded-For they receive.
    With `xff_num_trusted_hops` N (Istio's gatewayTopology.numTrustedProxies), the client
    is the Nth address from the right of the X-Forwarded-For received instead.
    `security_filters` (jwt_authn, RBAC) run after CORS and before fault and the router.
    """
    hcm = HttpConnectionManager(
        codec_type=HttpConnectionManager.AUTO,
        stat_prefix=stat_prefix,
        http_filters=http_filters(FilterContext(direction, tuple(security_filters))),
        access_log=[stdout_access_log(http=True)],
        use_remote_address=BoolValue(value=direction == "gateway"),
        xff_num_trusted_hops=xff_num_trusted_hops,
        # Normalise paths before routing so "/a/../b" cannot slip past a prefix match;
        # escaped slashes are left alone, as Istio does.
        normalize_path=BoolValue(value=True),
        path_with_escaped_slashes_action=HttpConnectionManager.KEEP_UNCHANGED,
        upgrade_configs=[HttpConnectionManager.UpgradeConfig(upgrade_type="websocket")],
    )
    if route_config is not None:
        hcm.route_config.CopyFrom(route_config)
    else:
        hcm.rds.CopyFrom(Rds(config_source=ads_config_source(), route_config_name=rds_name))
    return hcm


def hcm_filter(hcm: HttpConnectionManager) -> Filter:
    return Filter(name=HCM_FILTER, typed_config=any_of(hcm))


def tcp_proxy_filter(stat_prefix: str, cluster: str) -> Filter:
    """Forward the connection to `cluster`, logging one JSON line per connection."""
    proxy = TcpProxy(
        stat_prefix=stat_prefix, cluster=cluster, access_log=[stdout_access_log(False)]
    )
    return Filter(name=TCP_PROXY_FILTER, typed_config=any_of(proxy))


def filter_chain(
    filters: Sequence[Filter],
    name: str = "",
    destination_port: int | None = None,
    prefix_range: str | None = None,
    server_name: str | None = None,
) -> FilterChain:
    """A chain matching any of: a destination port, a destination CIDR (``10.0.0.0/8``), a
    TLS server name (needs the tls_inspector listener filter)."""
    chain = FilterChain(name=name, filters=list(filters))
    if server_name is not None:
        chain.filter_chain_match.server_names.append(server_name)
    if destination_port is not None:
        chain.filter_chain_match.CopyFrom(FilterChainMatch(destination_port=u32(destination_port)))
    if prefix_range is not None:
        address, _, length = prefix_range.partition("/")
        chain.filter_chain_match.prefix_ranges.append(
            CidrRange(address_prefix=address, prefix_len=u32(int(length)))
        )
    return chain


def tls_inspector() -> ListenerFilter:
    """Reads SNI (and ALPN) from the ClientHello so filter chains can match on it."""
    return ListenerFilter(
        name="envoy.filters.listener.tls_inspector", typed_config=any_of(TlsInspector())
    )


def listener(
    name: str,
    address: str,
    port: int,
    filter_chains: Sequence[FilterChain],
    *,
    direction: str = "outbound",
    bind_to_port: bool = True,
) -> Listener:
    """A listener on `address:port`. With `bind_to_port` false it only receives connections
    handed over by virtualOutbound (original destination matching)."""
    result = Listener(
        name=name,
        address=socket_address(address, port),
        filter_chains=list(filter_chains),
        traffic_direction=_DIRECTIONS.get(direction, OUTBOUND),
    )
    if not bind_to_port:
        result.bind_to_port.CopyFrom(BoolValue(value=False))
    return result
