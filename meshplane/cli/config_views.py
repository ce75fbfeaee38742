"""Turn an Envoy config dump (JSON) into istioctl's proxy-config rows.

Pure functions over the JSON that /debug/config_dump (or Envoy's own admin
/config_dump) returns. Istio names (`outbound|PORT|SUBSET|FQDN`) and Istio's
`istio.config` metadata are read back to fill the SERVICE and config columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = [
    "CLUSTER_HEADERS",
    "ENDPOINT_HEADERS",
    "LISTENER_HEADERS",
    "ROUTE_HEADERS",
    "cluster_rows",
    "endpoint_rows",
    "listener_rows",
    "resources",
    "route_rows",
]

CLUSTER_HEADERS = ("SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE")
LISTENER_HEADERS = ("NAME", "ADDRESSES", "PORT", "MATCH", "DESTINATION")
ROUTE_HEADERS = ("NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE")
ENDPOINT_HEADERS = ("ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER")

Row = list[str]


def _section(dump: dict[str, Any], type_name: str) -> dict[str, Any]:
    for config in dump.get("configs", []):
        if str(config.get("@type", "")).endswith("." + type_name):
            return dict(config)
    return {}


def resources(dump: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The raw resources of one kind (cluster, listener, route, endpoint) in the dump."""
    if kind == "cluster":
        sec = _section(dump, "ClustersConfigDump")
        items = [*sec.get("static_clusters", []), *sec.get("dynamic_active_clusters", [])]
        return [c["cluster"] for c in items if "cluster" in c]
    if kind == "listener":
        sec = _section(dump, "ListenersConfigDump")
        statics = [s["listener"] for s in sec.get("static_listeners", []) if "listener" in s]
        dynamics = [
            d["active_state"]["listener"]
            for d in sec.get("dynamic_listeners", [])
            if "listener" in d.get("active_state", {})
        ]
        return [*statics, *dynamics]
    if kind == "route":
        sec = _section(dump, "RoutesConfigDump")
        items = [*sec.get("static_route_configs", []), *sec.get("dynamic_route_configs", [])]
        return [r["route_config"] for r in items if "route_config" in r]
    if kind == "endpoint":
        sec = _section(dump, "EndpointsConfigDump")
        items = [
            *sec.get("static_endpoint_configs", []),
            *sec.get("dynamic_endpoint_configs", []),
        ]
        inline = [
            c["load_assignment"] for c in resources(dump, "cluster") if "load_assignment" in c
        ]
        return [*(e["endpoint_config"] for e in items if "endpoint_config" in e), *inline]
    raise ValueError(f"unknown kind {kind!r}")


def istio_config_ref(resource: dict[str, Any]) -> str:
    """`NAME.NAMESPACE` of the Istio object named in `metadata.filter_metadata.istio.config`."""
    path = resource.get("metadata", {}).get("filter_metadata", {}).get("istio", {}).get("config")
    if not isinstance(path, str):
        return "-"
    parts = path.strip("/").split("/")
    # /apis/GROUP/VERSION/namespaces/NS/KIND/NAME
    if len(parts) >= 7 and parts[3] == "namespaces":
        return f"{parts[6]}.{parts[4]}"
    return path


def cluster_rows(dump: dict[str, Any]) -> list[Row]:
    rows = []
    for cluster in resources(dump, "cluster"):
        name = str(cluster.get("name", ""))
        parts = name.split("|")
        if len(parts) == 4:
            direction, port, subset, fqdn = parts
        else:
            direction, port, subset, fqdn = "-", "-", "-", name
        kind = cluster.get("cluster_type", {}).get("name") or cluster.get("type", "STATIC")
        rows.append([fqdn, port, subset or "-", direction, kind, istio_config_ref(cluster)])
    return sorted(rows, key=lambda r: (r[0], r[1], r[2], r[3]))


