"""The Envoy node a proxy presents: Istio's id format and metadata keys.

The control plane parses exactly this back (meshplane.model.proxy.Proxy.from_node), so
the two must agree; the tests round-trip one through the other.
"""

from __future__ import annotations

from typing import Any

from meshplane.bootstrap.options import BootstrapOptions

__all__ = ["node"]


def node(opts: BootstrapOptions) -> dict[str, Any]:
    """The bootstrap ``node`` block (JSON shape of envoy.config.core.v3.Node)."""
    return {
        "id": opts.node_id,
        # Istio's service cluster: stats and access logs group by it.
        "cluster": f"{opts.workload}.{opts.namespace}",
        "metadata": {
            "NAMESPACE": opts.namespace,
            "SERVICE_ACCOUNT": opts.service_account,
            "LABELS": dict(sorted(opts.labels.items())),
            "INSTANCE_IPS": opts.ip,
            "WORKLOAD_NAME": opts.workload,
            "INTERCEPTION_MODE": opts.interception,
        },
    }
