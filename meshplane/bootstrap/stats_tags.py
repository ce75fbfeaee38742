"""Stats tags: what turns Envoy's flat stat names into Istio-style Prometheus labels.

Envoy's built-in stats name their cluster inside the stat (``cluster.outbound|9080|v1|
reviews.default.svc.cluster.local.upstream_rq_200``). Envoy's default cluster_name
extractor stops at the first dot, which cuts an FQDN cluster name short, and a default tag
cannot be redefined, so, like Istio's bootstrap, this one turns the defaults off and lists
Istio's extractors (cluster_name that keeps the FQDN, response_code, ...). On top of them:

- `destination_service`, `destination_port`, `destination_subset`, read from outbound
  cluster names ``outbound|PORT|SUBSET|HOST`` (the names of istio_requests_total's labels);
- fixed `source_workload`, `source_namespace`, `source_app`, `source_version` from the
  proxy's own identity and labels, on every stat.

So ``envoy_cluster_upstream_rq{response_code="200", destination_service="reviews.default
.svc.cluster.local", source_workload="productpage-v1", ...}`` counts requests per source,
destination and code (histograms such as ``envoy_cluster_upstream_rq_time`` carry the same
labels). Hosts outside the cluster domain (ServiceEntry names) are cut at their first dot in
cluster_name and destination_service, as in Istio's bootstrap.
"""

from __future__ import annotations

from typing import Any

from meshplane.bootstrap.options import BootstrapOptions

__all__ = ["stats_config"]

# Istio's label source for app and version (its canonical service/revision labels first).
_APP_LABELS = ("service.istio.io/canonical-name", "app.kubernetes.io/name", "app")
_VERSION_LABELS = ("service.istio.io/canonical-revision", "app.kubernetes.io/version", "version")
# Istio's extractors for Envoy's own stats (envoy_bootstrap.json), cluster_name aside.
_ADDRESS = r"(?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*)"
_ENVOY_TAGS = (
    ("tcp_prefix", r"^tcp\.((.*?)\.)\w+?$"),
    ("response_code", r"_rq(_(\d{3}))$"),
    ("response_code_class", r"_rq(_(\dxx))$"),
    ("http_conn_manager_listener_prefix", rf"^listener(?=\.).*?\.http\.(({_ADDRESS})\.)"),
    ("http_conn_manager_prefix", rf"^http\.(({_ADDRESS})\.)"),
    ("listener_address", rf"^listener\.(({_ADDRESS})\.)"),
)


def _escaped(domain: str) -> str:
    # A DNS name has no regex metacharacters but the dot.
    return domain.replace(".", r"\.")


def _first_label(labels: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((labels[n] for n in names if labels.get(n)), None)


def _destination_tags(dns_domain: str) -> list[dict[str, str]]:
    """Regex extractors over ``cluster.outbound|PORT|SUBSET|HOST.``: each removes the whole
    cluster name from the stat name (group 1) and takes its own part as the value (group 2)."""
    domain = _escaped(dns_domain)
    host = rf"[^.|]+\.[^.|]+\.{domain}|[^.|]*"
    return [
        {
            "tag_name": "destination_service",
            "regex": rf"^cluster\.(outbound\|\d*\|[^|]*\|({host})\.)",
        },
        {
            "tag_name": "destination_port",
            "regex": rf"^cluster\.(outbound\|(\d*)\|[^|]*\|(?:{host})\.)",
        },
        {
            "tag_name": "destination_subset",
            "regex": rf"^cluster\.(outbound\|\d*\|([^|]*)\|(?:{host})\.)",
        },
    ]


def _source_tags(opts: BootstrapOptions) -> list[dict[str, str]]:
    labels = dict(opts.labels)
    fixed = {
        "source_workload": opts.workload,
        "source_namespace": opts.namespace,
        "source_app": _first_label(labels, _APP_LABELS),
        "source_version": _first_label(labels, _VERSION_LABELS),
    }
    return [{"tag_name": k, "fixed_value": v} for k, v in fixed.items() if v]


def stats_config(opts: BootstrapOptions) -> dict[str, Any]:
    """The bootstrap ``stats_config`` block (JSON shape of envoy.config.metrics.v3)."""
    domain = _escaped(opts.dns_domain)
    cluster_name = rf"^cluster\.((.+?(\..+?\.{domain})?)\.)"
    return {
        "use_all_default_tags": False,
        "stats_tags": [
            {"tag_name": "cluster_name", "regex": cluster_name},
            *({"tag_name": name, "regex": regex} for name, regex in _ENVOY_TAGS),
            *_destination_tags(opts.dns_domain),
            *_source_tags(opts),
        ],
    }