def _chain_match(chain: dict[str, Any]) -> str:
    match = chain.get("filter_chain_match", {})
    parts = []
    if "destination_port" in match:
        parts.append(f"Port: {match['destination_port']}")
    if match.get("prefix_ranges"):
        ranges = (
            f"{r['address_prefix']}/{r.get('prefix_len', 32)}" for r in match["prefix_ranges"]
        )
        parts.append("Addr: " + ",".join(ranges))
    if match.get("server_names"):
        parts.append("SNI: " + ",".join(match["server_names"]))
    if match.get("transport_protocol"):
        parts.append("Trans: " + match["transport_protocol"])
    if match.get("application_protocols"):
        parts.append("App: " + ",".join(match["application_protocols"]))
    return "; ".join(parts) or "ALL"


def _chain_destination(chain: dict[str, Any]) -> str:
    for flt in reversed(chain.get("filters", [])):
        config = flt.get("typed_config", {})
        type_name = str(config.get("@type", ""))
        if type_name.endswith("HttpConnectionManager"):
            if "rds" in config:
                return f"Route: {config['rds'].get('route_config_name', '')}"
            return f"Inline Route: {config.get('route_config', {}).get('name', '-')}"
        if type_name.endswith("TcpProxy"):
            if "cluster" in config:
                return f"Cluster: {config['cluster']}"
            weighted = config.get("weighted_clusters", {}).get("clusters", [])
            return "Clusters: " + ",".join(c["name"] for c in weighted)
    names = [f.get("name", "?") for f in chain.get("filters", [])]
    return ",".join(names) or "-"


def _chains(listener: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from listener.get("filter_chains", [])
    if "default_filter_chain" in listener:
        yield listener["default_filter_chain"]


def listener_rows(dump: dict[str, Any]) -> list[Row]:
    rows = []
    for listener in resources(dump, "listener"):
        sock = listener.get("address", {}).get("socket_address", {})
        head = [listener.get("name", ""), sock.get("address", "-"), str(sock.get("port_value", 0))]
        chains = list(_chains(listener))
        if not chains:
            rows.append([*head, "ALL", "-"])
        rows.extend([*head, _chain_match(c), _chain_destination(c)] for c in chains)
    return rows


def _route_match(match: dict[str, Any]) -> str:
    if "prefix" in match:
        # istioctl's spelling: prefix "/" is "/*", prefix "/api" is "/api*".
        prefix = str(match["prefix"])
        return prefix.rstrip("/") + "/*" if prefix.endswith("/") else prefix + "*"
    if "path" in match:
        return str(match["path"])
    if "safe_regex" in match:
        return str(match["safe_regex"].get("regex", ""))
    if "path_separated_prefix" in match:
        return str(match["path_separated_prefix"]) + "/*"
    if "connect_matcher" in match:
        return "CONNECT"
    return "-"


def _domains(domains: list[str]) -> str:
    if not domains:
        return "-"
    return domains[0] + (f" +{len(domains) - 1} more" if len(domains) > 1 else "")


def route_rows(dump: dict[str, Any]) -> list[Row]:
    rows = []
    for config in resources(dump, "route"):
        for vhost in config.get("virtual_hosts", []):
            for route in vhost.get("routes", []) or [{}]:
                rows.append(
                    [
                        config.get("name", ""),
                        vhost.get("name", ""),
                        _domains(vhost.get("domains", [])),
                        _route_match(route.get("match", {})),
                        istio_config_ref(route),
                    ]
                )
    return rows


def _address(lb_endpoint: dict[str, Any]) -> str:
    address = lb_endpoint.get("endpoint", {}).get("address", {})
    if "socket_address" in address:
        sock = address["socket_address"]
        return f"{sock.get('address', '')}:{sock.get('port_value', 0)}"
    if "pipe" in address:
        return f"unix://{address['pipe'].get('path', '')}"
    return "-"


def endpoint_rows(dump: dict[str, Any]) -> list[Row]:
    rows = []
    for cla in resources(dump, "endpoint"):
        for locality in cla.get("endpoints", []):
            for lb in locality.get("lb_endpoints", []):
                # UNKNOWN (the default) is what Envoy treats as healthy.
                status = lb.get("health_status", "UNKNOWN")
                status = "HEALTHY" if status == "UNKNOWN" else status
                # Outlier ejection is Envoy runtime state: the control plane cannot know it.
                rows.append([_address(lb), status, "-", cla.get("cluster_name", "")])
    return sorted(rows, key=lambda r: (r[0], r[3]))
