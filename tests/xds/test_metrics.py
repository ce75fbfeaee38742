"""Metrics exposition uses Istio's exact names."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from xds_testkit import CDS, Server, base_snapshot


def test_istio_metric_names_exposed() -> None:
    from meshplane.xds.metrics import XdsMetrics

    registry = CollectorRegistry()
    m = XdsMetrics(registry)
    m.pushes.inc("cds")
    m.reject("lds")
    m.expired_nonce.inc("eds")
    text = generate_latest(registry).decode()
    for line in (
        'pilot_xds_pushes{type="cds"} 1.0',
        "pilot_total_xds_rejects 1.0",
        "pilot_xds_lds_reject 1.0",
        'pilot_xds_expired_nonce{type="eds"} 1.0',
        "pilot_xds 0.0",
    ):
        assert line in text.splitlines(), line


async def test_push_metrics_recorded(xds: Server) -> None:
    xds.cache.set("default", base_snapshot())
    c = await xds.sotw()
    c.request(CDS)
    resp = await c.recv_type(CDS)
    assert xds.metrics.pushes.value("cds") == 1
    size = xds.registry.get_sample_value("pilot_xds_config_size_bytes_sum", {"type": "cds"})
    assert size is not None and size >= len(resp.SerializeToString())
